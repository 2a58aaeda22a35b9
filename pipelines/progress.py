"""Progress of a running job, on a terminal or not, in-process or across workers.

Why not Beam's counters alone: the embedded runner reports them only when
the job ends, and a user running ``nohup`` or a scheduler sees nothing for
hours. So the transforms call :func:`tick` per record, and the launcher's
:class:`Progress` thread reads the totals:

- in this process (the embedded runner's in-memory and multi-threaded modes,
  and the portable runner's LOOPBACK workers, which run here);
- from worker processes (``--direct_running_mode multi_processing``): each
  writes its totals to ``$SPEECHTOK_PROGRESS_DIR/<pid>.json`` at most twice a
  second; the launcher sums the files;
- remote runners (Dataflow, Flink): the job id and where to follow it, then
  our counters as the runner reports them (``result.metrics()``), if it does.

On a terminal (stderr is a TTY) it draws a bar with rate and ETA; otherwise
it prints a line every ``SPEECHTOK_PROGRESS_INTERVAL`` seconds (default 15)
to stdout: ``tokenize: 12,400/50,000 utt, 31.2 h audio, 412x real time, ETA
9 min``. The total is the number of manifest records read, known once the
read stage has run (on the embedded runner, before any audio is decoded).

Example::

    with Progress("tokenize", options) as progress:
        result = pipeline.run()
        progress.follow(result)
        result.wait_until_finish()
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sys
import tempfile
import threading
import time

DIR_ENV = "SPEECHTOK_PROGRESS_DIR"
LAUNCHER_ENV = "SPEECHTOK_PROGRESS_PID"
INTERVAL_ENV = "SPEECHTOK_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 15.0
FLUSH_SECONDS = 0.5

_counts: collections.Counter = collections.Counter()
_lock = threading.Lock()
_last_flush = [0.0]


def tick(**amounts: int) -> None:
    """Add to this process's progress totals (``read``, ``done``, ``audio_ms``)."""
    with _lock:
        _counts.update(amounts)
        folder = os.environ.get(DIR_ENV)
        if not folder or os.environ.get(LAUNCHER_ENV) == str(os.getpid()):
            return
        now = time.monotonic()
        if now - _last_flush[0] < FLUSH_SECONDS:
            return
        _last_flush[0] = now
        snapshot = dict(_counts)
    _write_snapshot(folder, snapshot)


def flush() -> None:
    """Write this worker process's totals now (end of a bundle)."""
    folder = os.environ.get(DIR_ENV)
    if folder and os.environ.get(LAUNCHER_ENV) != str(os.getpid()):
        with _lock:
            snapshot = dict(_counts)
        _write_snapshot(folder, snapshot)


def _write_snapshot(folder: str, snapshot: dict) -> None:
    path = os.path.join(folder, f"{os.getpid()}.json")
    tmp = f"{path}.tmp"
    with contextlib.suppress(OSError):  # progress must never fail a job
        with open(tmp, "w") as f:
            json.dump(snapshot, f)
        os.replace(tmp, path)


def _totals(folder: str | None) -> collections.Counter:
    with _lock:
        total = collections.Counter(_counts)
    if folder:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if name.endswith(".json"):
                    with (
                        contextlib.suppress(OSError, ValueError),
                        open(os.path.join(folder, name)) as f,
                    ):
                        total.update(json.load(f))
    return total


def format_line(job: str, counts: dict, elapsed: float, unit: str = "utt") -> str:
    """``tokenize: 12,400/50,000 utt, 31.2 h audio, 412x real time, ETA 9 min``."""
    done, total = int(counts.get("done", 0)), int(counts.get("read", 0))
    audio_s = counts.get("audio_ms", 0) / 1000
    parts = [f"{done:,}/{total:,} {unit}" if total else f"{done:,} {unit}"]
    parts.append(f"{audio_s / 3600:.1f} h audio")
    if elapsed > 0 and audio_s:
        parts.append(f"{audio_s / elapsed:,.0f}x real time")
    if done and total > done and elapsed > 0:
        parts.append(f"ETA {_duration((total - done) * elapsed / done)}")
    return f"{job}: " + ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """The launcher's side (see module doc). ``interactive`` defaults to
    whether stderr is a terminal."""

    def __init__(self, job: str, *, local: bool, interactive: bool | None = None):
        self.job, self.local = job, local
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.interval = float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._folder: str | None = None
        self._result = None
        self._started = time.monotonic()

    def __enter__(self) -> Progress:
        with _lock:
            _counts.clear()
        if self.local:
            self._folder = tempfile.mkdtemp(prefix="speechtok-progress-")
            os.environ[DIR_ENV] = self._folder
            os.environ[LAUNCHER_ENV] = str(os.getpid())
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="speechtok-progress")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._folder:
            import shutil

            os.environ.pop(DIR_ENV, None)
            os.environ.pop(LAUNCHER_ENV, None)
            shutil.rmtree(self._folder, ignore_errors=True)

    def follow(self, result) -> None:
        """A submitted remote job: say where to follow it; poll its counters."""
        if self.local:
            return
        self._result = result
        job_id = getattr(result, "job_id", None)
        job_id = job_id() if callable(job_id) else job_id
        where = _console_hint(result)
        print(f"{self.job}: submitted as job {job_id or '(id not reported)'}{where}", flush=True)

    def _counts_now(self) -> collections.Counter:
        if self._result is not None:
            return _remote_counts(self._result)
        return _totals(self._folder)

    def _run(self) -> None:
        bar = None
        if self.interactive:
            from tqdm import tqdm

            bar = tqdm(desc=self.job, unit="utt", dynamic_ncols=True, file=sys.stderr)
        try:
            period = 0.5 if bar is not None else self.interval
            while not self._stop.wait(period):
                counts = self._counts_now()
                if bar is not None:
                    _update_bar(bar, counts)
                elif counts.get("read") or counts.get("done"):
                    elapsed = time.monotonic() - self._started
                    print(format_line(self.job, counts, elapsed), flush=True)
        finally:
            if bar is not None:
                _update_bar(bar, self._counts_now())
                bar.close()


def _update_bar(bar, counts) -> None:
    total = int(counts.get("read", 0)) or None
    if total != bar.total:
        bar.total = total
    bar.n = int(counts.get("done", 0))
    hours = counts.get("audio_ms", 0) / 3.6e6
    bar.set_postfix_str(f"{hours:.1f} h audio", refresh=False)
    bar.refresh()


def _remote_counts(result) -> collections.Counter:
    """Our counters from a running remote job, in :func:`tick`'s names."""
    from pipelines.metrics import counters

    with contextlib.suppress(Exception):
        c = counters(result)
        rejected = sum(v for k, v in c.items() if k.startswith("rejected."))
        return collections.Counter(
            read=c.get("read", 0),
            done=c.get("encoded", 0) + rejected,
            audio_ms=c.get("audio.accepted_ms", 0),
        )
    return collections.Counter()


def _console_hint(result) -> str:
    """Where a remote runner shows its job (Dataflow: the console URL)."""
    with contextlib.suppress(Exception):
        job = result._job  # DataflowPipelineResult holds the submitted job
        project, region = job.projectId, job.location
        return (
            f"; follow it at https://console.cloud.google.com/dataflow/jobs/"
            f"{region}/{job.id}?project={project}"
        )
    return "; follow it in the runner's own UI"
