"""Convert a fairseq / textlesslib k-means model (a joblib pickle) into a codebook, once.

fairseq's HuBERT ``simple_kmeans`` and speech2unit save scikit-learn
(MiniBatch)KMeans objects with ``joblib.dump``. Loading one runs whatever code
the file says (pickle), and it breaks across scikit-learn versions, so
speechtok never loads pickles implicitly: this importer does it only with an
explicit ``trust_pickle=True`` / ``--trust-pickle``, and writes the centroids
in the pickle-free codebook format for every later use::

    python -m kmeans.import_pickle km.bin --out codebooks/hubert-l6-k100 \\
        --trust-pickle --encoder hf:facebook/hubert-base-ls960 --layer 6 --frame-rate 50

    from kmeans.import_pickle import import_sklearn_kmeans
    cb = import_sklearn_kmeans("km.bin", trust_pickle=True, encoder="hubert-base", layer=6)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from typing import Any

import numpy as np

from datastore import storage
from kmeans.codebook import Codebook


class UntrustedPickleError(PermissionError):
    """Loading a pickle was asked for without the explicit trust flag."""


def import_sklearn_kmeans(
    path: str,
    *,
    trust_pickle: bool = False,
    encoder: str = "unknown",
    layer: int = -1,
    **metadata: Any,
) -> Codebook:
    """Load a joblib-pickled sklearn k-means model (only if trusted) as a Codebook."""
    if trust_pickle is not True:
        raise UntrustedPickleError(
            f"{path} is a pickle: loading it runs arbitrary code. Pass trust_pickle=True "
            "(--trust-pickle) only for a file from a source you trust."
        )
    try:
        import joblib
    except ImportError as exc:  # pragma: no cover - joblib comes with scikit-learn
        raise ImportError("importing a pickled model needs joblib: pip install joblib") from exc
    data = storage.read_bytes(path)
    model = joblib.load(io.BytesIO(data))
    centers = getattr(model, "cluster_centers_", None)
    if centers is None:
        raise ValueError(
            f"{path} holds a {type(model).__name__}, not a fitted k-means model "
            "(no cluster_centers_)"
        )
    centroids = np.asarray(centers, dtype=np.float32)
    if centroids.ndim != 2:
        raise ValueError(f"{path}: cluster_centers_ has shape {centroids.shape}, expected [k, dim]")
    return Codebook(centroids).with_metadata(
        encoder=encoder,
        layer=layer,
        backend="imported",
        imported_from=str(path),
        imported_sha256=hashlib.sha256(data).hexdigest(),
        imported_class=f"{type(model).__module__}.{type(model).__qualname__}",
        **metadata,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kmeans.import_pickle",
        description="Convert a joblib-pickled sklearn k-means model (fairseq, textlesslib) "
        "into a pickle-free codebook folder. Loading a pickle runs code: needs --trust-pickle.",
    )
    p.add_argument("model", help="the .bin/.pkl/.joblib file (local path or gs://)")
    p.add_argument("--out", required=True, help="codebook folder to write")
    p.add_argument("--trust-pickle", action="store_true", help="I trust this file's source")
    p.add_argument("--encoder", default="unknown", help="encoder the model was fitted on")
    p.add_argument("--layer", type=int, default=-1, help="encoder layer (-1: unknown)")
    p.add_argument("--frame-rate", type=float, help="frames per second of the features")
    p.add_argument("--mode", help="encoder mode, e.g. padded / unpadded (Whisper)")
    return p


def run_cli(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    """CLI body, in the ``func(args, extra) -> status`` shape of ``pipelines.cli``."""
    if not args.trust_pickle:
        print(
            f"refusing to load {args.model}: a pickle runs arbitrary code when loaded; "
            "re-run with --trust-pickle if you trust its source",
            file=sys.stderr,
        )
        return 2
    extra_meta = {
        key: val
        for key, val in (("frame_rate", args.frame_rate), ("mode", args.mode))
        if val is not None
    }
    codebook = import_sklearn_kmeans(
        args.model, trust_pickle=True, encoder=args.encoder, layer=args.layer, **extra_meta
    )
    codebook.save(args.out)
    print(f"wrote {codebook.id} to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
