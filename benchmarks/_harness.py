"""What the benchmarks share: one row per fresh process, peak RSS of its
process tree, best-of-N in turns, and the JSON they write.

Why one row per process: a Beam job, a model load and glibc's heap all leave
state behind; a fresh interpreter per row makes rows independent and lets the
driver sample the whole tree's memory (Beam's worker processes included).

Protocol: the driver runs ``python -m <module> --worker '<json spec>'``; the
worker prints one JSON line last on stdout (its result). Example::

    result = run_row("benchmarks.standin", {"row": "job", ...})
    # {"row": "job", ..., "process_wall_s": 12.3, "peak_rss_mb": 845.0} or {..., "error": "..."}

A benchmark that runs a command as a user runs it (``python -m pipelines.cli
...``) uses ``run_logged`` instead: output to a log file, the same sampler.
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
    """Samples the summed RSS of a process and its descendants until it exits
    (or until ``stop``): ``peak`` (the tree's sum), ``peak_single`` (its
    largest process) and ``max_procs``. ``pid`` None: this process. As a
    context manager it stops on exit and takes one last sample.

    Cost: listing the descendants reads every process's ``/proc`` entry
    (milliseconds of CPU per sample); ``children=False`` samples the process
    alone (microseconds), for a sampler inside a timed process.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.02, children: bool = True):
        import psutil

        self._proc = psutil.Process(pid)
        self._interval = interval
        self._children = children
        self.peak = self.peak_single = self.max_procs = 0
        self.peak_anon = 0  # the tree's anonymous memory (RssAnon): see anon_rss
        self._stop = threading.Event()
        self._sample()  # a baseline before the first interval
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> bool:
        """One sample; False once the root process is gone."""
        import psutil

        try:
            procs = [self._proc]
            if self._children:
                procs += self._proc.children(recursive=True)
        except psutil.Error:
            return False
        sizes, anon = [], 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                sizes.append(p.memory_info().rss)
                anon += anon_rss(p.pid)
        if sizes:
            self.peak = max(self.peak, sum(sizes))
            self.peak_anon = max(self.peak_anon, anon)
            self.peak_single = max(self.peak_single, max(sizes))
            self.max_procs = max(self.max_procs, len(sizes))
        return True

    def _run(self) -> None:
        while not self._stop.is_set() and self._sample():
            time.sleep(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    def __enter__(self) -> TreePeak:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._sample()


def anon_rss(pid: int) -> int:
    """A process's resident anonymous memory in bytes (``RssAnon``, Linux; 0 elsewhere).

    Why beside RSS: RSS also counts resident pages of mapped files (torch's CUDA
    libraries alone: ~600 MB), which the kernel may drop and fault back at any
    time (a VM with proactive reclaim, DAMON, moved a job's RSS by 100 MB
    between identical runs). A job's own data (heap, buffers) is anonymous, and
    without swap it stays resident: the figure that grows when a job holds rows.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _env(extra: dict | None) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **(extra or {})}


def python_path() -> str:
    """``PYTHONPATH`` for a child process: the repository first, then what this
    process was given (packages installed with ``pip --target`` on a GPU box)."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


def run_row(module: str, spec: dict, env: dict | None = None, tree_rss: bool = True) -> dict:
    """Run one row in a fresh ``python -m module --worker SPEC``; its result plus
    the tree's peak RSS (``peak_rss_mb``; left out with ``tree_rss`` False: no
    sampler in this process while the row runs), or ``{**spec, "error": ...}``."""
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    full_env = _env({"PYTHONPATH": python_path(), **(env or {})})
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = TreePeak(proc.pid) if tree_rss else None
    out, err = proc.communicate()
    peak = sampler.stop() if sampler else None
    peak_anon = sampler.peak_anon if sampler else None
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-6:]
        return {**spec, "error": " | ".join(tail)}
    result = json.loads(out.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start
    if peak is not None:
        result["peak_rss_mb"] = peak / MB
        result["peak_anon_mb"] = peak_anon / MB
    return result


def run_logged(
    cmd: list[str], log: str | Path, env: dict | None = None, interval: float = 0.1
) -> tuple[int, float, TreePeak]:
    """Run ``cmd`` from the repository root, its stdout and stderr into ``log``,
    sampling its process tree; (exit status, wall seconds, the sampler)."""
    with open(log, "w") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=_env(env), cwd=ROOT)
        with TreePeak(proc.pid, interval) as tree:
            status = proc.wait()
        wall = time.perf_counter() - start
    return status, wall, tree


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


def target(
    name: str, value: float | None, limit: float, more_is_better: bool = True, note: str = ""
) -> dict:
    """One target's check for a benchmark's JSON ``checks``; with a ``note`` it
    is informational (``ok`` None, never a miss)."""
    ok = value is not None and (value >= limit if more_is_better else value <= limit)
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "more_is_better": more_is_better,
        "ok": None if note else ok,
        "note": note or None,
    }


def write_json(path: str | Path, report: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {path}", file=sys.stderr)


# Architecture configs of the random-weight stand-ins (speed does not depend on weights).
CONFIGS = ROOT / "benchmarks" / "configs"


def make_gemma(work: Path) -> str:
    """A random-weight Gemma 3 270M folder (+ a byte tokenizer) for ``--llm hf:DIR``."""
    import torch
    from transformers import AutoConfig, AutoModel

    from trainer.backbones import byte_tokenizer

    gemma = work / "gemma-3-270m-random"
    if not (gemma / "config.json").exists():
        config = AutoConfig.for_model(**json.loads((CONFIGS / "gemma-3-270m.json").read_text()))
        torch.manual_seed(0)
        AutoModel.from_config(config, dtype=torch.float32).save_pretrained(gemma)
        byte_tokenizer().save_pretrained(gemma)  # speed does not depend on the vocabulary used
    return str(gemma)
