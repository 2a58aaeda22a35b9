"""One job at a time per output folder: a lock in ``OUT/.speechtok.lock``.

Why: two jobs on one ``--out`` interleave their shards, and the second one's
clean-up deletes what the first one wrote while the first still reports
success. Every job that writes an output folder (tokenize, fit-codebook,
bitext) holds this lock from before it deletes or sweeps anything there until
it ends; a second job is refused at once with one line naming the folder and
the holder (host, pid, start time, job).

How the lock is taken, atomically where the storage allows it:

- local disks: the lock file is written under a temporary name and hard-linked
  to ``.speechtok.lock``; ``link`` fails if the name exists (atomic on local
  filesystems and on NFS, unlike ``O_EXCL`` on old NFS clients), and the lock
  is never seen half-written;
- ``gs://``: the object is created with the precondition
  ``if_generation_match=0`` (GCS creates it only if absent: one creator wins),
  through google-cloud-storage; it is released and refreshed with
  ``if_generation_match=<our generation>``, so a job never deletes a lock it
  no longer holds. (The local GCS emulator ignores preconditions: the lock is
  also read before it is created and read back after, which covers jobs that
  do not start within the same instant.)
- other schemes (Beam filesystems): read, then write; not atomic.

The lock holds JSON (host, pid, the pid's start time on Linux, job, start
time, a random token). While a job runs, a daemon thread refreshes the lock
every ``HEARTBEAT_S`` (local: its mtime; ``gs://``: the object is rewritten),
so its age tells whether a holder on another host is still alive.

Stale locks, and the policy chosen:

- Same host, holder's pid gone (or reused by another process: its start time
  differs): the lock is taken over automatically, with a warning. Certain: a
  process that no longer exists cannot write.
- Another host, or ``gs://``: this machine cannot see the holder. The refusal
  names it and its last heartbeat; past ``STALE_AFTER_S`` (10 minutes, 20
  missed heartbeats) it says the holder looks gone and that ``--break-lock``
  takes over. Taking over stays the user's decision there, because a paused
  holder (a suspended VM, a stopped process) may resume and write again.

Example::

    from datastore.outlock import hold_output_lock
    with hold_output_lock("gs://bucket/tokens", "tokenize"):
        ...  # sweep, write shards, write the index
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from datastore import storage

log = logging.getLogger("speechtok.lock")

LOCK_NAME = ".speechtok.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
_TRIES = 3


class OutputLockedError(RuntimeError):
    """The output folder is in use by another job (the message names it)."""


class LockLost(RuntimeError):
    """The output lock was taken from this job: it must not publish (fencing)."""


@dataclass(frozen=True, kw_only=True)
class Holder:
    """Who holds a lock: what the refusal message names."""

    job: str
    host: str
    pid: int
    started: str  # UTC, ISO 8601
    token: str
    pid_start: str | None = None  # /proc/<pid>/stat start time (Linux), to spot pid reuse

    def describe(self) -> str:
        return f"{self.job} job on host {self.host}, pid {self.pid}, started {self.started}"

    @classmethod
    def parse(cls, raw: bytes) -> Holder | None:
        try:
            d = json.loads(raw)
            return cls(
                job=str(d["job"]),
                host=str(d["host"]),
                pid=int(d["pid"]),
                started=str(d["started"]),
                token=str(d["token"]),
                pid_start=d.get("pid_start"),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _pid_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name may hold spaces


def _this_holder(job: str) -> Holder:
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return Holder(
        job=job,
        host=socket.gethostname(),
        pid=os.getpid(),
        started=now.isoformat(),
        token=uuid.uuid4().hex,
        pid_start=_pid_start(os.getpid()),
    )


def _gone_reason(holder: Holder) -> str | None:
    """Why a holder certainly no longer runs (same host only), or None."""
    if holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return f"pid {holder.pid} no longer runs on this host"
    except PermissionError:
        pass  # exists, owned by someone else
    start = _pid_start(holder.pid)
    if holder.pid_start and start and start != holder.pid_start:
        return f"pid {holder.pid} is now another process"
    return None


# -- storage backends -----------------------------------------------------------
class _LocalLock:
    def __init__(self, out: str):
        self.folder = storage.local_path(out)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.created_folder = False

    def prepare(self) -> None:
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder)
            self.created_folder = True

    def read(self) -> tuple[bytes, float, object] | None:
        """``(content, age in seconds, version)``, or None when there is no lock."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read(1 << 16)
                age = time.time() - os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return raw, age, raw

    def create(self, content: bytes) -> bool:
        tmp = os.path.join(self.folder, f"{storage.TEMP_PREFIX}{uuid.uuid4().hex}{LOCK_NAME}")
        with open(tmp, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    def delete(self, version) -> bool:
        """Remove the lock if it is still the one read as ``version``."""
        seen = self.read()
        if seen is None or seen[2] != version:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        return True

    def refresh(self, version) -> object:
        os.utime(self.path)
        return version

    def cleanup(self) -> None:
        if self.created_folder:  # a job refused before writing leaves no empty folder
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)


