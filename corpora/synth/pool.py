"""Worker processes that may die without taking the caller down.

espeak-ng aborts the whole process on some inputs (Burmese: "buffer overflow
detected"), so synthesis runs in child processes. When a child dies, the item
it was working on is reported as crashed, the rest of its task goes back to
the queue, and a fresh child takes its place. ``concurrent.futures`` cannot do
this: one dead worker breaks the whole pool and hides which item killed it.

Messages are JSON (never pickle); items and results must be JSON-serialisable.
Results can arrive in any order; each carries its item's index.

Example::

    def on_result(index, result): ...
    run_isolated(items, "corpora.synth.render:render", workers=2, on_result=on_result)
"""

from __future__ import annotations

import collections
import importlib
import json
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)

CRASHED = "crashed"
ERROR = "error"
_DONE = "done"


def _resolve(target: str) -> Callable[[dict], dict]:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def _worker_main(conn: Connection, target: str) -> None:
    """Child loop: run each item of a task, answering one JSON message per item."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    func = _resolve(target)
    while True:
        task = json.loads(conn.recv_bytes())
        if task is None:
            return
        for index, item in task:
            try:
                result = func(item)
            except Exception as exc:  # a Python error is the item's problem, not the pool's
                result = {"status": ERROR, "detail": f"{type(exc).__name__}: {exc}"}
            conn.send_bytes(json.dumps([index, result]).encode())
        conn.send_bytes(json.dumps(_DONE).encode())


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"worker killed by signal {-exitcode}"
    return f"worker exited with status {exitcode}"


@dataclass
class _Worker:
    process: Any
    conn: Connection
    pending: collections.deque = field(default_factory=collections.deque)
    busy: bool = False
    last_heard: float = 0.0  # when the current item started
    timed_out: bool = False


def _context():
    methods = multiprocessing.get_all_start_methods()
    # forkserver: children start from a clean server process (no inherited
    # threads or library state), and cheaply; spawn elsewhere.
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def run_isolated(
    items: Sequence[dict],
    target: str,
    *,
    workers: int,
    on_result: Callable[[int, dict], None],
    chunk_size: int = 8,
    preload: Sequence[str] = (),
    item_timeout_s: float = 300.0,
) -> int:
    """Run ``target(item)`` (a ``"module:function"``) for every item in child processes.

    ``on_result(index, result)`` is called in this process once per item, with
    ``{"status": "crashed", "detail": ...}`` when the child died on it (or
    hung longer than ``item_timeout_s`` and was killed), or ``{"status":
    "error", ...}`` when it raised. Returns the number of crashes.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    ctx = _context()
    if preload and hasattr(ctx, "set_forkserver_preload"):
        ctx.set_forkserver_preload(list(preload))
    queue = collections.deque(
        [[i, items[i]] for i in range(start, min(start + chunk_size, len(items)))]
        for start in range(0, len(items), chunk_size)
    )
    pool: list[_Worker] = []
    crashes = 0

    def start() -> _Worker:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker_main, args=(child, target), daemon=True)
        process.start()
        child.close()
        return _Worker(process=process, conn=parent)

    def handle(worker: _Worker, message: Any) -> None:
        worker.last_heard = time.monotonic()
        if message == _DONE:
            worker.busy = False
            return
        index, result = message
        if worker.pending and worker.pending[0] == index:
            worker.pending.popleft()
        on_result(index, result)

    def replace_dead(slot: int, worker: _Worker) -> None:
        """Report the item a dead child was on, requeue the rest of its task."""
        nonlocal crashes
        worker.process.join()
        if worker.timed_out:
            reason = f"worker killed after {item_timeout_s:.0f} s on one item"
        else:
            reason = _death_reason(worker.process.exitcode)
        if worker.pending:
            crashed = worker.pending.popleft()
            crashes += 1
            log.warning("item %d: %s", crashed, reason)
            on_result(crashed, {"status": CRASHED, "detail": reason})
        if worker.pending:
            queue.appendleft([[i, items[i]] for i in worker.pending])
        worker.conn.close()
        pool[slot] = start()

    try:
        pool = [start() for _ in range(min(workers, len(queue)))]
        while queue or any(w.busy for w in pool):
            for slot, worker in enumerate(pool):
                if not worker.busy and queue:
                    if not worker.process.is_alive():  # died idle: nothing was lost
                        worker.conn.close()
                        worker = pool[slot] = start()
                    task = queue.popleft()
                    worker.pending = collections.deque(i for i, _ in task)
                    worker.busy = True
                    worker.last_heard = time.monotonic()
                    worker.conn.send_bytes(json.dumps(task).encode())
            busy = [w for w in pool if w.busy]
            deadline = min(w.last_heard for w in busy) + item_timeout_s
            ready = set(
                wait(
                    [w.conn for w in busy] + [w.process.sentinel for w in busy],
                    timeout=max(0.0, deadline - time.monotonic()),
                )
            )
            for slot, worker in enumerate(pool):
                if not worker.busy or not ({worker.conn, worker.process.sentinel} & ready):
                    if worker.busy and time.monotonic() - worker.last_heard > item_timeout_s:
                        worker.timed_out = True
                        worker.process.kill()
                    continue
                # Liveness first, then drain: whatever a dead child sent before
                # dying is then already in the pipe, and no result is mistaken
                # for the item that killed it.
                alive = worker.process.is_alive()
                try:
                    while worker.busy and worker.conn.poll():
                        handle(worker, json.loads(worker.conn.recv_bytes()))
                except (EOFError, OSError):
                    pass  # the child is gone; everything it sent has been handled
                if worker.busy and not alive:
                    replace_dead(slot, worker)
    finally:
        for worker in pool:
            if worker.busy:  # interrupted mid-task: nothing to wait for
                worker.process.kill()
            elif worker.process.is_alive():
                try:
                    worker.conn.send_bytes(json.dumps(None).encode())
                except OSError:
                    worker.process.kill()
        for worker in pool:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
    return crashes
