"""The codebook artifact: centroids plus the metadata that says where they came from.

A codebook folder holds exactly two files, written through ``datastore.storage`` so a
folder can be local or ``gs://``:

- ``centroids.npy``: float32 ``[k, dim]``, read with ``allow_pickle=False``;
- ``codebook.json``: ``k``, ``dim``, ``sha256`` (of the centroids' raw
  little-endian float32 bytes, so the hash does not depend on the npy header),
  ``format_version``, and the free-form metadata: ``encoder``, ``layer``,
  ``frame_rate`` (of the features the centroids were fitted on, i.e. the
  token rate after any downsampling), ``mode`` (e.g. Whisper padded /
  unpadded), ``sample_size``, ``inertia``, ``seed``, ``backend``,
  ``backend_config``, ``downsample`` / ``downsample_mode`` / ``dedup``
  (see :mod:`kmeans.postprocess`), ``timings``, ``convergence``...

``load`` recomputes the hash and refuses a folder whose centroids do not match
it, so a tampered or truncated codebook never tokenizes silently. Pickle is
never used: that is the point of this format (sklearn models pickled with one
version break in the next, and unpickling runs code).

The id names the codebook's origin: ``{encoder}-L{layer}-k{k}-{sha8}``.
``fit`` does not know the encoder, so a fresh codebook says ``unknown`` and
layer ``-1`` until the fit-codebook job attaches the truth::

    cb = kmeans.fit(frames, 1024, seed=0).with_metadata(
        encoder="whisper-base", layer=3, frame_rate=50.0, mode="unpadded")
    cb.id          # 'whisper-base-L3-k1024-1f2e3d4c'
    cb.save("gs://bucket/codebooks/wb-l3-k1024")
    tokens = kmeans.Codebook.load("gs://bucket/codebooks/wb-l3-k1024").assign(frames)
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from datastore import storage
from datastore.identity import CodebookRef

FORMAT_VERSION = 1
CENTROIDS_FILE = "centroids.npy"
METADATA_FILE = "codebook.json"
UNKNOWN_ENCODER = "unknown"
UNKNOWN_LAYER = -1
# Keys computed from the centroids themselves: never taken from a caller.
DERIVED_KEYS = ("k", "dim", "sha256", "format_version", "id")
DEFAULT_METADATA: dict[str, Any] = {
    "encoder": UNKNOWN_ENCODER,
    "layer": UNKNOWN_LAYER,
    "frame_rate": None,
    "mode": None,
    "downsample": 1,
    "downsample_mode": "mean",
    "dedup": False,
}


class CodebookIntegrityError(ValueError):
    """A codebook folder whose files disagree (wrong hash, shape or dtype)."""


def centroids_sha256(centroids: np.ndarray) -> str:
    """sha256 of the raw little-endian float32 bytes, C order."""
    data = np.ascontiguousarray(centroids, dtype="<f4")
    return hashlib.sha256(data.tobytes()).hexdigest()


def as_float32_rows(x: Any, dim: int | None = None, *, name: str = "x") -> np.ndarray:
    """``x`` as a C-contiguous float32 ``[n, d]`` array (a copy only when needed)."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [n, dim] array, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has {arr.shape[1]} features per row, the codebook {dim}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def rows_as_tensor(arr: np.ndarray):
    """A torch view of a float32 array, without a copy even when it is read-only."""
    import torch

    with warnings.catch_warnings():
        # Read-only inputs (np.load mmap_mode="r") are only ever read here.
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(arr)


