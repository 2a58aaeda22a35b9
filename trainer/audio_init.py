"""Audio rows initialised from the characters each audio token lines up with.

The paper initialises the new audio rows at random. With few training steps
(the 10-minute CPU demo) the backbone then spends most of them learning what
each audio token sounds like. This module gives the rows a head start from
the training pairs themselves, before the first step:

1. Align audio tokens to the characters of their transcript with a few EM
   passes of IBM Model 1 under a diagonal prior (fast_align's idea: speech
   and text advance together, so token ``i`` of ``I`` most likely emits a
   character near position ``i / I`` of the text). This gives soft counts
   ``counts[code, char]``.
2. Turn each code's counts into weights over characters, damping frequent
   characters (``count / p(char) ** alpha``: raw counts make every code look
   like a space or an "e"), and set the row to the weighted mean of those
   characters' embedding rows, rescaled to the characters' mean norm.

Codes that never occur keep their random rows; characters the LLM has no
single token for are left out. Only training rows are read, so nothing of the
evaluation split leaks in. Measured on the demo's tokens at 80 steps
(``benchmarks/README.md``, "demo training settings"): mean R@1 seen 0.283 vs
0.25 random, and 0.367 vs 0.283 with the spread-out weight at 0.1.

Example::

    counts = alignment_counts(pairs, k=256, alphabet=["a", "b", " "])
    rows = rows_from_counts(counts, char_rows)          # [256, dim]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

AUDIO_INITS = ("random", "aligned")


@dataclass(frozen=True, kw_only=True)
class AlignedInitConfig:
    """Settings of the ``aligned`` audio-row initialisation."""

    # Weight of a character a fraction d of the utterance away from the diagonal:
    # exp(-tension * d). 60: five per cent off (a word or two) weighs e^-3.
    tension: float = 60.0
    iterations: int = 10
    alpha: float = 0.5  # damping of frequent characters (0: raw counts, 1: PMI-like)
    max_pairs: int = 4000  # an evenly spaced sample bounds the cost on big corpora
    max_tokens: int = 384  # audio tokens per utterance looked at (the model's cap)


def alignment_counts(
    pairs: Sequence[tuple[np.ndarray, str]],
    k: int,
    alphabet: Sequence[str],
    config: AlignedInitConfig = AlignedInitConfig(),
) -> np.ndarray:
    """Soft counts ``[k, len(alphabet)]`` of audio code ``c`` emitting character ``v``.

    ``pairs``: (audio codes, transcript) per utterance. Characters outside
    ``alphabet`` are skipped; when only the first ``max_tokens`` codes are
    kept, only the matching leading share of the transcript is aligned.
    """
    index = {ch: v for v, ch in enumerate(alphabet)}
    vocab = len(alphabet)
    prepared = []
    for codes, text in pairs:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size == 0 or not text:
            continue
        kept = min(1.0, config.max_tokens / codes.size)
        codes = codes[: config.max_tokens]
        chars = np.array([index.get(ch, -1) for ch in text], dtype=np.int64)
        char_pos = (np.arange(chars.size) + 0.5) / chars.size
        known = (chars >= 0) & (char_pos <= kept + 0.05)
        if not known.any():
            continue
        code_pos = (np.arange(codes.size) + 0.5) / codes.size * kept
        prior = np.exp(-config.tension * np.abs(code_pos[:, None] - char_pos[None, known]))
        cells = codes[:, None] * vocab + chars[None, known]  # flat (code, char) per cell
        prepared.append((codes, chars[known], prior, cells.ravel()))
    emit = np.full((k, vocab), 1.0 / k)  # p(code | char), uniform start
    counts = np.zeros((k, vocab))
    for _ in range(config.iterations):
        counts = np.zeros(k * vocab)
        for codes, chars, prior, cells in prepared:
            post = prior * emit[codes][:, chars]
            post /= post.sum(1, keepdims=True) + 1e-30
            counts += np.bincount(cells, weights=post.ravel(), minlength=k * vocab)
        counts = counts.reshape(k, vocab)
        smoothed = counts + 1e-3
        emit = smoothed / smoothed.sum(0, keepdims=True)
    return counts


def rows_from_counts(
    counts: np.ndarray, char_rows: np.ndarray, *, alpha: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[k, dim]`` from alignment counts and the characters' embedding rows.

    Returns ``(rows, seen)``: ``seen[c]`` is False for codes with no counts
    (their row is zero; the caller keeps its random one).
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(0)
    char_prob = total / max(total.sum(), 1e-30)
    weights = np.where(total > 0, counts / np.maximum(char_prob, 1e-30) ** alpha, 0.0)
    mass = weights.sum(1, keepdims=True)
    seen = mass[:, 0] > 0
    weights = np.where(seen[:, None], weights / np.maximum(mass, 1e-30), 0.0)
    rows = weights @ np.asarray(char_rows, dtype=np.float64)
    target = float(np.linalg.norm(char_rows, axis=1).mean())
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows = np.where(norms > 0, rows * target / np.maximum(norms, 1e-30), 0.0)
    return rows.astype(np.float32), seen


def single_char_ids(tokenizer, texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """The characters of ``texts`` the tokenizer maps to exactly one id, and those ids."""
    alphabet, ids = [], []
    for ch in sorted(set("".join(texts))):
        found = tokenizer(ch, add_special_tokens=False)["input_ids"]
        if len(found) == 1:
            alphabet.append(ch)
            ids.append(int(found[0]))
    return alphabet, ids


def init_aligned_audio_rows(model, rows, config: AlignedInitConfig = AlignedInitConfig()) -> dict:
    """Overwrite ``model``'s audio rows from ``rows`` (a :class:`trainer.data.TokenRows`).

    Returns a summary: utterances aligned, alphabet size, codes initialised.
    """
    import torch

    n = len(rows)
    picked = np.unique(np.linspace(0, n - 1, min(n, config.max_pairs)).round().astype(np.int64))
    texts = [rows.texts[i].lower() for i in picked]
    pairs = [(rows.tokens(i), text) for i, text in zip(picked, texts, strict=True)]
    alphabet, ids = single_char_ids(model.tokenizer, texts)
    summary = {"utterances": len(pairs), "alphabet": len(alphabet), "codes": 0}
    if not alphabet:
        log.warning(
            "aligned audio init: no transcript character is a single LLM token; kept random"
        )
        return summary
    counts = alignment_counts(pairs, model.codebook_size, alphabet, config)
    text_weight = model.embedding.text.weight
    char_rows = text_weight.detach()[torch.tensor(ids)].float().cpu().numpy()
    new_rows, seen = rows_from_counts(counts, char_rows, alpha=config.alpha)
    audio = model.embedding.audio
    with torch.no_grad():
        mask = torch.from_numpy(seen).to(audio.device)
        values = torch.from_numpy(new_rows).to(audio.device, audio.dtype)
        k = model.codebook_size
        audio[:k] = torch.where(mask[:, None], values, audio[:k])
    summary["codes"] = int(seen.sum())
    log.info(
        "aligned audio init: %d of %d codes from %d utterances over %d characters",
        summary["codes"],
        k,
        summary["utterances"],
        len(alphabet),
    )
    return summary
