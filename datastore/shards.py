"""Writing, indexing and reading Parquet shards, without Beam.

Jobs group rows per partition and hand them here: rows are sorted by id and
cut into shards with deterministic, zero-padded names, each written
atomically (temp then rename, via :mod:`datastore.storage`) and described by a
:class:`ShardInfo` (rows, bytes, sha256). Partition keys go into the folder
names only (see :mod:`datastore.schema`). ``_index.json`` gathers the shard
infos, the record counts (``input = accepted + rejected``) and the job's
config; it is written last, so its presence means the job completed.

Readers in this repo (trainer, eval, embed) go through :func:`iter_shards` /
:func:`read_table`: they read the files the index lists, and only those, so a
stale file of an earlier run in the same folder is never read, and they read
through :mod:`datastore.storage`, so ``gs://`` works like a local path.

Example::

    infos = write_partition(rows, out_dir="out", kind="tokens",
                            partition={"corpus": "fleurs", "split": "test", "lang": "fr"})
    table = read_table("out", "tokens", columns=["id", "lang", "tokens"],
                       where={"split": ["test"]})
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import urllib.parse
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datastore import schema, storage
from datastore.settings import setting

# kind -> (row schema, partition keys); the file schema is the row schema minus the keys.
KINDS = {
    schema.TOKENS_DIR: (schema.TOKEN_SCHEMA, schema.TOKEN_PARTITIONS),
    schema.BITEXT_DIR: (schema.BITEXT_SCHEMA, schema.BITEXT_PARTITIONS),
    schema.REJECTS_DIR: (schema.REJECT_SCHEMA, ()),
    schema.EMBEDDINGS_DIR: (schema.EMBEDDING_SCHEMA, ()),
}
# Nullable columns a file of an older schema version lacks; read as nulls.
ADDED_COLUMNS = {schema.TOKENS_DIR: frozenset({"offset_s"})}


@dataclass(frozen=True, kw_only=True)
class WriteConfig:
    """Parquet layout options shared by every job.

    ``rows_per_shard``: rows per file (the last shard of a partition may be
    smaller); ``row_group_rows``: Parquet row-group size (the unit readers
    skip and parallelise over).
    """

    rows_per_shard: int = setting(50_000, help="target rows per shard")
    row_group_rows: int = 10_000
    compression: str = setting("zstd", help="Parquet compression")
    license: str = setting(
        "unknown", help="the data's license (an SPDX id: cc-by-4.0...), for the dataset card"
    )

    def __post_init__(self) -> None:
        if not self.license.strip() or any(c in self.license for c in "\n\r\"'"):
            raise ValueError(f"--license {self.license!r}: one line, no quotes")
        if self.rows_per_shard < 1 or self.row_group_rows < 1:
            raise ValueError("rows_per_shard and row_group_rows must be >= 1")
        if self.compression not in ("zstd", "snappy", "gzip", "lz4", "brotli", "none"):
            raise ValueError(f"unknown Parquet compression {self.compression!r}")


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the job's output folder
    rows: int
    bytes: int
    sha256: str


def file_schema(kind: str) -> pa.Schema:
    """The columns stored in a shard file of ``kind`` (the row schema minus partition keys)."""
    row_schema, keys = KINDS[kind]
    return pa.schema([f for f in row_schema if f.name not in keys])


def table_from_rows(rows: Sequence[dict] | pa.Table, kind: str) -> pa.Table:
    """Rows of one partition -> the table stored in its file (partition keys dropped).

    Rows (dicts, or a table of the row schema) are validated against the full
    row schema first; rows of different partitions cannot share a file.
    """
    row_schema, keys = KINDS[kind]
    if isinstance(rows, pa.Table):
        table = rows
    else:
        table = pa.Table.from_pylist(list(rows), schema=row_schema)
    schema.validate(table, row_schema)
    for key in keys:
        values = table.column(key).unique()
        if len(values) > 1:
            raise ValueError(f"rows of one shard have several {key} values: {values.to_pylist()}")
    return table.select(file_schema(kind).names)


def partition_of(rows: Sequence[dict] | pa.Table, kind: str) -> dict[str, str]:
    """The partition values of rows of one partition (``{}`` for unpartitioned kinds)."""
    _, keys = KINDS[kind]
    if isinstance(rows, pa.Table):
        return {k: str(rows.column(k)[0].as_py()) for k in keys} if rows.num_rows else {}
    return {k: str(rows[0][k]) for k in keys} if rows else {}


def encode_table(
    table: pa.Table, config: WriteConfig, metadata: dict | None = None, order=None
) -> bytes:
    """Serialise a table to Parquet bytes with our layout options.

    ``order`` (row indices): write the rows in that order, taking one row
    group's rows at a time, so a sorted copy of the whole table is never made
    (the same bytes as writing ``table.take(order)``).
    """
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({_b(k): _b(v) for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    buf = io.BytesIO()
    compression = None if config.compression == "none" else config.compression
    if order is None:
        pq.write_table(table, buf, compression=compression, row_group_size=config.row_group_rows)
        return buf.getvalue()
    step = config.row_group_rows
    order = np.asarray(order, dtype=np.int64)
    batches = table.to_batches()
    starts = np.cumsum([0] + [b.num_rows for b in batches])
    with pq.ParquetWriter(buf, table.schema, compression=compression) as writer:
        for start in range(0, len(order), step):
            group = _take_rows(batches, starts, order[start : start + step])
            writer.write_table(group, row_group_size=step)
            # mimalloc keeps a group's freed pages for the next; hand them back
            # so a shard's groups do not add up to the whole shard (~1 KB a row).
            pa.default_memory_pool().release_unused()
    return buf.getvalue()


def _take_rows(batches: list[pa.RecordBatch], starts: np.ndarray, rows: np.ndarray) -> pa.Table:
    """``Table.take(rows)`` one batch at a time. Why: taking from a table of
    many chunks first concatenates each whole column (Arrow 25), a copy of the
    shard per row group; here only the taken rows are copied."""
    batch_of = np.searchsorted(starts, rows, side="right") - 1
    pieces, placed = [], []
    for b in np.unique(batch_of):
        where = np.flatnonzero(batch_of == b)
        pieces.append(batches[b].take(pa.array(rows[where] - starts[b])))
        placed.append(where)
    taken = pa.Table.from_batches(pieces, schema=batches[0].schema).combine_chunks()
    return taken.take(pa.array(np.argsort(np.concatenate(placed), kind="stable")))


def _b(x) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


def write_table(
    table: pa.Table, uri: str, config: WriteConfig, metadata: dict | None = None, order=None
) -> tuple[int, str]:
    """Atomically write one shard (rows in ``order`` when given); returns ``(bytes, sha256)``."""
    data = encode_table(table, config, metadata, order)
    storage.write_bytes(uri, data)
    return len(data), hashlib.sha256(data).hexdigest()


def partition_dir(kind: str, partition: dict[str, str] | None) -> str:
    _, keys = KINDS[kind]
    return kind if not keys else f"{kind}/{schema.partition_path(partition or {}, keys)}"


def write_shard(
    rows: Sequence[dict] | pa.Table,
    *,
    out_dir: str,
    kind: str,
    index: int,
    config: WriteConfig,
    metadata: dict | None = None,
) -> ShardInfo:
    """Write rows of one partition (already in their final order) as shard ``index``.

    The one shard writer: the Beam jobs' ``WriteShards`` and :func:`write_partition`
    both end here. The file's metadata names its partition.
    """
    partition = partition_of(rows, kind)
    rel = f"{partition_dir(kind, partition)}/{schema.shard_name(index)}"
    return write_rows(rows, out_dir=out_dir, kind=kind, rel=rel, config=config, metadata=metadata)


def write_rows(
    rows: Sequence[dict] | pa.Table,
    *,
    out_dir: str,
    kind: str,
    rel: str,
    config: WriteConfig,
    metadata: dict | None = None,
) -> ShardInfo:
    """Write rows of one partition as the file ``rel`` (relative to ``out_dir``):
    partition keys dropped from the columns and named in the file's metadata.
    For writers that name their files themselves (the bitext job's rejects)."""
    partition = partition_of(rows, kind)
    folder, name = rel.rsplit("/", 1)
    if partition and folder != partition_dir(kind, partition):
        raise ValueError(f"{rel}: not the folder of partition {partition}")
    return write_stored(
        table_from_rows(rows, kind),
        out_dir=out_dir,
        kind=kind,
        folder=folder,
        name=name,
        config=config,
        metadata=metadata,
    )


def write_stored(
    table: pa.Table,
    *,
    out_dir: str,
    kind: str,
    folder: str,
    config: WriteConfig,
    index: int | None = None,
    name: str | None = None,
    metadata: dict | None = None,
    order=None,
) -> ShardInfo:
    """Write a table of the kind's file schema (partition keys already dropped)
    as ``folder/part-{index:05d}.parquet`` (or ``folder/name``), its rows in
    ``order`` when given; the file's metadata names its partition (``folder``
    without the kind)."""
    meta = dict(metadata or {})
    if folder != kind:
        meta[schema.META_PARTITION] = folder.split("/", 1)[1]
    rel = f"{folder}/{name if name is not None else schema.shard_name(index)}"
    nbytes, digest = write_table(table, storage.join(out_dir, rel), config, meta, order)
    return ShardInfo(path=rel, rows=table.num_rows, bytes=nbytes, sha256=digest)


def write_partition(
    rows: Iterable[dict],
    *,
    out_dir: str,
    kind: str,
    partition: dict[str, str] | None = None,
    config: WriteConfig = WriteConfig(),
    metadata: dict | None = None,
    first_index: int = 0,
) -> list[ShardInfo]:
    """Write one partition's rows as shards ``part-{first_index + i:05d}.parquet``.

    Rows are sorted by ``id`` first, so the same rows always give the same
    files whatever order a runner delivered them in.
    """
    ordered = sorted(rows, key=lambda r: r["id"])
    _, keys = KINDS[kind]
    for row in ordered:
        if any(str(row[k]) != str((partition or {})[k]) for k in keys):
            raise ValueError(f"row {row['id']!r} is not in partition {partition}")
    return [
        write_shard(
            ordered[start : start + config.rows_per_shard],
            out_dir=out_dir,
            kind=kind,
            index=first_index + n,
            config=config,
            metadata=metadata,
        )
        for n, start in enumerate(range(0, len(ordered), config.rows_per_shard))
    ]


def sweep_temp_files(out_dir: str) -> int:
    """Delete temp files a killed run left behind; returns how many."""
    if not storage.is_local(out_dir) or not storage.exists(out_dir):
        return 0  # object stores never expose partial objects
    removed = 0
    for d, _, files in os.walk(storage.local_path(out_dir)):
        for f in files:
            if f.startswith(storage.TEMP_PREFIX):
                os.remove(os.path.join(d, f))
                removed += 1
    return removed


class FolderRefused(ValueError):
    """A folder a reader must not use: another job's output, a failed job's,
    an unreadable index, or a listed file that is not what the index says."""


# Which jobs write each kind of shards: a reader refuses a folder another job wrote.
WRITERS = {
    schema.TOKENS_DIR: ("tokenize", "synthetic"),
    schema.BITEXT_DIR: ("bitext", "synthetic"),
    schema.EMBEDDINGS_DIR: ("embed",),
    schema.REJECTS_DIR: None,  # every job writes rejects
}
COMPLETE, FAILED = "complete", "failed"


@dataclass
class Index:
    """``_index.json``: what a job wrote and how its counts reconcile.

    The folder contract (docs/guarantees.md): ``job`` names the command that
    wrote the folder and ``writer`` the process (host, pid, its lock token);
    ``settings`` are the settings that define the rows (an append must match
    them); ``status`` is ``complete`` or ``failed`` (with ``failure``, why);
    ``shards`` and ``files`` list every file the folder holds with its size and
    sha256, which readers check. Written last, atomically: a folder without it
    is not a finished job's output.
    """

    job: str
    config: dict
    counts: dict[str, int] = field(
        default_factory=lambda: {"input": 0, "accepted": 0, "rejected": 0}
    )
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    shards: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    written_at: float = 0.0
    status: str = COMPLETE
    failure: str | None = None
    settings: dict = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)  # other artifacts: path, bytes, sha256
    writer: dict = field(default_factory=dict)

    def reconciles(self) -> bool:
        c = self.counts
        return c["input"] == c["accepted"] + c["rejected"]

    def write(self, out_dir: str, *, fence: str | None = None) -> None:
        """Publish the index (atomically). ``fence``: the writer's lock token,
        checked first (:func:`datastore.outlock.check_held`): a job whose lock
        was taken over raises :class:`datastore.outlock.LockLost` and publishes nothing."""
        if not self.reconciles():
            raise RuntimeError(f"counts do not reconcile: {self.counts}")
        if fence is not None:
            from datastore.outlock import check_held

            check_held(out_dir, fence)
            self.writer = {**self.writer, "token": fence}
        self.written_at = self.written_at or time.time()
        storage.write_text(
            storage.join(out_dir, schema.INDEX_FILE),
            json.dumps(asdict(self), indent=2, sort_keys=True),
        )

    def mark_failed(self, out_dir: str, reason: str, *, fence: str | None = None) -> None:
        """Record that the job did not produce usable output (readers then refuse it)."""
        self.status, self.failure = FAILED, reason
        self.write(out_dir, fence=fence)

    @classmethod
    def read(cls, out_dir: str) -> Index | None:
        """The folder's index; None without one; :class:`FolderRefused` for one
        that cannot be read (truncated, edited, not ours)."""
        uri = storage.join(out_dir, schema.INDEX_FILE)
        if not storage.exists(uri):
            return None
        try:
            data = json.loads(storage.read_text(uri))
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError) as exc:  # JSONDecodeError, a missing field
            raise FolderRefused(
                f"{uri} cannot be read ({type(exc).__name__}: {exc}): a truncated or edited "
                "index; run the job that wrote the folder again"
            ) from None


