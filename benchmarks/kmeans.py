"""k-means benchmark: our torch backend against scikit-learn and faiss, in one run.

For every dataset and k it fits each backend in a fresh subprocess (so peak
memory and thread pools do not leak between rows), then prints a table and
writes JSON. Ratios are against the torch row of the same dataset and k,
because absolute times on a shared machine mean little. It also measures the
machine's float32 matmul rate for the shapes k-means uses, and how close one
Lloyd pass and ``Codebook.assign`` get to it.

Rows: ``torch`` (ours), ``faiss`` (faiss.Kmeans defaults, 25 iterations),
``sklearn-n3`` (MiniBatchKMeans, fairseq HuBERT simple_kmeans settings with
n_init 3), ``sklearn-hubert`` (the same with n_init 20, HuBERT exactly: most
of an hour at k=1024 on 2 cores) and ``sklearn-s2u-n3`` (fairseq
speech2unit's settings, reassignment ratio 0.5, n_init 3). ``wall_s`` is the backend's own fitting time (without the
exact-inertia pass that ``kmeans.fit`` adds for the peers; torch's time
includes its final pass, which gives that inertia).

Usage::

    python -m benchmarks.kmeans --quick                  # smoke test, < ~1 minute (torch, faiss)
    python -m benchmarks.kmeans                          # synthetic 74k x 512, k=1024 and 256
    python -m benchmarks.kmeans --whisper-frames         # + 74k real Whisper-base layer-3 frames
    python -m benchmarks.kmeans --frames my_frames.npy   # + your own frames (float32 [n, d])
    python -m benchmarks.kmeans --backends torch,faiss --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import ROOT, run_row, worker_main, write_json
from benchmarks._machine import machine
from benchmarks.kmeans_rows import BACKEND_ROWS

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "kmeans.json"

SLOW_ROWS = {"sklearn-hubert"}
# --quick is a smoke test: MiniBatchKMeans takes 25 s (quiet) to minutes (busy)
# even on the small data, so it runs only when named with --backends.
QUICK_ROWS = ["torch", "faiss"]
TARGETS = {
    "inertia_vs_sklearn": 1.01,  # torch inertia <= 1.01 x sklearn's
    "time_vs_sklearn": 0.1,  # in <= 1/10 of its wall time
    "time_vs_faiss": 1.2,  # no slower than 1.2 x faiss ...
    "inertia_vs_faiss": 1.0,  # ... at equal or lower inertia
    "init_s_k1024": 5.0,
    "matmul_fraction": 0.8,
    "peak_over_data_mb": 200.0,
}


# -- data ---------------------------------------------------------------------
WORK = ROOT / "benchmarks" / "results" / "kmeans-work"
# The reference data of the k-means comparison: 74k frames of synthesized speech in 6 languages.
FRAME_LANGS = ("fr", "de", "es", "it", "sw", "hi")
FRAME_COUNT = 74_000


def whisper_frames(work: Path = WORK) -> Path:
    """74k Whisper-base layer-3 frames (float32 [n, 512]), made once and kept.

    mini-FLEURS train speech in ``FRAME_LANGS`` (2 voices), through the
    fit-codebook job with ``save_sample``: the same stratified sample (even
    per language, at most 500 frames per utterance) a real codebook fit sees.
    """
    from corpora.synth.synth import SynthConfig, synthesize_corpus
    from pipelines import fit_codebook
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    frames = work / "codebook" / fit_codebook.SAMPLE_DIR / "frames.npy"
    if frames.exists():
        return frames
    corpus = work / "corpus"
    synthesize_corpus(SynthConfig(out=str(corpus), langs=FRAME_LANGS, voices=2, seed=0))
    fit_codebook.run(
        fit_codebook.FitCodebookJobConfig(
            manifest=ManifestConfig(
                format="fleurs", input=str(corpus / "fleurs"), splits=("train",)
            ),
            encoder=EncoderConfig(name="whisper-base"),
            k=16,  # the fit is a by-product: the sample is what we keep
            sample_frames=FRAME_COUNT,
            save_sample=True,
            out=str(work / "codebook"),
        )
    )
    return frames


def gaussian_mixture(n: int, d: int, components: int, seed: int) -> np.ndarray:
    """A skewed Gaussian mixture with a shared offset, standing in for encoder frames.

    Component weights follow a Zipf-like law (speech units are far from
    uniform), each component has its own spread, and every frame carries a
    common offset vector, as encoder activations do.
    """
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, components + 1) ** 0.8
    weights = rng.permutation(weights / weights.sum())
    which = rng.choice(components, size=n, p=weights)
    offset = 2.0 * rng.standard_normal(d, dtype=np.float32)
    centres = rng.standard_normal((components, d), dtype=np.float32) + offset
    spread = rng.uniform(0.5, 1.5, components).astype(np.float32)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x *= spread[which, None]
    x += centres[which]
    return x


# -- driver -------------------------------------------------------------------
def _run_case(spec: dict[str, Any]) -> dict[str, Any]:
    # No tree sampler here: its /proc scans would share the cores with the fit.
    return run_row("benchmarks.kmeans", spec, tree_rss=False)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ratios against the torch row and check each target; returns the checks."""
    checks = []
    groups: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if "error" not in row:
            groups.setdefault((row["dataset"], row["k"]), {})[row["row"]] = row
    for (dataset, k), group in groups.items():
        ours = group.get("torch")
        if ours is None:
            continue
        for row in group.values():
            row["inertia_vs_torch"] = row["inertia"] / ours["inertia"]
            row["wall_vs_torch"] = row["wall_s"] / ours["wall_s"]

        def check(name, value, limit, more_is_better=False, _where=(dataset, k)):
            passed = value is not None and (value >= limit if more_is_better else value <= limit)
            checks.append(
                {
                    "dataset": _where[0],
                    "k": _where[1],
                    "target": name,
                    "value": value,
                    "limit": limit,
                    "ok": passed,
                }
            )

        # "At equal inertia": when did our run first reach the peer's inertia?
        for peer, slack, time_limit in (
            ("sklearn-n3", TARGETS["inertia_vs_sklearn"], TARGETS["time_vs_sklearn"]),
            ("sklearn-hubert", TARGETS["inertia_vs_sklearn"], TARGETS["time_vs_sklearn"]),
            ("sklearn-s2u-n3", TARGETS["inertia_vs_sklearn"], TARGETS["time_vs_sklearn"]),
            ("faiss", TARGETS["inertia_vs_faiss"], TARGETS["time_vs_faiss"]),
        ):
            if peer not in group:
                continue
            theirs = group[peer]
            reached = time_to_inertia(ours, slack * theirs["inertia"])
            ours[f"s_to_{peer}_inertia"] = reached
            check(f"final inertia / {peer}", ours["inertia"] / theirs["inertia"], slack)
            check(
                f"time to {slack:g}x {peer} inertia / {peer} time",
                None if reached is None else reached / theirs["wall_s"],
                time_limit,
            )
            check(f"full fit time / {peer} time", ours["wall_s"] / theirs["wall_s"], time_limit)
        if k >= 1024:
            check("init seconds", ours["init_s"], TARGETS["init_s_k1024"])
        reference = max(ours["mm_chunked_gflops"], ours["mm_whole_gflops"])
        fraction = TARGETS["matmul_fraction"]
        check("lloyd pass / matmul rate", ours["lloyd_gflops"] / reference, fraction, True)
        check("assign / matmul rate", ours["assign_gflops"] / reference, fraction, True)
        for row in group.values():
            check(
                f"peak MB over data ({row['row']})",
                row["peak_over_data_mb"],
                TARGETS["peak_over_data_mb"],
            )
    return checks


