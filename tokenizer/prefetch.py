"""Decode ahead of the model: an ordered, bounded look-ahead on a thread or process pool.

Why: a speech job's worker used to decode a clip, hand it to the model, and
decode the next, so a GPU waited for every decode and the CPU waited for every
forward pass. Decoding libraries release the GIL (libsndfile through cffi,
soxr), so threads decode in parallel while the calling thread runs the model
(``python -m benchmarks.standin`` measures the jobs against bare decode
loops of one and two threads; figures in benchmarks/README.md). Threads by
default on CPU: decoded audio is not pickled across a process boundary.
Processes by default when the model runs on CUDA (:func:`resolve_pool`): on
an H100 with 16 vCPUs, 16 decode threads together decoded about what one
core decodes alone (878x real time) while the model's thread, whose Python
launches the GPU's kernels, took twice the bare encoder's time: the pattern
of threads contending for one GIL (benchmarks/README.md, "GPU"). Processes
do not share it. A decoded clip's samples (64 KB per second of audio) then
travel through a file in ``/dev/shm`` (memory, not disk): the worker writes
them, the caller reads and removes the file, and only a path crosses the
pipe. Through the pipe itself, the pool's one result thread spent 1.3 s of
a 9.5 s job receiving 3.3 h of audio on the 2-core VM, while the caller's
thread waited (``python -m benchmarks.standin``, benchmarks/README.md).

Results come back in submission order, so a job's batches are the same
whatever thread finished first. At most ``max_pending`` items are in flight:
memory holds at most that many decoded clips beyond the caller's batch.
Each result carries the seconds its call took, measured in the worker thread
(Beam counters cannot be updated from threads Beam did not start).

Example::

    ahead = DecodeAhead(load, threads=4, max_pending=16)
    for example in examples:
        for result, seconds in ahead.submit(example):   # ready results, oldest first
            use(result)
    for result, seconds in ahead.drain():
        use(result)
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import glob
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

POOLS = ("auto", "threads", "processes")
_pools: dict[tuple[int, bool], Executor] = {}
_pools_lock = threading.Lock()


def resolve_pool(pool: str, device: str) -> str:
    """``threads`` or ``processes``; ``auto``: processes when the model runs on
    CUDA (the GIL is the limit there, module doc), threads on CPU."""
    if pool not in POOLS:
        raise ValueError(f"decode pool must be one of {POOLS}, got {pool!r}")
    if pool == "auto":
        return "processes" if device.startswith("cuda") else "threads"
    return pool


def default_threads() -> int:
    """One decode thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def shared_pool(threads: int, processes: bool = False) -> Executor:
    """One pool per size and kind per process: Beam runs several DoFn instances
    (harness threads) in one process, and they should share the cores, not
    multiply workers. Process pools start by forkserver: a CUDA context does
    not survive ``fork``."""
    with _pools_lock:
        pool = _pools.get((threads, processes))
        if pool is None:
            if processes:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                context = multiprocessing.get_context("forkserver")
                pool = ProcessPoolExecutor(max_workers=threads, mp_context=context)
            else:
                pool = ThreadPoolExecutor(
                    max_workers=threads, thread_name_prefix="speechtok-decode"
                )
            _pools[(threads, processes)] = pool
        return pool


def _timed(fn: Callable[[Any], Any], item: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(item)
    return result, time.perf_counter() - start


# Decoded samples from worker processes travel through files here when it exists
# (Linux: a tmpfs); elsewhere they are pickled through the pool's pipe.
SHM_DIR = "/dev/shm"
SHARED_MIN_BYTES = 1 << 16  # smaller arrays are as cheap through the pipe


@dataclass(frozen=True)
class SharedArray:
    """Where a worker left an array for its caller: a file in :data:`SHM_DIR`."""

    path: str
    shape: tuple[int, ...]
    dtype: str


def share_arrays(value: Any, owner: int) -> Any:
    """``value`` with every large numpy array (in lists and plain tuples) written to
    a file named for the ``owner`` process and replaced by its :class:`SharedArray`."""
    if isinstance(value, np.ndarray) and value.nbytes >= SHARED_MIN_BYTES:
        path = os.path.join(SHM_DIR, f"speechtok-{owner}-{uuid.uuid4().hex}")
        try:
            # Readable by this user only, and never through a planted link (O_EXCL).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as f:
                np.ascontiguousarray(value).tofile(f)
        except OSError:  # /dev/shm full (a container's is 64 MB) or not writable: the pipe
            with contextlib.suppress(OSError):
                os.unlink(path)
            return value
        return SharedArray(path, tuple(value.shape), value.dtype.str)
    if type(value) in (list, tuple):
        return type(value)(share_arrays(v, owner) for v in value)
    return value


def take_arrays(value: Any) -> Any:
    """The inverse of :func:`share_arrays`: arrays read back, their files removed."""
    if isinstance(value, SharedArray):
        try:
            return np.fromfile(value.path, dtype=value.dtype).reshape(value.shape)
        finally:
            os.unlink(value.path)
    if type(value) in (list, tuple):
        return type(value)(take_arrays(v) for v in value)
    return value


def _timed_shared(fn: Callable[[Any], Any], item: Any, owner: int) -> tuple[Any, float]:
    result, seconds = _timed(fn, item)
    return share_arrays(result, owner), seconds


def _remove_left_arrays(owner: int) -> None:
    """Files of results never taken (a job that failed with clips in flight)."""
    for path in glob.glob(os.path.join(SHM_DIR, f"speechtok-{owner}-*")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


_cleanup_registered = False


def _register_cleanup() -> None:
    global _cleanup_registered
    with _pools_lock:
        if not _cleanup_registered:
            atexit.register(_remove_left_arrays, os.getpid())
            _cleanup_registered = True


class DecodeAhead:
    """Run ``fn`` on submitted items in a pool; hand results back in order.

    ``fn`` should not raise (turn failures into values); if it does, the
    exception is re-raised when its result is taken. ``max_pending`` may be
    changed between calls (the caller learns how long clips are).
    ``processes``: a process pool of ``threads`` workers (``fn``, items and
    results must pickle).
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        threads: int,
        max_pending: int,
        processes: bool = False,
    ):
        if threads < 1 or max_pending < 1:
            raise ValueError("threads and max_pending must be >= 1")
        self.fn = fn
        self.max_pending = max_pending
        self._pool = shared_pool(threads, processes)
        self._shared = processes and os.path.isdir(SHM_DIR)
        if self._shared:
            _register_cleanup()
        self._pending: collections.deque[Future] = collections.deque()
        self.wait_seconds = 0.0  # time callers spent blocked on results

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, item: Any) -> list[tuple[Any, float]]:
        """Queue ``item``; return the results now ready (blocking while more than
        ``max_pending`` are in flight), oldest first, as ``(result, seconds)``."""
        if self._shared:
            future = self._pool.submit(_timed_shared, self.fn, item, os.getpid())
        else:
            future = self._pool.submit(_timed, self.fn, item)
        self._pending.append(future)
        ready = []
        while self._pending and (self._pending[0].done() or len(self._pending) > self.max_pending):
            ready.append(self._take())
        return ready

    def drain(self) -> list[tuple[Any, float]]:
        """Every remaining result, in order (blocks until all are done)."""
        return [self._take() for _ in range(len(self._pending))]

    def _take(self) -> tuple[Any, float]:
        future = self._pending.popleft()
        if not future.done():
            start = time.perf_counter()
            future.result()
            self.wait_seconds += time.perf_counter() - start
        result, seconds = future.result()
        return (take_arrays(result), seconds) if self._shared else (result, seconds)