# The flag of every command that reads shard folders (train, eval, embed).
READ_FAILED_HELP = (
    "also read shard folders whose job failed (e.g. over --max-reject-fraction): the rows "
    "they list, as written"
)


def check_folder(out_dir: str, index: Index | None, kind: str, *, allow_failed: bool = False):
    """Refuse (:class:`FolderRefused`, ``FileNotFoundError`` without an index)
    a folder whose ``kind`` files a reader must not use: written by another job
    than :data:`WRITERS` allows, or by a job that failed (unless ``allow_failed``)."""
    if index is None:
        raise FileNotFoundError(
            f"{storage.join(out_dir, schema.INDEX_FILE)} does not exist: not the output of a "
            "finished speechtok job"
        )
    writers = WRITERS.get(kind)
    if writers is not None and index.job not in writers:
        raise FolderRefused(
            f"{out_dir} is the output of `speechtok {index.job}`, not of "
            f"{' / '.join('speechtok ' + w for w in writers if w != 'synthetic')} ({kind} shards)"
        )
    if index.status == FAILED and not allow_failed:
        raise FolderRefused(f"{out_dir}: the {index.job} job that wrote it failed: {index.failure}")


def file_digest(uri: str) -> tuple[int, str]:
    """``(bytes, sha256)`` of a file, read in 1 MB chunks."""
    digest, size = hashlib.sha256(), 0
    with storage.open_read(uri) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def verify_file(out_dir: str, listed: Mapping, *, sha256: bool) -> None:
    """Refuse a listed file (``{"path", "bytes", "sha256"}``) that is not what
    the index says: its size always (a stat), its sha256 when asked (a read)."""
    uri = storage.join(out_dir, listed["path"])
    if not storage.exists(uri):
        raise FolderRefused(f"{uri} is listed in {schema.INDEX_FILE} but missing")
    size = storage.size(uri)
    if listed.get("bytes") and size != int(listed["bytes"]):
        raise FolderRefused(
            f"{uri} holds {size} bytes, the index lists {listed['bytes']}: not the file the "
            "job wrote (replaced or truncated)"
        )
    if sha256 and listed.get("sha256"):
        _, digest = file_digest(uri)
        if digest != listed["sha256"]:
            raise FolderRefused(
                f"{uri}: sha256 {digest[:12]}... is not the index's: not the file the job wrote"
            )


