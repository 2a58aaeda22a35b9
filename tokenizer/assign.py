"""One utterance's tokens -> one token-shard row.

The speech model (:mod:`tokenizer.speech_model`) turns features into tokens,
downsampled the way the codebook was fitted and run-length deduplicated when
the job asks; this module only lays the row out. The row follows
:data:`datastore.schema.TOKEN_SCHEMA`; ``n_frames`` counts frames after
downsampling, so ``len(tokens) == n_frames`` without dedup and
``sum(durations) == n_frames`` with it. The ``audio`` column holds an
absolute local path or the URI as written (:func:`datastore.storage.absolute_uri`), so the
shards stay usable once they move away from the job's working directory.
A segment's row describes the segment: ``audio`` names its recording,
``offset_s`` where it starts, and ``duration_s``/``n_frames`` its own length.

Example::

    tokens = model.run([wave])[0]                      # kmeans.postprocess.Tokens
    row = token_row(example, tokens, codebook.id, n_samples=len(wave))
"""

from __future__ import annotations

import numpy as np

from datastore import storage
from datastore.records import AudioExample
from datastore.schema import TokenRow

INT16_MAX = np.iinfo(np.int16).max


def check_codebook_fits_int16(k: int) -> None:
    if k - 1 > INT16_MAX:
        raise ValueError(f"codebook has k={k} centroids; token shards store int16 ids (k <= 32768)")


def token_row(
    example: AudioExample,
    tokens,
    codebook_id: str,
    *,
    n_samples: int,
    sample_rate: int = 16000,
) -> dict:
    """The shard row of one utterance from its ``Tokens(tokens, durations)``."""
    ids, durations = tokens
    n_frames = len(ids) if durations is None else int(np.sum(durations))
    if durations is not None and durations.max(initial=0) > INT16_MAX:
        raise ValueError(f"{example.id}: a run of {durations.max()} frames does not fit int16")
    return TokenRow(
        id=example.id,
        sentence_id=example.sentence_id,
        speaker=example.speaker,
        # The corpus's own code (fr_fr), else the short one: every row names its
        # language in the file, for readers that ignore folder names (datasets).
        source_lang=example.source_lang or example.lang,
        modality="speech",
        audio=storage.absolute_uri(example.uri),
        offset_s=example.offset_s,
        duration_s=float(n_samples) / sample_rate,
        n_frames=int(n_frames),
        tokens=np.asarray(ids).astype(np.int16),
        durations=None if durations is None else np.asarray(durations).astype(np.int16),
        text=example.text,
        translation=example.translation,
        tgt_lang=example.tgt_lang,
        codebook=codebook_id,
        corpus=example.corpus,
        split=example.split,
        lang=example.lang,
    ).as_dict()
