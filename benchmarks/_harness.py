"""What the benchmarks share: one row per fresh process, peak RSS of its
process tree, best-of-N in turns, and the JSON they write.

Why one row per process: a Beam job, a model load and glibc's heap all leave
state behind; a fresh interpreter per row makes rows independent and lets the
driver sample the whole tree's memory (Beam's worker processes included).

Protocol: the driver runs ``python -m <module> --worker '<json spec>'``; the
worker prints one JSON line last on stdout (its result). Example::

    result = run_row("benchmarks.standin", {"row": "job", ...})
    # {"row": "job", ..., "process_wall_s": 12.3, "peak_rss_mb": 845.0} or {..., "error": "..."}
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


class TreePeak:
    """Samples the summed RSS of a process and its descendants until it exits."""

    def __init__(self, pid: int, interval: float = 0.02):
        import psutil

        self._proc = psutil.Process(pid)
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_row(module: str, spec: dict, env: dict | None = None) -> dict:
    """Run one row in a fresh ``python -m module --worker SPEC``; its result plus
    the tree's peak RSS, or ``{**spec, "error": ...}``."""
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = TreePeak(proc.pid)
    out, err = proc.communicate()
    peak = sampler.stop()
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-6:]
        return {**spec, "error": " | ".join(tail)}
    result = json.loads(out.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start
    result["peak_rss_mb"] = peak / MB
    return result


def worker_main(workers: dict, spec_json: str, preimport: tuple[str, ...] = ()) -> int:
    """The ``--worker`` side: import ``preimport`` (outside the clock), run the
    row, print its result as the last stdout line."""
    import importlib

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in preimport:
        importlib.import_module(name)
    spec = json.loads(spec_json)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the result line only
        result = workers[spec["row"]](spec)
    result["cpu_s"] = sum(os.times()[:4])  # this process and its reaped children
    print(json.dumps(result))
    return 0


def best_of(rows: list[str], repeats: int, run) -> dict[str, dict]:
    """Run every row ``repeats`` times in turns (a shared machine drifts); keep
    each row's fastest pass by ``wall_s`` (an errored row keeps its error)."""
    best: dict[str, dict] = {}
    for repeat in range(repeats):
        for name in rows:
            result = run(name, repeat)
            kept = best.get(name)
            if "error" in result:
                print(f"  {name}: ERROR {result['error']}", file=sys.stderr, flush=True)
                best.setdefault(name, result)
                continue
            print(f"  pass {repeat + 1} {name}: {result['wall_s']:.2f} s", file=sys.stderr)
            if kept is None or "error" in kept or result["wall_s"] < kept["wall_s"]:
                best[name] = result
    return best


def write_json(path: str | Path, report: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {path}", file=sys.stderr)
