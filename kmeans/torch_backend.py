"""The default k-means backend: k-means|| seeding, then full-batch Lloyd in torch.

Why this shape:

- Initialisation is k-means|| (Bahmani et al., 2012) on a subsample: a few
  rounds that each draw about ``oversampling * k`` candidates in proportion to
  their squared distance, every round one matmul against the pool; then a
  greedy, weighted k-means++ (the sklearn variant with ``2 + ln k`` trials per
  pick) over those few thousand candidates, reading a precomputed Gram matrix.
  No step loops over the data one centre at a time (the 8-14 s of a plain
  per-centre k-means++ at k=1024 on two cores).
- Lloyd iterations are full-batch: each is one pass of chunked
  ``addmm + min`` (see :mod:`kmeans.kernels`) that also accumulates the
  centroid sums while the chunk is in cache. Memory is the data plus
  ``chunk x k`` scores plus a few ``n``-sized vectors.
- Empty clusters are re-seeded with the points farthest from their centroid
  (taken out of their old cluster), as scikit-learn does.
- It stops when the relative inertia gain of an update falls below ``tol``;
  the returned inertia is exact for the returned centroids.
- Deterministic on CPU for a seed (torch generator, fixed reduction order).
  On CUDA it is fast but ``index_add_`` uses atomics, so the last bits vary.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kmeans.registry import FitResult, make_config, register_backend

INITS = ("k-means||", "k-means++", "random")
# Largest candidate Gram matrix the seeding precomputes (entries; 16M = 64 MB).
GRAM_LIMIT = 2**24


@dataclass(frozen=True, kw_only=True)
class TorchKMeansConfig:
    """Options of the torch backend (``kmeans.fit(x, k, **options)``).

    - ``max_iter``: most centroid updates; ``tol``: stop when an update gains
      less than this fraction of the inertia.
    - ``init``: ``"k-means||"``, ``"k-means++"``, ``"random"`` or a ``[k, d]``
      array of starting centroids.
    - ``init_sample``: rows the initialisation looks at (default
      ``max(32 k, 16384)``; plain k-means++ ``max(4 k, 4096)``, as every
      pick reads the whole pool); ``init_rounds`` and ``oversampling`` (candidates
      per round, in units of k) tune k-means||; ``local_trials`` the greedy
      k-means++ (default ``2 + ln k``).
    - ``chunk_size``: rows per distance block (default: a cache-sized block).
    - ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    - ``cpu_workers``: threads that split each pass on CPU (default: torch's
      thread count; 1 = plain torch ops), see :func:`kmeans.kernels.assign_pass`.
    """

    max_iter: int = 50
    tol: float = 1e-4
    init: Any = "k-means||"
    init_sample: int | None = None
    init_rounds: int = 5
    oversampling: float = 0.5
    local_trials: int | None = None
    chunk_size: int | None = None
    device: str = "cpu"
    cpu_workers: int | None = None

    def __post_init__(self) -> None:
        if self.max_iter < 0:
            raise ValueError(f"max_iter must be >= 0, got {self.max_iter}")
        if not self.tol >= 0:
            raise ValueError(f"tol must be >= 0, got {self.tol}")
        if isinstance(self.init, str) and self.init not in INITS:
            raise ValueError(f"init must be one of {INITS} or an array, got {self.init!r}")
        if self.init_sample is not None and self.init_sample < 1:
            raise ValueError(f"init_sample must be >= 1, got {self.init_sample}")
        if self.init_rounds < 1 or not self.oversampling > 0:
            raise ValueError("init_rounds must be >= 1 and oversampling > 0")
        if self.local_trials is not None and self.local_trials < 1:
            raise ValueError(f"local_trials must be >= 1, got {self.local_trials}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.cpu_workers is not None and self.cpu_workers < 1:
            raise ValueError(f"cpu_workers must be >= 1, got {self.cpu_workers}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not isinstance(self.init, str):
            out["init"] = "array"
        return out


@register_backend("torch")
def fit_torch(x: np.ndarray, k: int, *, seed: int, **options: Any) -> FitResult:
    """Fit with torch; ``x`` is float32 ``[n, d]`` C-contiguous (``kmeans.fit`` ensures it)."""
    import torch

    from kmeans.codebook import rows_as_tensor
    from kmeans.kernels import default_chunk_size, sq_norms_from

    cfg = make_config(TorchKMeansConfig, options, "torch")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={cfg.device!r} asked for but torch sees no CUDA device")
    chunk = cfg.chunk_size or default_chunk_size(k, x.shape[1])
    workers = cfg.cpu_workers or torch.get_num_threads()
    gen = torch.Generator(device=device).manual_seed(seed)
    start = time.perf_counter()
    rows = rows_as_tensor(x)
    if device.type != "cpu":
        rows = rows.to(device)  # one copy; chunks then stay on the device
    with torch.no_grad():
        shift = _mean_rows(rows, chunk)
        row_sq = sq_norms_from(rows, shift, chunk)
        centroids = _initial_centroids(rows, row_sq, shift, k, cfg, gen, (chunk, workers))
        init_s = time.perf_counter() - start
        centroids, inertia, n_iter, converged, history, elapsed = _lloyd(
            rows, row_sq, shift, centroids, cfg, (chunk, workers), start
        )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    passes = max(len(history), 1)
    return FitResult(
        centroids=centroids.cpu().numpy().astype(np.float32, copy=False),
        inertia=inertia,
        n_iter=n_iter,
        converged=converged,
        config={**cfg.to_json(), "chunk_size": chunk, "cpu_workers": workers},
        timings={
            "init_s": round(init_s, 4),
            "lloyd_s": round(total - init_s, 4),
            "pass_s": round((total - init_s) / passes, 5),
        },
        history=tuple(history),
        history_s=tuple(round(t, 4) for t in elapsed),
    )


def _mean_rows(rows, chunk: int):
    import torch

    total = torch.zeros(rows.shape[1], dtype=torch.float64, device=rows.device)
    for start in range(0, rows.shape[0], chunk):
        total += rows[start : start + chunk].sum(0, dtype=torch.float64)
    return (total / rows.shape[0]).to(torch.float32)


# -- initialisation ----------------------------------------------------------
def _initial_centroids(rows, row_sq, shift, k: int, cfg: TorchKMeansConfig, gen, blocks):
    import torch

    n, d = rows.shape
    if not isinstance(cfg.init, str):
        init = torch.as_tensor(np.asarray(cfg.init, dtype=np.float32), device=rows.device)
        if tuple(init.shape) != (k, d):
            raise ValueError(f"init array has shape {tuple(init.shape)}, expected ({k}, {d})")
        return init.clone()
    if cfg.init == "random":
        picks = torch.randperm(n, generator=gen, device=rows.device)[:k]
        return rows[picks.sort().values].clone()
    default_pool = max(4 * k, 4096) if cfg.init == "k-means++" else max(32 * k, 16384)
    pool_size = min(n, cfg.init_sample or default_pool)
    if pool_size < k:
        raise ValueError(f"init_sample={pool_size} is smaller than k={k}")
    if pool_size < n:
        pool_idx = torch.randperm(n, generator=gen, device=rows.device)[:pool_size].sort().values
        pool, pool_sq = rows[pool_idx], row_sq[pool_idx]
    else:
        pool, pool_sq = rows, row_sq
    trials = cfg.local_trials or 2 + int(math.log(k))
    if cfg.init == "k-means++":
        weights = torch.ones(pool_size, device=rows.device)
        picks = _greedy_kmeanspp(pool - shift, pool_sq, weights, k, trials, gen)
        return pool[picks].clone()
    cand, weights = _kmeans_parallel_candidates(pool, pool_sq, shift, k, cfg, gen, blocks)
    if cand.numel() <= k:
        # Too few distinct candidates (tiny or duplicated data): top up at random.
        return _top_up(pool, cand, k, gen)
    cand_rows = pool[cand]
    picks = _greedy_kmeanspp(cand_rows - shift, pool_sq[cand], weights, k, trials, gen)
    return cand_rows[picks].clone()


def _kmeans_parallel_candidates(pool, pool_sq, shift, k, cfg, gen, blocks):
    """k-means|| rounds: candidate indices into ``pool`` and how many rows each is nearest to."""
    import torch

    from kmeans.kernels import CentroidTable, assign_pass

    chunk, workers = blocks
    m = pool.shape[0]
    device = pool.device
    first = torch.randint(m, (1,), generator=gen, device=device)
    cand = [first]
    owner = torch.zeros(m, dtype=torch.int64, device=device)
    labels = torch.empty(m, dtype=torch.int64, device=device)
    scores = torch.empty(m, dtype=torch.float32, device=device)
    table = CentroidTable(pool[first], shift)
    assign_pass(pool, table, chunk, labels, scores, workers=workers)
    min_dist = (pool_sq + scores).clamp_(min=0.0)
    min_dist[first] = 0.0
    n_cand = 1
    target = cfg.oversampling * k
    for _ in range(cfg.init_rounds):
        potential = min_dist.sum(dtype=torch.float64)
        if potential.item() <= 0:
            break
        prob = (min_dist.double() * (target / potential)).clamp_(max=1.0)
        chosen = torch.rand(m, generator=gen, device=device, dtype=torch.float64) < prob
        chosen = chosen.nonzero().flatten()
        if chosen.numel() == 0:
            continue
        table = CentroidTable(pool[chosen], shift)
        assign_pass(pool, table, chunk, labels, scores, workers=workers)
        dist = (pool_sq + scores).clamp_(min=0.0)
        closer = dist < min_dist
        min_dist = torch.where(closer, dist, min_dist)
        owner = torch.where(closer, labels + n_cand, owner)
        min_dist[chosen] = 0.0  # exact zero, whatever the rounding said
        owner[chosen] = torch.arange(n_cand, n_cand + chosen.numel(), device=device)
        cand.append(chosen)
        n_cand += chosen.numel()
    cand_idx = torch.cat(cand)
    weights = torch.bincount(owner, minlength=n_cand).to(torch.float32)
    return cand_idx, weights


def _greedy_kmeanspp(centred, sq, weights, k: int, trials: int, gen):
    """Weighted greedy k-means++ over a small candidate set; returns k indices (torch).

    ``centred`` are the candidates minus the shift and ``sq`` their squared
    norms, so ``||a - b||^2 = sq_a + sq_b - 2 a.b`` stays well conditioned.
    Each pick draws ``trials`` candidates by D^2 weight and keeps the one that
    lowers the potential most (scikit-learn's greedy variant).

    The candidates' Gram matrix is computed once with one matmul (when it is
    at most ``GRAM_LIMIT`` entries), so a pick reads ``trials`` rows of it
    instead of all candidate vectors. The k picks run in numpy on the host:
    they are a thousand tiny steps, where torch's per-op and OpenMP overheads
    dominate (measured: 26-39 s with 2 threads on a busy 2-core machine,
    against well under a second this way).
    """
    import torch

    count = centred.shape[0]
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    rng = np.random.default_rng(seed)
    sq_h = sq.double().cpu().numpy()
    w = weights.double().cpu().numpy()
    if count * count <= GRAM_LIMIT:
        gram = (centred @ centred.T).cpu().numpy()

        def dots(idx: np.ndarray) -> np.ndarray:
            return gram[idx]
    else:
        cand = centred.cpu().numpy()

        def dots(idx: np.ndarray) -> np.ndarray:
            return cand[idx] @ cand.T

    def dist_to(idx: np.ndarray) -> np.ndarray:  # [len(idx), count]
        out = sq_h[idx, None] + sq_h[None, :] - 2.0 * dots(idx)
        return np.maximum(out, 0.0, out=out)

    picks = np.empty(k, dtype=np.int64)
    cdf = np.cumsum(w)
    picks[0] = min(int(np.searchsorted(cdf, rng.random() * cdf[-1])), count - 1)
    closest = dist_to(picks[:1])[0]
    for i in range(1, k):
        cdf = np.cumsum(w * closest)
        trial = np.minimum(np.searchsorted(cdf, rng.random(trials) * cdf[-1]), count - 1)
        candidate = np.minimum(dist_to(trial), closest[None, :])
        best = int(np.argmin(candidate @ w))
        closest = candidate[best]
        picks[i] = trial[best]
    return torch.from_numpy(picks).to(centred.device)


def _top_up(pool, cand, k: int, gen):
    import torch

    taken = torch.zeros(pool.shape[0], dtype=torch.bool, device=pool.device)
    taken[cand] = True
    order = torch.randperm(pool.shape[0], generator=gen, device=pool.device)
    extra = order[~taken[order]][: k - cand.numel()]
    return pool[torch.cat([cand, extra])].clone()


# -- Lloyd ----------------------------------------------------------------------
def _lloyd(rows, row_sq, shift, centroids, cfg: TorchKMeansConfig, blocks, start: float):
    import torch

    from kmeans.kernels import CentroidTable, assign_pass

    chunk, workers = blocks
    n = rows.shape[0]
    k = centroids.shape[0]
    device = rows.device
    labels = torch.empty(n, dtype=torch.int64, device=device)
    scores = torch.empty(n, dtype=torch.float32, device=device)
    history: list[float] = []
    elapsed: list[float] = []  # seconds since the fit started, at the end of each pass
    converged = False
    n_iter = 0
    while True:
        last = n_iter >= cfg.max_iter
        sums = None if last else torch.zeros_like(centroids)
        table = CentroidTable(centroids, shift)
        assign_pass(rows, table, chunk, labels, scores, sums, workers=workers)
        dist = (row_sq + scores).clamp_(min=0.0)
        inertia = float(dist.sum(dtype=torch.float64).item())
        if history and history[-1] - inertia <= cfg.tol * inertia:
            converged = True
        history.append(inertia)
        elapsed.append(time.perf_counter() - start)
        if last or converged:
            return centroids, inertia, n_iter, converged, history, elapsed
        counts = torch.bincount(labels, minlength=k)
        _repair_empty(rows, labels, dist, counts, sums)
        filled = counts > 0
        updated = sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)
        centroids = torch.where(filled.unsqueeze(1), updated, centroids)
        n_iter += 1


def _repair_empty(rows, labels, dist, counts, sums) -> None:
    """Move the farthest points into empty clusters (in ``counts`` / ``sums``, in place).

    A point is eligible only if its cluster keeps at least one other member
    and it is not exactly on its centroid; clusters still empty afterwards keep
    their previous centroid (the caller's ``torch.where``).
    """
    import torch

    empty = (counts == 0).nonzero().flatten()
    if empty.numel() == 0:
        return
    eligible = torch.where(counts[labels] > 1, dist, torch.zeros_like(dist))
    far_dist, far = torch.topk(eligible, min(empty.numel(), eligible.numel()))
    far = far[far_dist > 0]
    if far.numel() == 0:
        return
    empty = empty[: far.numel()]
    old = labels[far]
    moved = rows[far].to(sums.device)
    sums.index_add_(0, old, -moved)
    counts.index_add_(0, old, -torch.ones_like(old))
    sums[empty] = moved
    counts[empty] = 1
    labels[far] = empty
