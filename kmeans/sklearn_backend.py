"""scikit-learn MiniBatchKMeans with fairseq's settings, for comparison and reproduction.

fairseq fits its speech-unit codebooks with MiniBatchKMeans in two scripts
that differ in two settings:

- ``examples/textless_nlp/gslm/speech2unit/clustering/cluster_kmeans.py``:
  ``init="k-means++", max_iter=150, batch_size=10000, tol=0.0,
  max_no_improvement=100, n_init=20, reassignment_ratio=0.5``: the defaults
  here (fairseq's speech2unit recipe), so a user can reproduce a speech2unit
  codebook without a pickle;
- ``examples/hubert/simple_kmeans/learn_kmeans.py``: the same but
  ``max_iter=100, reassignment_ratio=0.0``: :data:`HUBERT_SETTINGS`.

The reassignment ratio matters more than it looks: at 0.5, every mini-batch
step re-seeds the centres that got fewer than half the count of the busiest
one, which keeps many centres wandering. Measured on 74k real Whisper-base
layer-3 frames, k=1024, n_init 3 (``python -m benchmarks.kmeans
--whisper-frames``): inertia 1.62x that of a converged Lloyd run with 0.5,
see benchmarks/README.md for 0.0. With n_init 20 either is the slow path
(most of an hour at k=1024 on 2 cores); ``n_init=3`` is the usual shortcut.

Example::

    kmeans.fit(frames, 1024, backend="sklearn", n_init=3)
    kmeans.fit(frames, 1024, backend="sklearn", **HUBERT_SETTINGS)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kmeans.registry import FitResult, make_config, register_backend

# fairseq's HuBERT simple_kmeans (learn_kmeans.py) differs from speech2unit in these.
HUBERT_SETTINGS: dict[str, Any] = {"max_iter": 100, "reassignment_ratio": 0.0}


@dataclass(frozen=True, kw_only=True)
class SklearnKMeansConfig:
    """MiniBatchKMeans options; defaults are fairseq speech2unit's settings."""

    n_init: int = 20
    max_iter: int = 150
    batch_size: int = 10000
    tol: float = 0.0
    max_no_improvement: int = 100
    reassignment_ratio: float = 0.5
    init_size: int | None = None

    def __post_init__(self) -> None:
        if self.n_init < 1 or self.max_iter < 1 or self.batch_size < 1:
            raise ValueError("n_init, max_iter and batch_size must be >= 1")
        if self.tol < 0 or self.reassignment_ratio < 0:
            raise ValueError("tol and reassignment_ratio must be >= 0")


@register_backend("sklearn")
def fit_sklearn(x: np.ndarray, k: int, *, seed: int, **options: Any) -> FitResult:
    cfg = make_config(SklearnKMeansConfig, options, "sklearn")
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError as exc:  # pragma: no cover - scikit-learn is a core dependency
        raise ImportError(
            "the sklearn backend needs scikit-learn: pip install scikit-learn"
        ) from exc
    start = time.perf_counter()
    model = MiniBatchKMeans(
        n_clusters=k,
        init="k-means++",
        max_iter=cfg.max_iter,
        batch_size=cfg.batch_size,
        tol=cfg.tol,
        max_no_improvement=cfg.max_no_improvement,
        init_size=cfg.init_size,
        n_init=cfg.n_init,
        reassignment_ratio=cfg.reassignment_ratio,
        compute_labels=False,  # the inertia is measured exactly by kmeans.fit
        random_state=seed,
        verbose=0,
    )
    model.fit(x)
    return FitResult(
        centroids=np.asarray(model.cluster_centers_, dtype=np.float32),
        n_iter=int(model.n_steps_),
        config=asdict(cfg),
        timings={"sklearn_s": round(time.perf_counter() - start, 4)},
    )
