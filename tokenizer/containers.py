"""Audio that is not a file of its own: tar members, Parquet cells, command output.

An :class:`~datastore.records.AudioExample` names such audio by a reference,
never by its bytes (examples cross the speech jobs' shuffles, which the
embedded runner holds in memory):

- ``tar``: ``ARCHIVE#member=NAME`` (NAME percent-quoted), e.g. a FLEURS
  ``fr_fr/audio/test.tar.gz`` read in place;
- ``parquet``: ``FILE#row_group=R&row=N&column=C``, a Hugging Face-layout
  Parquet file whose column C holds encoded audio (a ``{bytes, path}`` struct
  or plain binary);
- ``command``: a shell command whose stdout is the audio (Kaldi ``cmd |``,
  lhotse ``command`` sources), run only when a manifest config allows it.

Why groups: a gzip stream cannot seek, so reading members one by one would
re-read an archive from its start for each (quadratic); a Parquet row group
is the unit a reader decodes. The speech jobs therefore group examples by
:func:`group_key` and :func:`iter_group` reads each archive in one sequential
pass (each row group once), handing out members' encoded bytes in order;
memory holds one member (or a few rows of a row group's audio column) at a
time plus what the caller keeps. Every example of a group comes back exactly once,
with its bytes or a reject (``missing_file`` for a member the archive lacks).

Example::

    for example, payload in iter_group(MemberGroup(TAR, archive, examples), config):
        ...  # payload: bytes, or a Reject
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from typing import NamedTuple
from urllib.parse import parse_qsl, quote

from datastore import storage
from datastore.records import COMMAND, PARQUET, TAR, AudioExample, Reason
from tokenizer.audio_config import AudioConfig, AudioError, decode_reject

COMMAND_TIMEOUT_S = 600.0  # a command producing one recording's audio


def tar_ref(archive: str, member: str) -> str:
    return f"{archive}#member={quote(member, safe='/')}"


def parquet_ref(file: str, row_group: int, row: int, column: str) -> str:
    return f"{file}#row_group={row_group}&row={row}&column={quote(column, safe='')}"


def parse_ref(uri: str) -> tuple[str, dict[str, str]]:
    """``(container file, fragment fields)`` of a tar or Parquet reference."""
    container, _, fragment = uri.rpartition("#")
    return container, dict(parse_qsl(fragment, keep_blank_values=True))


class MemberGroup(NamedTuple):
    """Examples read in one pass: a whole tar archive, or one Parquet row group."""

    kind: str
    key: str
    examples: tuple[AudioExample, ...]


def group_key(example: AudioExample) -> str | None:
    """What an example is read together with (``None``: a file or command, alone)."""
    if example.audio_kind == TAR:
        return parse_ref(example.uri)[0]
    if example.audio_kind == PARQUET:
        file, f = parse_ref(example.uri)
        return f"{file}#row_group={f['row_group']}&column={quote(f['column'], safe='')}"
    return None


def make_group(key: str, examples: Iterable[AudioExample]) -> MemberGroup:
    """A group in a deterministic order (by reference: Parquet rows by number)."""
    examples = tuple(examples)
    kind = examples[0].audio_kind
    if kind == PARQUET:
        ordered = sorted(examples, key=lambda e: (int(parse_ref(e.uri)[1]["row"]), e.id))
    else:
        ordered = sorted(examples, key=lambda e: (e.uri, e.id))
    return MemberGroup(kind, key, tuple(ordered))


def iter_group(group: MemberGroup, config: AudioConfig) -> Iterator[tuple[AudioExample, object]]:
    """``(example, bytes | Reject)`` for every example of the group, once each."""
    members = _tar_pass if group.kind == TAR else _parquet_rows
    for example, payload in members(group.examples, config):
        if isinstance(payload, AudioError):
            payload = decode_reject(example, payload.reason, payload.detail)
        yield example, payload


def read_single(example: AudioExample, config: AudioConfig) -> bytes:
    """One example's encoded bytes outside a group; raises :class:`AudioError`.
    (A tar member costs a pass over the archive up to it: use groups for many.)"""
    if example.audio_kind == COMMAND:
        return run_command(example.uri, config)
    members = _tar_pass if example.audio_kind == TAR else _parquet_rows
    ((_, payload),) = members((example,), config)
    if isinstance(payload, AudioError):
        raise payload
    return payload


def _tar_pass(examples, config: AudioConfig):
    """One sequential pass over an archive (any compression tarfile reads),
    stopping once every wanted member is found. A TSV may name a member as
    stored (``test/1.wav``) or without the archive's top folder (``1.wav``, as
    FLEURS' TSVs do for ``test/1.wav`` in ``test.tar.gz``)."""
    import tarfile

    archive = parse_ref(examples[0].uri)[0]
    wanted: dict[str, list[AudioExample]] = {}
    for e in examples:
        wanted.setdefault(parse_ref(e.uri)[1].get("member", ""), []).append(e)
    done: set[str] = set()
    failure: AudioError | None = None
    try:
        with storage.open_regular(archive) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for info in tar:
                tar.members = []  # stream mode keeps every header otherwise
                name = _wanted_name(info.name, wanted, done)
                if name is None:
                    continue
                payload = _member_bytes(tar, info, archive, config)  # may raise: not done yet
                done.add(name)
                for e in wanted[name]:
                    yield e, payload
                if len(done) == len(wanted):
                    break
    except FileNotFoundError:
        failure = AudioError(Reason.MISSING_FILE, f"{archive}: no such archive")
    except storage.NotAFileError as exc:
        failure = AudioError(Reason.NOT_A_FILE, str(exc.args[0]))
    except Exception as exc:  # TarError, a truncated stream's EOFError, OSError, zlib.error
        failure = AudioError(
            Reason.DECODE_ERROR,
            f"{archive}: unreadable archive: {type(exc).__name__}: {exc}"[:500],
        )
    for name, group in wanted.items():
        if name in done:
            continue
        missing = AudioError(Reason.MISSING_FILE, f"{archive}: no member {name!r}")
        for e in group:
            yield e, failure or missing


