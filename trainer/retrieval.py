"""Retrieval metrics on embeddings: exact search by matrix product.

Queries and candidates are compared by dot product (the trainer's
similarity), in query chunks so memory stays ``chunk x n_candidates``. A
query's rank is the number of candidates scoring strictly higher than its
target, so ties count in the query's favour and results are deterministic.

Example::

    ranks = target_ranks(speech_emb, text_emb, targets)   # 0 = retrieved first
    retrieval_metrics(ranks)    # {"r_at_1": .., "r_at_5": .., "mrr": ..}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHUNK = 4096


def _scores(queries: np.ndarray, candidates: np.ndarray, device: str | None):
    if device and device.startswith("cuda"):
        import torch

        q = torch.as_tensor(queries, device=device)
        c = torch.as_tensor(candidates, device=device)
        return (q @ c.T).float().cpu().numpy()
    return queries @ candidates.T


def target_ranks(
    queries: np.ndarray,
    candidates: np.ndarray,
    targets: Sequence[int],
    *,
    device: str | None = None,
) -> np.ndarray:
    """0-based rank of each query's target candidate (int64 ``[n_queries]``)."""
    queries = np.asarray(queries, dtype=np.float32)
    candidates = np.asarray(candidates, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    if queries.shape[0] != targets.shape[0]:
        raise ValueError(f"{queries.shape[0]} queries but {targets.shape[0]} targets")
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"query dim {queries.shape[1]} != candidate dim {candidates.shape[1]}")
    if len(targets) and (targets.min() < 0 or targets.max() >= candidates.shape[0]):
        raise ValueError("a target index is outside the candidate pool")
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), CHUNK):
        scores = _scores(queries[start : start + CHUNK], candidates, device)
        own = scores[np.arange(scores.shape[0]), targets[start : start + CHUNK]]
        ranks[start : start + CHUNK] = (scores > own[:, None]).sum(axis=1)
    return ranks


def top1(queries: np.ndarray, candidates: np.ndarray, *, device: str | None = None) -> np.ndarray:
    """Index of the best-scoring candidate per query (lowest index on ties)."""
    out = np.empty(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], CHUNK):
        out[start : start + CHUNK] = _scores(
            queries[start : start + CHUNK], candidates, device
        ).argmax(axis=1)
    return out


def retrieval_metrics(ranks: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """R@k (fractions in [0, 1]) and mean reciprocal rank from 0-based ranks."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {**{f"r_at_{k}": float("nan") for k in ks}, "mrr": float("nan")}
    out = {f"r_at_{k}": float((ranks < k).mean()) for k in ks}
    out["mrr"] = float((1.0 / (ranks + 1)).mean())
    return out


def chance_r_at_k(pool_size: int, k: int = 1) -> float:
    """R@k of a random ranking over a pool of ``pool_size`` candidates."""
    return min(1.0, k / pool_size) if pool_size else float("nan")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0-100) of retrieved sentences against references."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return float("nan")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)