def shard_dicts(infos: Iterable[ShardInfo]) -> list[dict]:
    return sorted((asdict(i) for i in infos), key=lambda d: d["path"])


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardFile:
    """One shard the index lists: path (relative to the folder), partition, rows,
    and what the file must be (size, sha256)."""

    path: str
    partition: dict[str, str]
    rows: int
    bytes: int = 0
    sha256: str = ""


def parse_partition(rel_path: str, kind: str) -> dict[str, str]:
    """``tokens/corpus=c/split=s/lang=l/part-0.parquet`` -> ``{"corpus": "c", ...}``.

    Values are URI-decoded, as ``pyarrow.dataset``'s hive partitioning does.
    """
    _, keys = KINDS[kind]
    segments = rel_path.split("/")[1:-1]
    values = {}
    for seg in segments:
        key, sep, value = seg.partition("=")
        if sep:
            values[key] = urllib.parse.unquote(value)
    if set(values) != set(keys):
        raise ValueError(f"{rel_path}: partition keys {sorted(values)}, expected {list(keys)}")
    return {k: values[k] for k in keys}


def listed_shards(
    out_dir: str,
    kind: str,
    *,
    where: Mapping[str, Collection[str] | None] | None = None,
    allow_failed: bool = False,
) -> list[ShardFile]:
    """The shard files of ``kind`` that ``out_dir/_index.json`` lists, filtered by partition.

    ``where`` maps partition keys to allowed values (``None``: any). Raises
    ``FileNotFoundError`` without an index (a folder without one is not a
    finished job's output, and its files cannot be trusted to belong
    together) and :class:`FolderRefused` for another job's folder or a failed
    job's (:func:`check_folder`).
    """
    _, keys = KINDS[kind]
    unknown = set(where or {}) - set(keys)
    if unknown:
        raise ValueError(f"{kind} shards are partitioned by {list(keys)}, not {sorted(unknown)}")
    index = Index.read(out_dir)
    check_folder(out_dir, index, kind, allow_failed=allow_failed)
    wanted = {k: {str(v) for v in vals} for k, vals in (where or {}).items() if vals is not None}
    out = []
    for s in sorted(index.shards, key=lambda d: d["path"]):
        if not s["path"].startswith(kind + "/"):
            continue
        partition = parse_partition(s["path"], kind) if keys else {}
        if all(partition[k] in vals for k, vals in wanted.items()):
            out.append(
                ShardFile(
                    path=s["path"],
                    partition=partition,
                    rows=int(s["rows"]),
                    bytes=int(s.get("bytes") or 0),
                    sha256=str(s.get("sha256") or ""),
                )
            )
    return out