def time_to_inertia(row: dict[str, Any], target: float) -> float | None:
    """Seconds until the torch run's inertia first went <= target (None: never)."""
    for seconds, inertia in zip(row["convergence_s"], row["convergence"], strict=True):
        if inertia <= target:
            return seconds
    return None


def print_report(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    header = (
        f"{'dataset':<18} {'k':>5} {'backend':<15} {'wall s':>8} {'init s':>7} {'iters':>5} "
        f"{'inertia':>12} {'inert/torch':>11} {'time/torch':>10} {'peak+MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['dataset']:<18} {r['k']:>5} {r['row']:<15} ERROR {r['error']}")
            continue
        print(
            f"{r['dataset']:<18} {r['k']:>5} {r['row']:<15} {r['wall_s']:>8.2f} "
            f"{_fmt(r.get('init_s'), '7.2f')} {_fmt(r.get('n_iter'), '5d')} "
            f"{r['inertia']:>12.5g} {_fmt(r.get('inertia_vs_torch'), '11.4f')} "
            f"{_fmt(r.get('wall_vs_torch'), '10.3f')} {r['peak_over_data_mb']:>8.1f}"
        )
    torch_rows = [r for r in rows if r.get("row") == "torch" and "error" not in r]
    if torch_rows:
        print("\nmatmul rates (GFLOP/s, fp32):")
        for r in torch_rows:
            ref = max(r["mm_chunked_gflops"], r["mm_whole_gflops"])
            print(
                f"  {r['dataset']} k={r['k']}: mm 4096^3 {r['mm_4096_gflops']:.0f}, "
                f"same shapes {ref:.0f}; Lloyd pass {r['lloyd_gflops']:.0f} "
                f"({r['lloyd_gflops'] / ref:.0%}), assign {r['assign_gflops']:.0f} "
                f"({r['assign_gflops'] / ref:.0%}; with workers="
                f"{r['cpu_workers']}: {r['assign_workers_gflops'] / ref:.0%})"
            )
    if checks:
        print("\ntargets:")
        for c in checks:
            mark = "ok  " if c["ok"] else "MISS"
            op = ">=" if "matmul" in c["target"] else "<="
            value = "never" if c["value"] is None else f"{c['value']:.4g}"
            print(
                f"  {mark} {c['dataset']} k={c['k']}: {c['target']} = {value} ({op} {c['limit']:g})"
            )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.kmeans", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test (< ~1 min): 20k x 128, k=256, torch and faiss rows only",
    )
    p.add_argument("--frames", action="append", default=[], help="float32 [n, d] .npy (repeatable)")
    p.add_argument(
        "--whisper-frames",
        action="store_true",
        help="add 74k real Whisper-base layer-3 frames (6 synthesized languages; made once "
        "under benchmarks/results/kmeans-work/, ~2 min)",
    )
    p.add_argument("--no-synthetic", action="store_true", help="only the --frames datasets")
    p.add_argument("--ks", help="comma-separated k values (default 1024,256; quick: 256)")
    p.add_argument("--backends", help=f"rows to run (default all: {','.join(BACKEND_ROWS)})")
    p.add_argument("--skip-slow", action="store_true", help="drop sklearn-hubert (n_init 20)")
    p.add_argument("--synthetic-n", type=int, help="synthetic rows (default 74000; quick 20000)")
    p.add_argument("--synthetic-d", type=int, help="synthetic dim (default 512; quick 128)")
    p.add_argument("--device", default="cpu", help="torch row's device: cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        from benchmarks.kmeans_rows import WORKERS

        return worker_main(WORKERS, args.worker)
    ks = [int(v) for v in args.ks.split(",")] if args.ks else ([256] if args.quick else [1024, 256])
    default_rows = QUICK_ROWS if args.quick else list(BACKEND_ROWS)
    rows_wanted = args.backends.split(",") if args.backends else default_rows
    unknown = [r for r in rows_wanted if r not in BACKEND_ROWS]
    if unknown:
        print(f"unknown backend rows {unknown}; known: {list(BACKEND_ROWS)}", file=sys.stderr)
        return 2
    if args.quick or args.skip_slow:
        rows_wanted = [r for r in rows_wanted if r not in SLOW_ROWS]
    n = args.synthetic_n or (20_000 if args.quick else 74_000)
    d = args.synthetic_d or (128 if args.quick else 512)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kmeans-bench-") as tmp:
        datasets: list[tuple[str, str]] = []
        if not args.no_synthetic:
            path = os.path.join(tmp, "synthetic.npy")
            np.save(path, gaussian_mixture(n, d, components=2048, seed=args.seed))
            datasets.append((f"synthetic-{n // 1000}k-d{d}", path))
        named = [(Path(f).stem, f) for f in args.frames]
        if args.whisper_frames:
            named.append(("whisper-base-L3-74k", str(whisper_frames())))
        for name, frames in named:
            arr = np.load(frames, mmap_mode="r", allow_pickle=False)
            if arr.ndim != 2 or arr.dtype != np.float32:
                print(
                    f"{frames}: need float32 [n, d], got {arr.dtype} {arr.shape}", file=sys.stderr
                )
                return 2
            datasets.append((name, frames))
        for name, path in datasets:
            for k in ks:
                for row in rows_wanted:
                    spec = {"dataset": name, "data": path, "k": k, "row": row, "seed": args.seed}
                    spec["device"] = args.device
                    print(f"... {name} k={k} {row}", file=sys.stderr, flush=True)
                    results.append(_run_case(spec))
    checks = compare(results)
    print_report(results, checks)
    report = {
        "benchmark": "kmeans",
        "command": " ".join(["python -m benchmarks.kmeans", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "targets": TARGETS,
        "rows": results,
        "checks": checks,
    }
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
