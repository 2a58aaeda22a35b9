"""faiss k-means (``pip install faiss-cpu``, the ``faiss`` extra), as a peer to compare with.

Defaults are ``faiss.Kmeans``'s own: 25 Lloyd iterations from a random
initialisation, at most 256 training points per centroid (faiss subsamples
beyond that).

Example::

    kmeans.fit(frames, 1024, backend="faiss", niter=25)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kmeans.registry import FitResult, make_config, register_backend


@dataclass(frozen=True, kw_only=True)
class FaissKMeansConfig:
    """``faiss.Kmeans`` options (its defaults)."""

    niter: int = 25
    nredo: int = 1
    max_points_per_centroid: int = 256
    min_points_per_centroid: int = 39
    gpu: bool = False

    def __post_init__(self) -> None:
        if self.niter < 1 or self.nredo < 1 or self.max_points_per_centroid < 1:
            raise ValueError("niter, nredo and max_points_per_centroid must be >= 1")


@register_backend("faiss")
def fit_faiss(x: np.ndarray, k: int, *, seed: int, **options: Any) -> FitResult:
    cfg = make_config(FaissKMeansConfig, options, "faiss")
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "the faiss backend needs faiss: pip install 'speechtok[faiss]' (faiss-cpu)"
        ) from exc
    start = time.perf_counter()
    model = faiss.Kmeans(
        x.shape[1],
        k,
        niter=cfg.niter,
        nredo=cfg.nredo,
        seed=seed,
        max_points_per_centroid=cfg.max_points_per_centroid,
        min_points_per_centroid=cfg.min_points_per_centroid,
        gpu=cfg.gpu,
        verbose=False,
    )
    model.train(x)
    return FitResult(
        centroids=np.asarray(model.centroids, dtype=np.float32).reshape(k, x.shape[1]),
        n_iter=cfg.niter,
        config=asdict(cfg),
        timings={"faiss_s": round(time.perf_counter() - start, 4)},
    )
