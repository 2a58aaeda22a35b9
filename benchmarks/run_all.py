"""Run every benchmark in ``benchmarks/`` and gather their JSON in one file.

Why a runner: ``make bench`` should answer "do the speed targets still hold?"
in one command, on any machine, in a few minutes. Each benchmark runs in its
own process (``python -m benchmarks.NAME``), so one crash or one leaked
thread pool cannot spoil the next; its output streams through (and into a
log file), and its JSON lands beside the others. New modules in
``benchmarks/`` are picked up without an edit here: their ``--help`` says
whether they take ``--quick`` (a quick run skips those that do not) and a
``--json`` / ``--out`` path.

``--quick`` (the default) writes under ``benchmarks/results/quick/`` so that
it never overwrites the full figures in ``benchmarks/results/``. Benchmarks
too long even in their quick mode are left out of a quick run (listed as
skipped with the reason) unless named with ``--only``.

Exit status: 0 when every benchmark ran (a missed target is reported, not an
error), 1 when one failed or timed out; ``--strict`` also fails on a missed
target (JSON ``checks`` entries with ``"ok": false``).

Usage::

    python -m benchmarks.run_all                     # quick, a few minutes on 2 cores
    python -m benchmarks.run_all --full              # every benchmark's full mode (hours)
    python -m benchmarks.run_all --only tokenize,kmeans
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._harness import ROOT, write_json
from benchmarks._machine import machine

BENCH_DIR = ROOT / "benchmarks"
RESULTS = BENCH_DIR / "results"
# demo_sweep: a tool, minutes per variant; padding: needs a demo's token shards (--shards);
# tokenize_*, kmeans_rows, retrieval_summary: parts of other benchmarks, run by them.
NOT_BENCHMARKS = {
    "__init__",
    "run_all",
    "demo_sweep",
    "padding",
    "tokenize_rows",
    "tokenize_shards",
    "tokenize_speech",
    "kmeans_rows",
    "retrieval_summary",
}


@dataclass(frozen=True, kw_only=True)
class BenchSpec:
    """How to call one benchmark. ``json_flag``: its output-path flag (None:
    it takes none); ``quick_skip``: why a quick run leaves it out."""

    quick_args: tuple[str, ...] = ("--quick",)
    full_args: tuple[str, ...] = ()
    json_flag: str | None = None
    quick_skip: str | None = None


# Known benchmarks; anything else found in benchmarks/ gets BenchSpec().
SPECS: dict[str, BenchSpec] = {
    "encoders": BenchSpec(json_flag="--json"),
    # Full mode adds the real Whisper frames (encoded once, ~2 min) to the synthetic set.
    "kmeans": BenchSpec(json_flag="--json", full_args=("--whisper-frames",)),
    "tokenize": BenchSpec(json_flag="--json"),
    "trainer": BenchSpec(json_flag="--out"),
    # Its table is a GPU's (--device cuda); on CPU only its smoke mode makes sense.
    "trainer_levers": BenchSpec(
        json_flag="--json",
        full_args=("--smoke",),
        quick_skip="the GPU lever table: its --smoke rows took 11 min on the shared 2-core VM",
    ),
    # No --quick flag of its own: smaller corpora (defaults 1000,5000: ~3 min).
    "load": BenchSpec(json_flag="--json", quick_args=("--sizes", "200,1000")),
    # Quick: in process at 5k and 20k rows (~1 min); full: 20k-500k, workers, fit, Flink.
    "scale": BenchSpec(
        json_flag="--json",
        quick_args=("--rows", "tokenize", "--sizes", "5000,20000"),
        full_args=("--rows", "tokenize,tokenize-mp2,fit,tokenize-flink"),
    ),
    # ~1 GB of shards written once, then read three ways (~2 min); quick: 0.1 GB.
    "folder_verify": BenchSpec(json_flag="--json", quick_args=("--gb", "0.1")),
    # Two Gemma 3 270M forward passes over ~600 sentences per depth set (~5 min).
    "premise": BenchSpec(json_flag="--json", quick_args=("--depths", "4")),
    "retrieval": BenchSpec(
        json_flag="--json",
        quick_skip="trains and evaluates several dual encoders: ~10 min even with --quick",
    ),
    "retrieval_full": BenchSpec(
        json_flag="--json",
        quick_args=("--smoke",),
        quick_skip="nine full-depth Gemma runs: hours on 2 CPU cores (--smoke: the procedure)",
    ),
    "retrieval_curve": BenchSpec(
        json_flag="--json",
        quick_skip="nine 300-step runs: ~3 h on 2 CPU cores, resumable (a ledger in the repo)",
    ),
    "retrieval_ablations": BenchSpec(
        json_flag="--json",
        quick_skip="six training runs of --steps steps (minutes each on 2 CPU cores), kept in a ledger",
    ),
}
# Run order: cheap first, so a quick run shows results early.
ORDER = ("encoders", "kmeans", "tokenize", "trainer", "load", "retrieval")


def discover() -> list[str]:
    """Benchmark module names in ``benchmarks/``, known ones in ORDER first."""
    found = sorted(
        p.stem
        for p in BENCH_DIR.glob("*.py")
        if p.stem not in NOT_BENCHMARKS and not p.stem.startswith("_")
    )
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def spec_of(name: str) -> BenchSpec:
    """The known spec, or one read off an unknown benchmark's ``--help``."""
    if name in SPECS:
        return SPECS[name]
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    flag = next((f for f in ("--json", "--out") if f in proc.stdout), None)
    if "--quick" in proc.stdout:
        return BenchSpec(json_flag=flag)
    return BenchSpec(json_flag=flag, quick_args=(), quick_skip="it has no --quick mode")