class _GcsLock:
    def __init__(self, out: str):
        from google.cloud import storage as gcs

        storage.check_gcs_credentials()
        bucket, _, prefix = out[len("gs://") :].partition("/")
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            client = gcs.Client.create_anonymous_client()
        else:
            client = gcs.Client()
        self.bucket = client.bucket(bucket)
        self.name = "/".join(p for p in (prefix.strip("/"), LOCK_NAME) if p)
        self.path = f"gs://{bucket}/{self.name}"

    def prepare(self) -> None:
        pass

    def read(self):
        from google.api_core import exceptions

        blob = self.bucket.get_blob(self.name)
        if blob is None:
            return None
        try:
            raw = blob.download_as_bytes(if_generation_match=blob.generation)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return self.read()
        age = (_dt.datetime.now(_dt.timezone.utc) - blob.updated).total_seconds()
        return raw, age, blob.generation

    def create(self, content: bytes) -> bool:
        from google.api_core import exceptions

        try:
            self.bucket.blob(self.name).upload_from_string(
                content, content_type="application/json", if_generation_match=0
            )
        except exceptions.PreconditionFailed:
            return False
        return True

    def delete(self, version) -> bool:
        from google.api_core import exceptions

        try:
            self.bucket.blob(self.name).delete(if_generation_match=version)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return False
        return True

    def refresh(self, version) -> object:
        """Rewrite the lock (a new ``updated`` time) only while it is still ours."""
        blob = self.bucket.blob(self.name)
        blob.upload_from_string(
            self.content, content_type="application/json", if_generation_match=version
        )
        return blob.generation

    def cleanup(self) -> None:
        pass


class _FsLock:
    """Any other Beam filesystem: read, then write (not atomic)."""

    def __init__(self, out: str):
        self.path = storage.join(out, LOCK_NAME)

    def prepare(self) -> None:
        pass

    def read(self):
        if not storage.exists(self.path):
            return None
        raw = storage.read_bytes(self.path)
        return raw, 0.0, raw

    def create(self, content: bytes) -> bool:
        if storage.exists(self.path):
            return False
        storage.write_bytes(self.path, content)
        return True

    def delete(self, version) -> bool:
        storage.delete(self.path)
        return True

    def refresh(self, version) -> object:
        return version

    def cleanup(self) -> None:
        pass


def _backend(out: str):
    if storage.is_local(out):
        return _LocalLock(out)
    if storage.scheme(out) == "gs":
        return _GcsLock(out)
    return _FsLock(out)


# -- taking and holding ------------------------------------------------------------
def _refusal(out: str, holder: Holder | None, age: float, lock_path: str) -> str:
    who = holder.describe() if holder else f"an unreadable lock ({lock_path})"
    if age > STALE_AFTER_S:
        return (
            f"{out} is locked by {who}, last heartbeat {age / 60:.0f} min ago: the holder "
            "looks gone; if it is, rerun with --break-lock to take over"
        )
    return (
        f"{out} is in use by {who} (last heartbeat {age:.0f} s ago): wait for that job, "
        "or use another --out"
    )


