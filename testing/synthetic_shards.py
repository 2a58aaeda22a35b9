"""Synthetic token + bitext shards with a learnable speech/text relation.

For tests, benchmarks and smoke runs before real shards exist. Sentences are
sequences of shared "concepts"; every language has its own made-up word for
each concept, so texts of one sentence align across languages (bitext).
Speech tokens "pronounce" the text: each character maps to a fixed short code
sequence, each code lasting 1-3 frames, with some codes replaced by noise,
as a k-means tokenizer over real frames would roughly give. A model can thus
learn to match speech tokens to transcripts, and translations to each other.

Shards follow the real contracts exactly (written by the one shard writer,
:mod:`datastore.shards`: hive layout, ``_index.json``, codebook id
``synthetic-L0-k{k}-{sha8}`` with its sha256 in the file metadata), so the
trainer reads them like the tokenize job's output.

Example::

    write_synthetic_shards("/tmp/syn", langs=("fr", "de"), per_lang=64, k=256)
    # /tmp/syn/tokens/corpus=synthetic/split=train/lang=fr/part-00000.parquet ...
"""

from __future__ import annotations

import hashlib

import numpy as np

from datastore import schema, shards
from datastore.schema import TokenRow
from kmeans.postprocess import dedup as run_length_dedup

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _words(rng: np.random.Generator, n: int) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(syllables, size=int(rng.integers(1, 4)))))
    return sorted(out)


def _pronounce(text: str, table: np.ndarray, rng: np.random.Generator, k: int, noise: float):
    frames: list[int] = []
    for ch in text:
        codes = table[ALPHABET.index(ch)] if ch in ALPHABET else table[-1]
        for code in codes:
            frames += [int(code)] * int(rng.integers(1, 4))
    arr = np.asarray(frames, dtype=np.int64)
    flip = rng.random(arr.size) < noise
    arr[flip] = rng.integers(0, k, size=int(flip.sum()))
    return arr


def write_synthetic_shards(
    out: str,
    *,
    langs=("fr", "de", "sw", "ja"),
    per_lang: int = 64,
    test_per_lang: int = 16,
    k: int = 256,
    concepts: int = 60,
    noise: float = 0.1,
    dedup: bool = True,
    bitext_pairs: int = 0,
    words: tuple[int, int] = (3, 8),
    seed: int = 0,
) -> dict:
    """Write ``out/tokens/...`` (train + test) and, if ``bitext_pairs``, ``out/bitext/...``.

    Sentences have ``words[0]`` to ``words[1] - 1`` words. Returns
    ``{"codebook": id, "codebook_sha256": sha, "rows": {split: n}}``.
    """
    rng = np.random.default_rng(seed)
    codebook_sha = hashlib.sha256(f"synthetic-{k}-{seed}".encode()).hexdigest()
    codebook_id = f"synthetic-L0-k{k}-{codebook_sha[:8]}"
    # One pronunciation per character (+ one for space/others): 2 codes each.
    table = rng.integers(0, k, size=(len(ALPHABET) + 1, 2))
    lexicon = {lang: _words(rng, concepts) for lang in (*langs, "en")}
    for vocabulary in lexicon.values():
        rng.shuffle(vocabulary)
    n_total = per_lang + test_per_lang
    lo, hi = words
    sentences = [rng.integers(0, concepts, size=int(rng.integers(lo, hi))) for _ in range(n_total)]
    meta = {
        schema.META_ENCODER: b"synthetic",
        schema.META_LAYER: b"0",
        schema.META_FRAME_RATE: b"50",
        schema.META_CODEBOOK_SHA256: codebook_sha.encode(),
        schema.META_VERSION: schema.SCHEMA_VERSION.encode(),
    }
    counts: dict[str, int] = {}
    infos: list[shards.ShardInfo] = []
    for lang in langs:
        for split, sl in (("train", slice(0, per_lang)), ("test", slice(per_lang, n_total))):
            rows = []
            for j, concept_ids in enumerate(sentences[sl], start=sl.start):
                text = " ".join(lexicon[lang][c] for c in concept_ids)
                frames = _pronounce(text, table, rng, k, noise)
                tokens, durations = run_length_dedup(frames) if dedup else (frames, None)
                rows.append(
                    TokenRow(
                        id=f"synthetic-{lang}-{split}-{j:05d}",
                        sentence_id=str(j),
                        speaker="synth",
                        source_lang=lang,
                        modality="speech",
                        audio=f"synthetic://{lang}/{j}.wav",
                        offset_s=None,
                        duration_s=float(frames.size / 50.0),
                        n_frames=int(frames.size),
                        tokens=tokens.astype(np.int16).tolist(),
                        durations=None if durations is None else durations.tolist(),
                        text=text,
                        translation=" ".join(lexicon["en"][c] for c in concept_ids),
                        tgt_lang="en",
                        codebook=codebook_id,
                        corpus="synthetic",
                        split=split,
                        lang=lang,
                    ).as_dict()
                )
            if not rows:
                continue
            infos += shards.write_partition(
                rows,
                out_dir=out,
                kind=schema.TOKENS_DIR,
                partition={"corpus": "synthetic", "split": split, "lang": lang},
                metadata=meta,
            )
            counts[split] = counts.get(split, 0) + len(rows)
    if bitext_pairs:
        infos += _write_bitext(out, langs, lexicon, concepts, bitext_pairs, rng)
    n = sum(i.rows for i in infos)
    # The index lists the shards: readers (trainer.data) read only listed files.
    shards.Index(
        job="synthetic",
        config={"langs": list(langs), "per_lang": per_lang, "k": k, "seed": seed},
        counts={"input": n, "accepted": n, "rejected": 0},
        shards=shards.shard_dicts(infos),
        extra={"codebook": codebook_id, "codebook_sha256": codebook_sha},
    ).write(out)
    return {"codebook": codebook_id, "codebook_sha256": codebook_sha, "rows": counts}


def _write_bitext(out, langs, lexicon, concepts, n_pairs, rng) -> list[shards.ShardInfo]:
    infos = []
    for lang in langs:
        rows = []
        for j in range(n_pairs):
            concept_ids = rng.integers(0, concepts, size=int(rng.integers(3, 8)))
            rows.append(
                {
                    "id": f"synthetic-bitext-{lang}-en-{j:05d}",
                    "src_lang": lang,
                    "tgt_lang": "en",
                    "src_text": " ".join(lexicon[lang][c] for c in concept_ids),
                    "tgt_text": " ".join(lexicon["en"][c] for c in concept_ids),
                    "score": 1.1,
                    "source": "synthetic",
                }
            )
        infos += shards.write_partition(
            rows,
            out_dir=out,
            kind=schema.BITEXT_DIR,
            partition={"src_lang": lang, "tgt_lang": "en"},
        )
    return infos