def read_shard(
    out_dir: str,
    shard: ShardFile,
    kind: str,
    columns: Sequence[str] | None = None,
    *,
    verify: bool = False,
) -> pa.Table:
    """One listed shard as rows of the kind's row schema (partition keys from the path).

    ``columns`` selects and orders the columns (default: the whole row schema).
    The table keeps the file's key-value metadata (codebook sha256...). The
    file must have the size the index lists, and with ``verify`` its sha256
    (the file is read whole once, hashed, then decoded from memory), else
    :class:`FolderRefused`.
    """
    row_schema, keys = KINDS[kind]
    names = list(columns) if columns is not None else row_schema.names
    unknown = [c for c in names if c not in row_schema.names]
    if unknown:
        raise ValueError(f"{kind} shards have no column(s) {unknown}")
    listed = {"path": shard.path, "bytes": shard.bytes, "sha256": shard.sha256}
    verify_file(out_dir, listed, sha256=False)
    uri = storage.join(out_dir, shard.path)
    if verify and shard.sha256:
        data = storage.read_bytes(uri)
        if hashlib.sha256(data).hexdigest() != shard.sha256:
            raise FolderRefused(f"{uri}: sha256 is not the index's: not the file the job wrote")
        source = contextlib.nullcontext(pa.BufferReader(data))
    else:
        source = storage.open_read(uri)
    with source as f:
        parquet = pq.ParquetFile(f)
        stored = parquet.schema_arrow.names
        added = ADDED_COLUMNS.get(kind, frozenset())
        missing = [c for c in names if c not in stored and c not in keys and c not in added]
        if missing:
            raise ValueError(f"{shard.path}: not {kind} shards (missing columns {missing})")
        table = parquet.read(columns=[c for c in names if c in stored])
        metadata = parquet.schema_arrow.metadata
    n = table.num_rows
    arrays = []
    for name in names:
        if name in table.column_names:  # schema 1 files also store the keys
            arrays.append(table.column(name))
        elif name not in keys:  # a column schema 1 files lack (ADDED_COLUMNS)
            arrays.append(pa.nulls(n, row_schema.field(name).type))
        else:
            arrays.append(pa.array([shard.partition[name]] * n, pa.string()))
    fields = [row_schema.field(c) for c in names]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def iter_shards(
    out_dir: str,
    kind: str,
    *,
    columns: Sequence[str] | None = None,
    where: Mapping[str, Collection[str] | None] | None = None,
    verify: bool = False,
    allow_failed: bool = False,
) -> Iterator[tuple[ShardFile, pa.Table]]:
    """``(shard, table)`` for every listed shard in path order, one file in memory
    at a time (``verify``: sha256 too, :func:`read_shard`)."""
    for shard in listed_shards(out_dir, kind, where=where, allow_failed=allow_failed):
        yield shard, read_shard(out_dir, shard, kind, columns, verify=verify)


def read_table(
    out_dir: str,
    kind: str,
    *,
    columns: Sequence[str] | None = None,
    where: Mapping[str, Collection[str] | None] | None = None,
    verify: bool = False,
    allow_failed: bool = False,
) -> pa.Table:
    """Every listed shard of ``kind`` (filtered by ``where``) as one table, in path order."""
    row_schema, _ = KINDS[kind]
    names = list(columns) if columns is not None else row_schema.names
    listed = iter_shards(
        out_dir, kind, columns=names, where=where, verify=verify, allow_failed=allow_failed
    )
    tables = [t.replace_schema_metadata(None) for _, t in listed]
    if not tables:
        return pa.schema([row_schema.field(c) for c in names]).empty_table()
    return pa.concat_tables(tables)