def _acquire(backend, out: str, me: Holder, break_lock: bool) -> object:
    content = json.dumps(asdict(me)).encode()
    backend.content = content
    for _ in range(_TRIES):
        seen = backend.read()
        if seen is None:
            if backend.create(content):
                mine = backend.read()  # a store that ignored the precondition is caught here
                if mine is not None and Holder.parse(mine[0]) == me:
                    return mine[2]
            continue
        raw, age, version = seen
        holder = Holder.parse(raw)
        gone = _gone_reason(holder) if holder else None
        if gone or break_lock:
            why = gone or "--break-lock"
            who = holder.describe() if holder else "an unreadable lock"
            log.warning("taking over the lock of %s from %s (%s)", out, who, why)
            backend.delete(version)
            continue
        raise OutputLockedError(_refusal(out, holder, age, backend.path))
    raise OutputLockedError(f"{out}: another job took its lock at the same time; try again")


class _Heartbeat(threading.Thread):
    def __init__(self, backend, version):
        super().__init__(name="speechtok-lock-heartbeat", daemon=True)
        self.backend, self.version = backend, version
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.version = self.backend.refresh(self.version)
            except Exception as exc:  # lost the lock (broken by another job) or storage down
                log.warning("cannot refresh the lock %s: %s", self.backend.path, exc)


_held = threading.local()
# Lock tokens this process holds, by folder key: what a job's index write checks
# (its Beam workers may run in other threads of this process).
_tokens: dict[str, str] = {}


def held_token(out_uri: str) -> str | None:
    """The token of the lock this process holds on ``out_uri`` (None: none)."""
    return _tokens.get(_key(str(out_uri)))


def check_still_held(out_uri: str) -> None:
    """The fencing check for a command that writes files, not an index (train's
    checkpoints, eval's report): :func:`check_held` with this process's token,
    when it holds the lock (library callers may hold none)."""
    token = held_token(out_uri)
    if token is not None:
        check_held(out_uri, token)


def check_held(out_uri: str, token: str) -> None:
    """Raise :class:`LockLost` unless ``out_uri``'s lock still
    holds ``token``: the fencing check a job makes right before it publishes
    (writes its index), so a job whose lock was broken (``--break-lock``) by
    another never commits over it."""
    out = str(out_uri)
    seen = _backend(out).read()
    holder = Holder.parse(seen[0]) if seen else None
    if holder is None or holder.token != token:
        now = holder.describe() if holder else "no job"
        raise LockLost(
            f"{out}: this job's lock was taken over while it ran (the lock now names {now}): "
            "its output is not published"
        )


def _key(out: str) -> str:
    return os.path.realpath(storage.local_path(out)) if storage.is_local(out) else out.rstrip("/")


@contextlib.contextmanager
def hold_output_lock(out_uri: str, job: str, *, break_lock: bool = False) -> Iterator[None]:
    """Hold ``out_uri``'s lock for the duration of the block.

    Raises :class:`OutputLockedError` (its message is the one line to print)
    when another job holds it. Re-entrant within one thread, so a job's
    ``run_cli`` and ``run`` can both take it. ``break_lock``: take it over from
    whoever holds it (the user says the holder is gone).
    """
    out = str(out_uri)
    key = _key(out)
    depth = getattr(_held, "depth", {})
    _held.depth = depth
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    backend = _backend(out)
    backend.prepare()
    me = _this_holder(job)
    try:
        version = _acquire(backend, out, me, break_lock)
    except BaseException:
        backend.cleanup()
        raise
    beat = _Heartbeat(backend, version)
    beat.start()
    depth[key] = 1
    _tokens[key] = me.token
    try:
        yield
    finally:
        depth.pop(key, None)
        _tokens.pop(key, None)
        beat.stop.set()
        beat.join()
        backend.delete(beat.version)
        backend.cleanup()


def locks_output(job: str) -> Callable:
    """Decorator for a job's ``run_cli(args, ...)`` / ``run(config, ...)``: the call
    holds the lock of ``first_argument.out`` (``first_argument.break_lock`` when the
    CLI gives it)."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(first, *args, **kwargs):
            break_lock = bool(getattr(first, "break_lock", False))
            with hold_output_lock(first.out, job, break_lock=break_lock):
                return fn(first, *args, **kwargs)

        return wrapper

    return decorate
