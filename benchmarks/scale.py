"""Scale: the speech jobs' memory and rate as the number of rows grows.

What it shows: the jobs' state does not grow with the rows. A manifest lists
a few tiny WAV clips (0.2-0.45 s) under distinct ids, N times over (1 % of
the lines point to a missing file, so the reject path scales too), and the
jobs run with the ``instant`` encoder (:mod:`benchmarks.standin`: no model
cost), so what is measured is the job itself: reading, decoding, the runner's
per-row bookkeeping, run files and shards. Each row is a fresh process; the
peak RSS of its whole process tree (Beam's worker processes included) is
sampled every 20 ms.

Rows (``--rows``):

- ``tokenize``: in process (the embedded runner's default);
- ``tokenize-mp2``: ``--direct_num_workers 2 --direct_running_mode multi_processing``;
- ``fit``: fit-codebook, in process (k=16, 50,000 sampled frames);
- ``tokenize-flink``: Flink's MiniCluster job server (:mod:`engines`), LOOPBACK
  workers, ``--parallelism 2``: the Python process and the JVM apart.

Targets: the tree's peak grows by <= 0.5 MB per 1,000 rows between sizes
(checked on anonymous memory, ``RssAnon``: what holding rows would grow; RSS
is printed too, but its file-backed part, torch's CUDA libraries among it,
moves by ~100 MB between identical runs on a VM whose kernel reclaims cold
pages); tokenize in process at 500 k rows peaks under 1 GB of RSS and runs
>= 2,000 rows/s (on a quiet machine). The ``baseline`` line is a process that
only imports what the rows import: what no row can go below.

Usage::

    python -m benchmarks.scale                              # 20k,100k,500k (+ fit, + mp2)
    python -m benchmarks.scale --rows tokenize --sizes 20000,100000
    python -m benchmarks.scale --rows tokenize-flink --sizes 20000,100000,500000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import MB, ROOT, TreePeak, run_row, target, worker_main, write_json
from benchmarks._machine import machine

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "scale.json"
CLIPS = 8  # distinct WAV files the manifest repeats
LANGS = ("fr", "de", "es", "it")
MISSING_EVERY = 100  # every 100th line names a file that does not exist
ROW_ARGS = {
    "tokenize": [],
    "tokenize-mp2": ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
    "fit": [],
    "tokenize-flink": [],
}
SLOPE_MB_PER_1K = 0.5
PLUGINS = {"SPEECHTOK_PLUGINS": "benchmarks.standin"}  # the instant encoder, in every worker


def write_corpus(work: Path, n: int) -> Path:
    """``n`` manifest lines over :data:`CLIPS` tiny WAVs (cached by ``n``)."""
    import soundfile as sf

    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for c in range(CLIPS):
        path = clips / f"c{c}.wav"
        if not path.exists():
            t = np.arange(int(16000 * (0.2 + 0.035 * c))) / 16000
            wave = 0.2 * np.sin(2 * np.pi * (150 + 40 * c) * t) + 0.01 * rng.standard_normal(len(t))
            sf.write(str(path), wave.astype(np.float32), 16000, subtype="PCM_16")
    manifest = work / f"manifest-{n}.jsonl"
    if not manifest.exists():
        tmp = manifest.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for i in range(n):
                name = (
                    "missing.wav" if i % MISSING_EVERY == MISSING_EVERY - 1 else f"c{i % CLIPS}.wav"
                )
                line = {"id": f"u{i:08d}", "audio": f"clips/{name}", "text": f"utterance {i}",
                        "lang": LANGS[i % len(LANGS)], "split": "train"}  # fmt: skip
                f.write(json.dumps(line) + "\n")
        tmp.replace(manifest)
    return manifest


def prepare_codebook(work: Path) -> Path:
    from benchmarks.standin import prepare_codebook as standin_codebook

    return standin_codebook(work)


# -- rows (one per process) -------------------------------------------------------
def worker_job(spec: dict) -> dict:
    from benchmarks.standin import INSTANT, K
    from pipelines import fit_codebook, tokenize
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    manifest = ManifestConfig(format="jsonl", input=spec["manifest"])
    encoder = EncoderConfig(name=INSTANT)
    beam_args = list(spec["beam_args"])
    engine = None
    if spec["row"] == "tokenize-flink":
        from engines import start

        engine = start("flink", parallelism=2)
        beam_args += engine.beam_args()
    jvm = TreePeak(engine.pids()[0]) if engine else None
    me = TreePeak(children=False)  # this process alone (LOOPBACK workers run in it)
    timeline = _Timeline() if spec.get("timeline") else None
    start_s = time.perf_counter()
    try:
        if spec["row"] == "fit":
            config = fit_codebook.FitCodebookJobConfig(
                manifest=manifest, encoder=encoder, k=K, out=spec["out"], sample_frames=50_000
            )
            index = fit_codebook.run(config, beam_args)
        else:
            config = tokenize.TokenizeJobConfig(
                manifest=manifest, encoder=encoder, codebook=spec["codebook"], out=spec["out"]
            )
            index = tokenize.run(config, beam_args)
        wall = time.perf_counter() - start_s
    finally:
        curve = timeline.stop() if timeline else None
        python_peak = me.stop()
        jvm_peak = jvm.stop() if jvm else None
        if engine:
            engine.stop()
    return {
        "wall_s": wall,
        "rows_per_s": index.counts["input"] / wall,
        "counts": index.counts,
        "python_peak_mb": python_peak / MB,
        "python_anon_mb": me.peak_anon / MB,
        "jvm_peak_mb": jvm_peak / MB if jvm_peak else None,
        "timeline": curve,
    }


class _Timeline:
    """This process's anonymous memory once a second: ``[(seconds, MB), ...]``
    (``--timeline``: where a run's memory goes, start-up or rows)."""

    def __init__(self):
        import threading

        from benchmarks._harness import anon_rss

        self.points: list[tuple[float, float]] = []
        self._stop = threading.Event()
        start = time.perf_counter()

        def sample() -> None:
            while not self._stop.wait(1.0):
                self.points.append(
                    (round(time.perf_counter() - start, 1), anon_rss(os.getpid()) / MB)
                )

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.points


def worker_baseline(spec: dict) -> dict:
    """The floor: a process that imports what the job rows import, and stops."""
    return {"wall_s": 0.0, "rows_per_s": 0.0, "counts": {}}


WORKERS = {**{name: worker_job for name in ROW_ARGS}, "baseline": worker_baseline}
PREIMPORTS = (
    "apache_beam",
    "pyarrow.parquet",
    "pipelines.tokenize",
    "pipelines.fit_codebook",
    "kmeans.kernels",  # torch: start-up a worker pays once, not per row
)


# -- driver -------------------------------------------------------------------------
def slope(results: list[dict], key: str = "peak_anon_mb") -> float | None:
    """MB per 1,000 rows between the two largest sizes."""
    ok = sorted((r for r in results if "error" not in r and r.get(key)), key=lambda r: r["size"])
    if len(ok) < 2:
        return None
    a, b = ok[-2], ok[-1]
    return (b[key] - a[key]) / ((b["size"] - a["size"]) / 1000)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="tokenize,tokenize-mp2,fit")
    p.add_argument("--sizes", default="20000,100000,500000")
    p.add_argument("--fit-sizes", default="100000,500000", help="sizes of the fit row")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "results" / "scale-work"))
    p.add_argument("--json", default=str(DEFAULT_JSON))
    p.add_argument("--timeline", action="store_true", help="print each run's memory once a second")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        os.environ.update(PLUGINS)
        return worker_main(WORKERS, args.worker, PREIMPORTS)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    codebook = prepare_codebook(work)
    baseline = run_row("benchmarks.scale", {"row": "baseline"}, env=PLUGINS)
    print(f"baseline (imports only): {baseline.get('peak_rss_mb', 0):.0f} MB", file=sys.stderr)
    results: dict[str, list[dict]] = {}
    for row in args.rows.split(","):
        sizes = args.fit_sizes if row == "fit" else args.sizes
        for size in map(int, sizes.split(",")):
            manifest = write_corpus(work, size)
            spec = {"row": row, "manifest": str(manifest), "codebook": str(codebook),
                    "out": str(work / f"out-{row}"), "beam_args": ROW_ARGS[row],
                    "timeline": args.timeline}  # fmt: skip
            result = {"size": size, **run_row("benchmarks.scale", spec, env=PLUGINS)}
            results.setdefault(row, []).append(result)
            if "error" in result:
                print(f"{row} {size}: ERROR {result['error']}", file=sys.stderr)
                continue
            print(f"{row} {size}: {result['wall_s']:.1f} s, {result['rows_per_s']:,.0f} rows/s, "
                  f"tree {result['peak_rss_mb']:.0f} MB", file=sys.stderr)  # fmt: skip
            if result.get("timeline"):
                curve = ", ".join(f"{t:.0f} s {mb:.0f}" for t, mb in result["timeline"])
                print(f"  {row} {size}, this process's anonymous MB: {curve}")
    checks = []
    print(
        f"\n{'row':<16}{'rows':>9}{'wall s':>9}{'rows/s':>9}{'tree MB':>9}{'anon MB':>9}"
        f"{'python MB':>11}{'py anon':>9}{'JVM MB':>8}"
    )
    for row, rs in results.items():
        for r in rs:
            if "error" in r:
                print(f"{row:<16}{r['size']:>9}  ERROR {r['error'][:150]}")
                continue
            jvm = f"{r['jvm_peak_mb']:.0f}" if r.get("jvm_peak_mb") else "-"
            print(f"{row:<16}{r['size']:>9}{r['wall_s']:>9.1f}{r['rows_per_s']:>9,.0f}"
                  f"{r['peak_rss_mb']:>9.0f}{r['peak_anon_mb']:>9.0f}{r['python_peak_mb']:>11.0f}"
                  f"{r['python_anon_mb']:>9.0f}{jvm:>8}")  # fmt: skip
        key = "python_anon_mb" if row == "tokenize-flink" else "peak_anon_mb"
        checks.append(
            target(f"{row}: {key} MB per 1,000 rows", slope(rs, key), SLOPE_MB_PER_1K, False)
        )
    top = {r["size"]: r for r in results.get("tokenize", []) if "error" not in r}
    if 500_000 in top:
        checks.append(
            target("tokenize 500k: tree peak MB", top[500_000]["peak_rss_mb"], 1024, False)
        )
        checks.append(target("tokenize 500k: rows/s", top[500_000]["rows_per_s"], 2000))
    for c in checks:
        value = "n/a" if c["value"] is None else f"{c['value']:.2f}"
        verdict = "met" if c["ok"] else "MISSED"
        sign = "<=" if not c["more_is_better"] else ">="
        print(f"{c['target']:<48}{value:>9}  target {sign} {c['limit']}  {verdict}")
    print(
        f"baseline: a process importing the same modules peaks at {baseline.get('peak_rss_mb', 0):.0f} MB"
    )
    write_json(args.json, {"machine": machine(), "baseline": baseline, "results": results, "checks": checks,
                           "command": " ".join(["python -m benchmarks.scale", *(argv or sys.argv[1:])])})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
