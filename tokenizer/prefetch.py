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
do not share it; a decoded clip then costs one pickle of its float32 samples
(64 KB per second of audio). Not yet measured on a GPU.

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

import collections
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

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
        self._pending: collections.deque[Future] = collections.deque()
        self.wait_seconds = 0.0  # time callers spent blocked on results

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, item: Any) -> list[tuple[Any, float]]:
        """Queue ``item``; return the results now ready (blocking while more than
        ``max_pending`` are in flight), oldest first, as ``(result, seconds)``."""
        self._pending.append(self._pool.submit(_timed, self.fn, item))
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
            result = future.result()
            self.wait_seconds += time.perf_counter() - start
            return result
        return future.result()
