"""``kmeans.fit``: rows in, :class:`~kmeans.Codebook` out, through a named backend.

Backends (see each module for its options):

- ``torch`` (default): k-means|| initialisation on a subsample, then full-batch
  Lloyd with chunked one-matmul distances; deterministic on CPU for a seed;
  ``device="cuda"`` runs it on a GPU.
- ``sklearn``: MiniBatchKMeans with fairseq speech2unit's settings (n_init
  20, batch 10000, reassignment_ratio 0.5; HuBERT's differ, see
  :mod:`kmeans.sklearn_backend`), for comparison.
- ``faiss``: ``faiss.Kmeans`` defaults (25 iterations), needs the ``faiss`` extra.

Example::

    import kmeans
    cb = kmeans.fit(frames, 1024, seed=0)                  # torch on CPU
    cb = kmeans.fit(frames, 1024, seed=0, device="cuda", max_iter=50)
    cb.metadata["inertia"], cb.assign(frames[:10])
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

# Importing the backend modules registers them; they import their heavy
# libraries only when called.
from datastore.identity import FeatureIdentity
from kmeans import faiss_backend, sklearn_backend, torch_backend  # noqa: F401
from kmeans.codebook import Codebook, as_float32_rows
from kmeans.registry import BACKENDS, get_backend

_FINITE_CHECK_ROWS = 65536


def available_backends() -> list[str]:
    return sorted(BACKENDS)


def _check_finite(x: np.ndarray) -> None:
    # Chunked so that the boolean temporary stays small.
    for start in range(0, x.shape[0], _FINITE_CHECK_ROWS):
        if not np.isfinite(x[start : start + _FINITE_CHECK_ROWS]).all():
            raise ValueError("x contains NaN or infinity: reject those frames before fitting")


def fit(x: Any, k: int, *, seed: int = 0, backend: str = "torch", **opts: Any) -> Codebook:
    """Fit ``k`` centroids to the rows of ``x`` (float32 ``[n, d]``) and return a Codebook.

    ``opts`` are the backend's options (torch: ``device``, ``max_iter``,
    ``tol``, ``init``, ``init_sample``, ``chunk_size``...). The codebook's
    metadata records the backend, its resolved settings, the seed, the sample
    size and the exact inertia on ``x``; encoder metadata is attached later
    with :meth:`Codebook.with_metadata`.
    """
    fn = get_backend(backend)
    rows = as_float32_rows(x)
    n = rows.shape[0]
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n < k:
        raise ValueError(f"cannot fit k={k} centroids to {n} rows: need at least k rows")
    _check_finite(rows)
    start = time.perf_counter()
    result = fn(rows, int(k), seed=int(seed), **opts)
    train_seconds = time.perf_counter() - start
    codebook = Codebook(result.centroids)
    inertia = result.inertia
    if inertia is None:
        inertia = codebook.inertia(rows, device=opts.get("device"))
    timings = {"train_s": round(train_seconds, 4), **result.timings}
    timings["fit_s"] = round(time.perf_counter() - start, 4)
    extra = {}
    if result.history:
        # How the inertia fell, pass by pass: lets users judge max_iter / tol.
        extra["convergence"] = {
            "inertia": [float(v) for v in result.history],
            "seconds": [float(v) for v in result.history_s],
        }
    return codebook.with_metadata(
        backend=backend,
        backend_config=result.config,
        seed=int(seed),
        sample_size=int(n),
        inertia=float(inertia),
        n_iter=result.n_iter,
        converged=result.converged,
        timings=timings,
        **extra,
    )


def fit_frame_sample(
    sample,
    k: int,
    *,
    identity: FeatureIdentity,
    downsample: int = 1,
    max_frames_per_utt: int | None = None,
    seed: int = 0,
    backend: str = "torch",
    device: str | None = None,
    fitted_on: dict | None = None,
) -> Codebook | None:
    """A codebook for the frames of a :class:`~kmeans.sampling.FrameSample`,
    with the metadata that ties it to its features: the encoder ``identity``
    (``encoder``, ``layer``, ``mode``, ``frame_rate``), the frame averaging,
    what the sample saw per language and ``fitted_on`` (the input's format,
    languages and splits as selected). None when the sample holds fewer
    than ``k`` frames (nothing to fit)."""
    from kmeans.postprocess import PostprocessConfig

    if int(sample.frames.shape[0]) < k:
        return None
    opts = {"device": device} if backend == "torch" and device and device != "cpu" else {}
    codebook = fit(sample.frames, k, seed=seed, backend=backend, **opts)
    post = PostprocessConfig(downsample=downsample)
    return codebook.with_metadata(
        encoder=identity.encoder,
        layer=identity.layer,
        mode=identity.mode,
        frame_rate=identity.token_rate(downsample),
        encoder_frame_rate=identity.frame_rate,
        sample_per_lang=sample.per_lang,
        seen_frames=sample.seen_frames,
        seen_utterances=sample.seen_utts,
        max_frames_per_utt=max_frames_per_utt,
        **({"fitted_on": fitted_on} if fitted_on else {}),
        **post.to_metadata(),
    )