def run_one(name: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    spec = spec_of(name)
    mode_args = list(spec.full_args if args.full else spec.quick_args)
    flag = spec.json_flag
    json_path = out_dir / f"{name}.json"
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *mode_args]
    if flag:
        cmd += [flag, str(json_path)]
    log_path = out_dir / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = " ".join(["python", *cmd[1:]])
    print(f"\n=== {name}: {shown}", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    status = "ok"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # A thread copies the output, so the wait below can time out.
        copier = threading.Thread(target=_copy_lines, args=(proc.stdout, log), daemon=True)
        copier.start()
        try:
            returncode = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            returncode, status = None, "timeout"
        copier.join(timeout=10)
    wall = time.perf_counter() - start
    if status == "ok" and returncode != 0:
        status = "failed"
    result = None
    if json_path.exists() and json_path.stat().st_mtime >= time.time() - wall - 1:
        try:
            result = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            status = "failed" if status == "ok" else status
    checks = (result or {}).get("checks") if isinstance(result, dict) else None
    misses = [c for c in checks or [] if isinstance(c, dict) and c.get("ok") is False]
    return {
        "name": name,
        "command": shown,
        "status": status,
        "returncode": returncode,
        "wall_s": round(wall, 1),
        "json": str(json_path) if result is not None else None,
        "log": str(log_path),
        "checks": len(checks or []),
        "missed": [c.get("target") for c in misses],
        "result": result,
    }


def _copy_lines(stream, log) -> None:
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)


def print_summary(rows: list[dict[str, Any]]) -> None:
    print("\n=== summary")
    header = f"{'benchmark':<12}{'status':<10}{'wall s':>8}  {'targets':<10}missed"
    print(header)
    print("-" * max(len(header), 60))
    for r in rows:
        targets = f"{r['checks'] - len(r['missed'])}/{r['checks']}" if r["checks"] else "-"
        wall = "-" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        missed = "; ".join(str(m) for m in r["missed"]) or r.get("reason", "")
        print(f"{r['name']:<12}{r['status']:<10}{wall:>8}  {targets:<10}{missed}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run_all", description=__doc__.split("\n")[0]
    )
    p.add_argument("--full", action="store_true", help="full mode (default: each one's --quick)")
    p.add_argument("--only", help="comma-separated benchmark names (runs quick-skipped ones too)")
    p.add_argument("--skip", help="comma-separated benchmark names to leave out")
    p.add_argument("--timeout", type=float, help="seconds per benchmark before it is killed")
    p.add_argument("--out", help="results folder (default benchmarks/results[/quick])")
    p.add_argument("--strict", action="store_true", help="exit 1 on a missed target too")
    p.add_argument("--list", action="store_true", help="list the benchmarks found and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = discover()
    if args.list:
        for n in names:
            skip = spec_of(n).quick_skip
            print(n + (f"  (not in quick runs: {skip})" if skip else ""))
        return 0
    only = [n for n in (args.only or "").split(",") if n]
    skip = {n for n in (args.skip or "").split(",") if n}
    unknown = [n for n in [*only, *skip] if n not in names]
    if unknown:
        print(f"unknown benchmarks {unknown}; found: {names}", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else (RESULTS if args.full else RESULTS / "quick")
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = "full" if args.full else "quick"
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in only or names:
        spec = spec_of(name)
        if name in skip or (not only and not args.full and spec.quick_skip):
            reason = "--skip" if name in skip else f"{spec.quick_skip}; --only {name} runs it"
            rows.append(
                {
                    "name": name,
                    "status": "skipped",
                    "reason": reason,
                    "wall_s": None,
                    "checks": 0,
                    "missed": [],
                }
            )
            continue
        rows.append(run_one(name, args, out_dir))
    total = time.perf_counter() - started
    report = {
        "benchmark": "run_all",
        "mode": mode,
        "command": "python -m benchmarks.run_all " + " ".join(argv or sys.argv[1:]),
        "machine": machine(with_torch=False),
        "wall_s": round(total, 1),
        "benchmarks": rows,
    }
    path = out_dir / "run_all.json"
    write_json(path, report)
    print_summary(rows)
    print(f"\n{mode} run: {total:.0f} s; wrote {path}")
    failed = [r for r in rows if r["status"] in ("failed", "timeout")]
    missed = [r for r in rows if r["missed"]]
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
