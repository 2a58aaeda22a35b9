"""Encoder features of one utterance -> one token-shard row.

The codebook decides downsampling (it is applied the way it was fitted); the
tokenize job decides run-length dedup. The row follows
:data:`tokenizer.schema.TOKEN_SCHEMA`; ``n_frames`` counts frames after
downsampling, so ``len(tokens) == n_frames`` without dedup and
``sum(durations) == n_frames`` with it. The ``audio`` column holds an
absolute local path or the URI as written (:func:`absolute_uri`), so the
shards stay usable once they move away from the job's working directory.

Example::

    row = token_row(example, features, codebook, n_samples=len(wave), dedup=True)
"""

from __future__ import annotations

import os

import numpy as np

from tokenizer import io
from tokenizer.records import AudioExample

INT16_MAX = np.iinfo(np.int16).max


def check_codebook_fits_int16(k: int) -> None:
    if k - 1 > INT16_MAX:
        raise ValueError(f"codebook has k={k} centroids; token shards store int16 ids (k <= 32768)")


def absolute_uri(uri: str) -> str:
    """A URI with a scheme (``gs://``, ``file://``...) as written; a local path made absolute.

    Relative local paths are resolved against the current directory, which is
    where the manifest readers resolved them (symlinks are kept, not followed:
    the path names the file the way the corpus does).
    """
    uri = str(uri)
    return uri if io.scheme(uri) else os.path.abspath(uri)


def token_row(
    example: AudioExample,
    features: np.ndarray,
    codebook,
    *,
    n_samples: int,
    sample_rate: int = 16000,
    dedup: bool = False,
) -> dict:
    """The shard row of one utterance (see module docstring)."""
    from kmeans.postprocess import PostprocessConfig, frames_to_tokens

    post = PostprocessConfig.from_metadata(codebook.metadata)
    n_frames = -(-len(features) // post.downsample)
    tokens, durations = frames_to_tokens(codebook, features, dedup=dedup)
    if durations is not None and durations.max(initial=0) > INT16_MAX:
        raise ValueError(f"{example.id}: a run of {durations.max()} frames does not fit int16")
    return {
        "id": example.id,
        "sentence_id": example.sentence_id,
        "speaker": example.speaker,
        "corpus": example.corpus,
        "split": example.split,
        "lang": example.lang,
        "source_lang": example.source_lang,
        "modality": "speech",
        "audio": absolute_uri(example.uri),
        "duration_s": float(n_samples) / sample_rate,
        "n_frames": int(n_frames),
        "tokens": tokens.astype(np.int16),
        "durations": None if durations is None else durations.astype(np.int16),
        "text": example.text,
        "translation": example.translation,
        "tgt_lang": example.tgt_lang,
        "codebook": codebook.id,
    }