class Codebook:
    """k-means centroids with provenance; immutable (``with_metadata`` makes a new one).

    Example::

        cb = Codebook(np.eye(4, dtype=np.float32), {"encoder": "mfcc", "layer": 0})
        cb.assign(np.eye(4, dtype=np.float32))   # array([0, 1, 2, 3])
    """

    def __init__(self, centroids: Any, metadata: Mapping[str, Any] | None = None):
        arr = np.array(centroids, dtype=np.float32, order="C", copy=True)
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"centroids must be a non-empty [k, dim] array, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("centroids contain NaN or infinity")
        arr.setflags(write=False)
        self._centroids = arr
        self._sha256 = centroids_sha256(arr)
        meta = dict(DEFAULT_METADATA)
        for key, value in (metadata or {}).items():
            if key in DERIVED_KEYS:
                continue  # recomputed from the centroids: see to_json()
            meta[key] = value
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"codebook metadata must be plain JSON: {exc}") from exc
        self._metadata = meta
        self._tables: dict[str, Any] = {}

    # -- identity -----------------------------------------------------------
    @property
    def centroids(self) -> np.ndarray:
        """float32 ``[k, dim]``, read-only."""
        return self._centroids

    @property
    def k(self) -> int:
        return int(self._centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self._centroids.shape[1])

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the free-form metadata (derived keys excluded)."""
        return json.loads(json.dumps(self._metadata))

    @property
    def downsample(self) -> int:
        """Encoder frames averaged into one token (1: none; older metadata lacks it)."""
        return int(self._metadata.get("downsample") or 1)

    @property
    def id(self) -> str:
        """``{encoder}-L{layer}-k{k}-{sha8}``; ``unknown-L-1-...`` before metadata is attached."""
        encoder = self._metadata.get("encoder") or UNKNOWN_ENCODER
        layer = self._metadata.get("layer")
        layer = UNKNOWN_LAYER if layer is None else layer
        return f"{encoder}-L{layer}-k{self.k}-{self._sha256[:8]}"

    def ref(self, uri: str | None = None) -> CodebookRef:
        """How folders of its tokens refer to it (``uri``: where it is saved)."""
        return CodebookRef(id=self.id, k=self.k, sha256=self.sha256, uri=uri)

    def with_metadata(self, **updates: Any) -> Codebook:
        """A new codebook with the same centroids and updated metadata.

        ``cb.with_metadata(encoder="whisper-base", layer=3, frame_rate=50.0)``
        """
        bad = sorted(set(updates) & set(DERIVED_KEYS))
        if bad:
            raise ValueError(f"{bad} are computed from the centroids and cannot be set")
        return Codebook(self._centroids, {**self._metadata, **updates})

    def to_json(self) -> dict[str, Any]:
        """The content of ``codebook.json``."""
        return {
            "format_version": FORMAT_VERSION,
            "k": self.k,
            "dim": self.dim,
            "sha256": self._sha256,
            "id": self.id,
            **self.metadata,
        }

    def __repr__(self) -> str:
        return f"Codebook(id={self.id!r}, k={self.k}, dim={self.dim})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Codebook):
            return NotImplemented
        return self._sha256 == other._sha256 and self._metadata == other._metadata

    __hash__ = None  # mutable-looking dict inside; equality is by value

    def __getstate__(self) -> dict[str, Any]:
        # Beam pickles model handlers that hold a codebook: drop device caches.
        return {"centroids": self._centroids, "metadata": self._metadata}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["centroids"], state["metadata"])

    # -- applying -----------------------------------------------------------
    def _table(self, device: str | None):
        import torch

        from kmeans.kernels import CentroidTable

        key = str(torch.device(device or "cpu"))
        table = self._tables.get(key)
        if table is None:
            centroids = torch.tensor(self._centroids, device=key)
            table = CentroidTable(centroids, centroids.mean(0))
            self._tables[key] = table
        return table

    def nearest(
        self,
        x: Any,
        *,
        device: str | None = None,
        chunk_size: int | None = None,
        workers: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid ids (int64) and squared distances (float32) per row."""
        from kmeans.kernels import default_chunk_size, nearest

        arr = as_float32_rows(x, self.dim)
        labels, dist = nearest(
            rows_as_tensor(arr),
            self._table(device),
            chunk_size or default_chunk_size(self.k, self.dim),
            with_distances=True,
            workers=workers,
        )
        return labels.cpu().numpy(), dist.cpu().numpy()

    def assign(
        self,
        x: Any,
        *,
        device: str | None = None,
        chunk_size: int | None = None,
        workers: int = 1,
    ) -> np.ndarray:
        """Token id (int64) of the nearest centroid for each row of ``x`` ([n, dim]).

        Chunked (memory ``chunk_size x k``), on ``device`` ("cuda") when given.
        ``workers > 1`` splits a large CPU input over threads with torch set to
        one intra-op thread meanwhile (process-wide: for bulk, single-user
        calls, not inside a multi-threaded Beam worker; see
        :func:`kmeans.kernels.assign_pass`).
        """
        from kmeans.kernels import default_chunk_size, nearest

        arr = as_float32_rows(x, self.dim)
        labels, _ = nearest(
            rows_as_tensor(arr),
            self._table(device),
            chunk_size or default_chunk_size(self.k, self.dim),
            workers=workers,
        )
        return labels.cpu().numpy()

    def assign_tensor(self, x):
        """Token ids (int64 tensor, on ``x``'s device) for rows that already live
        on a torch device: features that never leave the GPU are assigned there
        (:mod:`tokenizer.speech_model`). Same kernel as :meth:`assign`."""
        from kmeans.kernels import default_chunk_size, nearest

        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be [n, {self.dim}], got {tuple(x.shape)}")
        labels, _ = nearest(
            x.float(), self._table(str(x.device)), default_chunk_size(self.k, self.dim)
        )
        return labels

    def inertia(
        self,
        x: Any,
        *,
        device: str | None = None,
        chunk_size: int | None = None,
        workers: int = 1,
    ) -> float:
        """Sum of squared distances from each row to its nearest centroid."""
        _, dist = self.nearest(x, device=device, chunk_size=chunk_size, workers=workers)
        return float(dist.sum(dtype=np.float64))

    # -- storage ------------------------------------------------------------
    def save(self, directory: str) -> str:
        """Write ``centroids.npy`` then ``codebook.json`` (each atomically) under ``directory``.

        The json goes last, so a folder with a ``codebook.json`` is complete.
        """
        storage.makedirs(directory)
        storage.write_npy(storage.join(directory, CENTROIDS_FILE), self._centroids)
        text = json.dumps(self.to_json(), indent=2, sort_keys=True, allow_nan=False)
        storage.write_text(storage.join(directory, METADATA_FILE), text + "\n")
        return directory

    @classmethod
    def load(cls, directory: str) -> Codebook:
        """Read a codebook folder, verifying shape, dtype and sha256."""
        meta_uri = storage.join(directory, METADATA_FILE)
        centroids_uri = storage.join(directory, CENTROIDS_FILE)
        if not storage.exists(meta_uri):
            raise FileNotFoundError(f"{directory} is not a codebook folder: no {METADATA_FILE}")
        try:
            meta = json.loads(storage.read_text(meta_uri))
        except ValueError as exc:
            raise CodebookIntegrityError(f"{meta_uri} is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise CodebookIntegrityError(f"{meta_uri} has no sha256 of the centroids")
        version = meta.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CodebookIntegrityError(
                f"{meta_uri} has format_version {version!r}; this speechtok reads "
                f"<= {FORMAT_VERSION}: upgrade speechtok"
            )
        try:
            arr = storage.read_npy(centroids_uri)
        except FileNotFoundError:
            raise
        except (ValueError, OSError, EOFError) as exc:
            raise CodebookIntegrityError(
                f"{centroids_uri} is not a plain .npy array: {exc}"
            ) from exc
        if arr.dtype != np.dtype("<f4") or arr.ndim != 2:
            raise CodebookIntegrityError(
                f"{centroids_uri} holds {arr.dtype} {arr.shape}, expected float32 [k, dim]"
            )
        if arr.shape != (meta.get("k"), meta.get("dim")):
            raise CodebookIntegrityError(
                f"{centroids_uri} has shape {arr.shape} but {METADATA_FILE} says "
                f"k={meta.get('k')}, dim={meta.get('dim')}"
            )
        actual = centroids_sha256(arr)
        if actual != meta["sha256"]:
            raise CodebookIntegrityError(
                f"{centroids_uri}: sha256 {actual[:16]}... does not match {METADATA_FILE}'s "
                f"{meta['sha256'][:16]}...: the centroids were modified or corrupted; "
                "restore or refit the codebook"
            )
        return cls(arr, meta)  # "id" is recomputed from encoder, layer, k and the hash
