"""Writing and indexing Parquet shards, without Beam.

Jobs group rows per partition and hand them here: rows are sorted by id and
cut into shards with deterministic, zero-padded names, each written
atomically (temp then rename, via :mod:`tokenizer.io`) and described by a
:class:`ShardInfo` (rows, bytes, sha256). ``_index.json`` gathers the shard
infos, the record counts (``input = accepted + rejected``) and the job's
config; it is written last, so its presence means the job completed.

Example::

    infos = write_partition(rows, out_dir="out", kind="tokens",
                            partition={"corpus": "fleurs", "split": "test", "lang": "fr"})
"""

from __future__ import annotations

import hashlib
import io as _stdio
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from tokenizer import io, schema

KINDS = {
    schema.TOKENS_DIR: (schema.TOKEN_SCHEMA, schema.TOKEN_PARTITIONS),
    schema.BITEXT_DIR: (schema.BITEXT_SCHEMA, schema.BITEXT_PARTITIONS),
    schema.REJECTS_DIR: (schema.REJECT_SCHEMA, ()),
}


@dataclass(frozen=True, kw_only=True)
class WriteConfig:
    """Parquet layout options shared by every job.

    ``rows_per_shard``: rows per file (the last shard of a partition may be
    smaller); ``row_group_rows``: Parquet row-group size (the unit readers
    skip and parallelise over).
    """

    rows_per_shard: int = 50_000
    row_group_rows: int = 10_000
    compression: str = "zstd"

    def __post_init__(self) -> None:
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


def table_from_rows(rows: Sequence[dict], kind: str) -> pa.Table:
    table_schema, _ = KINDS[kind]
    table = pa.Table.from_pylist(list(rows), schema=table_schema)
    schema.validate(table, table_schema)
    return table


def encode_table(table: pa.Table, config: WriteConfig, metadata: dict | None = None) -> bytes:
    """Serialise a table to Parquet bytes with our layout options."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({_b(k): _b(v) for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    buf = _stdio.BytesIO()
    pq.write_table(
        table,
        buf,
        compression=None if config.compression == "none" else config.compression,
        row_group_size=config.row_group_rows,
    )
    return buf.getvalue()


def _b(x) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


def write_table(
    table: pa.Table, uri: str, config: WriteConfig, metadata: dict | None = None
) -> tuple[int, str]:
    """Atomically write one shard; returns ``(bytes, sha256)``."""
    data = encode_table(table, config, metadata)
    io.write_bytes(uri, data)
    return len(data), hashlib.sha256(data).hexdigest()


def partition_dir(kind: str, partition: dict[str, str] | None) -> str:
    _, keys = KINDS[kind]
    return kind if not keys else f"{kind}/{schema.partition_path(partition or {}, keys)}"


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
    rel_dir = partition_dir(kind, partition)
    infos = []
    for n, start in enumerate(range(0, len(ordered), config.rows_per_shard)):
        chunk = ordered[start : start + config.rows_per_shard]
        rel = f"{rel_dir}/{schema.shard_name(first_index + n)}"
        nbytes, digest = write_table(
            table_from_rows(chunk, kind), io.join(out_dir, rel), config, metadata
        )
        infos.append(ShardInfo(path=rel, rows=len(chunk), bytes=nbytes, sha256=digest))
    return infos


def existing_shards(out_dir: str, kind: str, partition: dict[str, str] | None = None) -> list[str]:
    """Shard files already present in one partition folder (sorted)."""
    return io.glob(io.join(out_dir, partition_dir(kind, partition), "part-*.parquet"))


def sweep_temp_files(out_dir: str) -> int:
    """Delete temp files a killed run left behind; returns how many."""
    if not io.is_local(out_dir) or not io.exists(out_dir):
        return 0  # object stores never expose partial objects
    removed = 0
    for d, _, files in os.walk(io.local_path(out_dir)):
        for f in files:
            if f.startswith(io.TEMP_PREFIX):
                os.remove(os.path.join(d, f))
                removed += 1
    return removed


@dataclass
class Index:
    """``_index.json``: what a job wrote and how its counts reconcile."""

    job: str
    config: dict
    counts: dict[str, int] = field(
        default_factory=lambda: {"input": 0, "accepted": 0, "rejected": 0}
    )
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    shards: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    written_at: float = 0.0

    def reconciles(self) -> bool:
        c = self.counts
        return c["input"] == c["accepted"] + c["rejected"]

    def write(self, out_dir: str) -> None:
        if not self.reconciles():
            raise RuntimeError(f"counts do not reconcile: {self.counts}")
        self.written_at = self.written_at or time.time()
        io.write_text(
            io.join(out_dir, schema.INDEX_FILE), json.dumps(asdict(self), indent=2, sort_keys=True)
        )

    @classmethod
    def read(cls, out_dir: str) -> Index | None:
        uri = io.join(out_dir, schema.INDEX_FILE)
        if not io.exists(uri):
            return None
        return cls(**json.loads(io.read_text(uri)))


def shard_dicts(infos: Iterable[ShardInfo]) -> list[dict]:
    return sorted((asdict(i) for i in infos), key=lambda d: d["path"])
