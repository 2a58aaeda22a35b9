"""The worker side of ``benchmarks.kmeans``: one fit per process
(``python -m benchmarks.kmeans --worker SPEC``, see ``benchmarks._harness``),
then, for the torch row, the matmul rates that one Lloyd pass and
``Codebook.assign`` are held against. What the rows are and why:
``benchmarks/kmeans.py``'s docstring.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np

from benchmarks._harness import TreePeak
from kmeans.sklearn_backend import HUBERT_SETTINGS

HUBERT = HUBERT_SETTINGS  # fairseq HuBERT simple_kmeans
# name -> (kmeans backend, options)
BACKEND_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "torch": ("torch", {}),
    "faiss": ("faiss", {}),
    "sklearn-n3": (
        "sklearn",
        {**HUBERT, "n_init": 3},
    ),  # HuBERT's settings with the usual n_init shortcut
    "sklearn-hubert": ("sklearn", HUBERT),  # n_init 20: HuBERT's simple_kmeans exactly
    "sklearn-s2u-n3": ("sklearn", {"n_init": 3}),  # speech2unit (reassignment 0.5), n_init 3
}


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def kernel_rates(x: np.ndarray, codebook, chunk: int, device: str) -> dict[str, float]:
    """GFLOP/s (counting the 2 n d k of the distance matmul) of one Lloyd
    iteration, of ``Codebook.assign``, and of bare fp32 matmuls of the same
    shapes ([n, d] x [d, k], whole and in chunks), plus a 4096^3 matmul.

    The kinds are measured in turns, best of three each, so that a burst of
    load from other processes does not favour one of them.
    """
    import torch

    from kmeans.codebook import rows_as_tensor
    from kmeans.torch_backend import fit_torch

    k = codebook.k
    rows = rows_as_tensor(x)
    if device != "cpu":
        rows = rows.to(device)
    c = torch.tensor(codebook.centroids, device=device)
    square = torch.randn(4096, 4096, device=device)

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    def chunked() -> None:
        for start in range(0, rows.shape[0], chunk):
            torch.mm(rows[start : start + chunk], c.T)
        sync()

    def whole() -> None:
        torch.mm(rows, c.T)
        sync()

    def big() -> None:
        torch.mm(square, square)
        sync()

    lloyd_pass = {}

    def lloyd() -> None:
        # From the fitted centroids: one update + two passes (one accumulating).
        res = fit_torch(
            x,
            k,
            seed=0,
            init=codebook.centroids,
            max_iter=1,
            tol=0.0,
            chunk_size=chunk,
            device=device,
        )
        lloyd_pass["s"] = min(lloyd_pass.get("s", float("inf")), res.timings["pass_s"])

    def assign() -> None:
        codebook.assign(x, device=device)

    workers = torch.get_num_threads()

    def assign_threads() -> None:  # opt-in for bulk calls: one worker per torch thread
        codebook.assign(x, device=device, workers=workers)

    kinds = {
        "mm_chunked": chunked,
        "mm_whole": whole,
        "mm_4096": big,
        "assign": assign,
        "assign_workers": assign_threads,
    }
    best = dict.fromkeys(kinds, float("inf"))
    for fn in kinds.values():
        fn()  # warm-up
    for _ in range(3):
        lloyd()
        for name, fn in kinds.items():
            best[name] = min(best[name], _best_of(fn, 1))
    flops = 2.0 * x.shape[0] * x.shape[1] * k
    return {
        "mm_chunked_gflops": flops / best["mm_chunked"] / 1e9,
        "mm_whole_gflops": flops / best["mm_whole"] / 1e9,
        "mm_4096_gflops": 2.0 * 4096**3 / best["mm_4096"] / 1e9,
        "assign_s": round(best["assign"], 4),
        "assign_gflops": flops / best["assign"] / 1e9,
        "assign_workers_gflops": flops / best["assign_workers"] / 1e9,
        "lloyd_pass_s": round(lloyd_pass["s"], 4),
        "lloyd_gflops": flops / lloyd_pass["s"] / 1e9,
    }


def fit_row(spec: dict[str, Any]) -> dict[str, Any]:
    import kmeans

    backend, opts = BACKEND_ROWS[spec["row"]]
    opts = dict(opts)
    if backend == "torch" and spec.get("device", "cpu") != "cpu":
        opts["device"] = spec["device"]
    # Warm-up on tiny data: library start-up (thread pools, BLAS buffers) is not the fit.
    warm = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    warm_opts = {**opts, "n_init": 1} if backend == "sklearn" else opts
    kmeans.fit(warm, 8, seed=0, backend=backend, **warm_opts)
    x = np.load(spec["data"], allow_pickle=False)
    data_mb = x.nbytes / 2**20
    # This process alone (its fit spawns none): sampling descendants would cost CPU in the clock.
    with TreePeak(interval=0.01, children=False) as rss:
        baseline = rss.peak
        start = time.perf_counter()
        cb = kmeans.fit(x, spec["k"], seed=spec["seed"], backend=backend, **opts)
        fit_wall = time.perf_counter() - start
    meta = cb.metadata
    timings = meta["timings"]
    out: dict[str, Any] = {
        "dataset": spec["dataset"],
        "k": spec["k"],
        "row": spec["row"],
        "backend": backend,
        "options": opts,
        "n": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "wall_s": timings["train_s"],
        "fit_s": round(fit_wall, 4),
        "init_s": timings.get("init_s"),
        "n_iter": meta["n_iter"],
        "inertia": meta["inertia"],
        "data_mb": round(data_mb, 1),
        "peak_over_data_mb": round((rss.peak - baseline) / 2**20, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if backend == "torch":
        chunk = meta["backend_config"]["chunk_size"]
        out["pass_s_in_fit"] = timings["pass_s"]
        out["cpu_workers"] = meta["backend_config"]["cpu_workers"]
        out["convergence"] = meta["convergence"]["inertia"]
        out["convergence_s"] = meta["convergence"]["seconds"]
        out.update(kernel_rates(x, cb, chunk, spec.get("device", "cpu")))
    return out


WORKERS = dict.fromkeys(BACKEND_ROWS, fit_row)  # every row is one fit, its spec says which