# A member named ``STEM.*`` is ``STEM`` with whatever audio extension it has
# (lhotse Shar writes ``CUT_ID.flac`` or ``.wav``... beside ``CUT_ID.json``).
ANY_AUDIO = "*"


def _wanted_name(stored: str, wanted: dict, done: set) -> str | None:
    name = stored[2:] if stored.startswith("./") else stored
    stem, dot, ext = name.rpartition(".")
    any_ext = [f"{stem}.{ANY_AUDIO}"] if dot and ext != "json" else []
    for candidate in (name, name.split("/", 1)[-1], *any_ext):
        if candidate in wanted and candidate not in done:
            return candidate
    return None


def _member_bytes(tar, info, archive: str, config: AudioConfig) -> bytes | AudioError:
    where = f"{archive}#member={info.name}"
    if not info.isfile():
        return AudioError(Reason.NOT_A_FILE, f"{where} is not a regular file in the archive")
    if info.size > config.max_bytes:
        return AudioError(Reason.TOO_LONG, f"{where}: {info.size} bytes > max {config.max_bytes}")
    return tar.extractfile(info).read()


# Rows per batch when reading a row group's audio column, and the read buffer:
# memory holds a few clips' bytes, not the row group's (hub row groups are 100
# rows: 25-100 MB of audio for clips of 8-30 s, far more for long recordings).
PARQUET_BATCH_ROWS = 8
ARROW_SUFFIX = ".arrow"
PARQUET_BUFFER_BYTES = 1 << 20


def _parquet_rows(examples, config: AudioConfig):
    """One row group's audio column, read once, a few rows at a time
    (``PARQUET_BATCH_ROWS``, through a ``PARQUET_BUFFER_BYTES`` buffer, so the
    column chunk is never held whole); each example's cell."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file, first = parse_ref(examples[0].uri)
    row_group, column = int(first["row_group"]), first["column"]
    wanted: dict[int, list[AudioExample]] = {}
    for e in examples:
        wanted.setdefault(int(parse_ref(e.uri)[1]["row"]), []).append(e)
    failure: AudioError | None = None
    try:
        with storage.open_regular(file) as f:
            if is_arrow(file):
                batches = _arrow_group(file, f, row_group, column)
            else:
                pf = pq.ParquetFile(f, buffer_size=PARQUET_BUFFER_BYTES)
                is_struct = pa.types.is_struct(pf.schema_arrow.field(column).type)
                read = f"{column}.bytes" if is_struct else column
                batches = (
                    _bytes_cells(batch.column(0), is_struct)
                    for batch in pf.iter_batches(
                        batch_size=PARQUET_BATCH_ROWS, row_groups=[row_group], columns=[read]
                    )
                )
            start = 0
            for cells in batches:
                for i in range(len(cells)):
                    for e in wanted.pop(start + i, ()):
                        yield e, _cell(e, cells[i].as_py(), config)
                start += len(cells)
                if not wanted:
                    break
    except FileNotFoundError:
        failure = AudioError(Reason.MISSING_FILE, f"{file}: no such file")
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError/KeyError on a bad file
        detail = f"{file}: row group {row_group} unreadable: {type(exc).__name__}: {exc}"
        failure = AudioError(Reason.DECODE_ERROR, detail[:500])
    for group in wanted.values():  # unread: a failed read, or rows past the row group
        for e in group:
            yield e, failure or _cell(e, None, config)


def _bytes_cells(cells, is_struct: bool):
    """An audio column's encoded bytes: the column, or its ``bytes`` field (``{bytes, path}``)."""
    return cells.field("bytes") if is_struct else cells


