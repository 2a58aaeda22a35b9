"""Codebook fitting and applying: fast, reproducible k-means with no Beam.

- :func:`fit` (``kmeans.fit(x, k, seed=0, backend="torch", **opts)``) returns a
  :class:`Codebook`; backends ``torch`` (default), ``sklearn``, ``faiss``.
- :class:`Codebook`: ``assign``, ``inertia``, ``save`` / ``load`` (npy + json
  with sha256, no pickle), ``id``, ``with_metadata``.
- :mod:`kmeans.postprocess`: run-length dedup and downsampling of tokens.
- :mod:`kmeans.sampling`: a mergeable stratified reservoir of frames per language.
- :mod:`kmeans.import_pickle`: convert a fairseq joblib k-means model (opt-in).

torch, scikit-learn and faiss are imported only when used.
"""

from kmeans.api import available_backends, fit
from kmeans.codebook import Codebook, CodebookIntegrityError
from kmeans.registry import FitResult, register_backend

__all__ = [
    "Codebook",
    "CodebookIntegrityError",
    "FitResult",
    "available_backends",
    "fit",
    "register_backend",
]