def is_arrow(file: str) -> bool:
    """An Arrow IPC file, as ``datasets``' ``save_to_disk`` writes (``data-00000-of-00001.arrow``)."""
    return file.endswith(ARROW_SUFFIX)


def open_arrow(uri: str, f):
    """A reader of the Arrow IPC file ``uri`` opened as ``f`` (stream format, as
    ``datasets`` writes, or the random-access file format): ``schema`` and
    ``iter_batches()``. A local file is memory-mapped: the batches before the
    one wanted, and the columns not read, are skipped, not copied."""
    import pyarrow as pa

    if storage.is_local(uri):
        f = pa.memory_map(storage.local_path(uri))
    head = f.read(6)
    f.seek(0)
    if head == b"ARROW1":
        reader = pa.ipc.open_file(f)
        return _ArrowBatches(
            reader.schema, lambda: map(reader.get_batch, range(reader.num_record_batches))
        )
    reader = pa.ipc.open_stream(f)
    return _ArrowBatches(reader.schema, lambda: iter(reader))


class _ArrowBatches(NamedTuple):
    schema: object
    iter_batches: object  # () -> Iterator[RecordBatch], once


def _arrow_group(uri: str, f, batch_index: int, column: str):
    """The audio bytes of one record batch of an Arrow file (a "row group" there)."""
    import pyarrow as pa

    arrow = open_arrow(uri, f)
    is_struct = pa.types.is_struct(arrow.schema.field(column).type)
    for i, batch in enumerate(arrow.iter_batches()):
        if i == batch_index:
            yield _bytes_cells(batch.column(column), is_struct)
            return


def _cell(example: AudioExample, value: bytes | None, config: AudioConfig):
    if value is None:
        return AudioError(Reason.MISSING_FILE, f"{example.uri}: no audio bytes in this cell")
    if len(value) > config.max_bytes:
        return AudioError(Reason.TOO_LONG, f"{example.uri}: {len(value)} bytes > max_bytes")
    return value


def run_command(command: str, config: AudioConfig) -> bytes:
    """A shell command's stdout (at most ``max_bytes``), as Kaldi's ``cmd |``
    reads it; a failing, silent or endless command is an :class:`AudioError`."""
    proc = subprocess.Popen(
        command,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a kill reaches the pipe's children
    )

    def kill() -> None:
        """The shell and everything it started (killing the shell alone leaves a
        stalled ``sox ... |`` holding the pipe open: the read never ends)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    tail = bytearray()

    def drain() -> None:
        for chunk in iter(lambda: proc.stderr.read(4096), b""):
            tail.extend(chunk)
            del tail[:-2000]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    timer = threading.Timer(COMMAND_TIMEOUT_S, kill)
    timer.start()
    try:
        data = storage.read_capped(proc.stdout, config.max_bytes + 1)
        if len(data) > config.max_bytes:
            kill()
            raise AudioError(Reason.TOO_LONG, f"{command!r}: output over {config.max_bytes} bytes")
        proc.stdout.close()
        status = proc.wait()
        reader.join(timeout=5)
    finally:
        timer.cancel()
        kill()  # the group: what the shell started may outlive the shell
        proc.wait()
    if status != 0:
        said = tail.decode("utf-8", "replace").strip().splitlines()
        detail = f"{command!r} exited with status {status}" + (f": {said[-1]}" if said else "")
        raise AudioError(Reason.DECODE_ERROR, detail[:500])
    return data
