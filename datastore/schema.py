"""The shard schemas, defined once: token shards, bitext shards, rejects, embeddings.

Each kind has a *file* schema (the columns stored in every Parquet file) and
hive partition keys (the ``key=value`` folder names). The row schema readers
see is the file schema followed by the partition keys as strings: that is
what ``pandas.read_parquet(folder)``, ``pyarrow.parquet.read_table(folder)``,
``pyarrow.dataset(folder, partitioning="hive")``, DuckDB and polars all
return, column for column (pandas and ``pq.read_table`` give the keys as
dictionary/categorical, the others as strings).

Partition keys live only in the folder names, as Spark, Hive, DuckDB's and
polars' partitioned writes do. Stored in the files as well (schema version 1)
they made ``pq.read_table`` and pandas fail: they infer path keys as
``dictionary<int32, string>``, which does not merge with a stored ``string``
column, while ``pyarrow.dataset`` infers ``string``, which does not merge with
a stored dictionary. A single file still names its partition in its
key-value metadata (:data:`META_PARTITION`).
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

# 2: partition keys no longer stored in the files (only in the folder names);
#    every shard file's metadata names its partition (META_PARTITION); token rows
#    carry ``offset_s`` (where a segment starts in its recording; null for a whole file).
SCHEMA_VERSION = "2"


def with_partitions(file_schema: pa.Schema, keys: tuple[str, ...]) -> pa.Schema:
    """The row schema: the file columns, then the partition keys (non-null strings)."""
    return pa.schema([*file_schema, *(pa.field(k, pa.string(), nullable=False) for k in keys)])


# Hive partition keys, in path order, per shard kind.
TOKEN_PARTITIONS = ("corpus", "split", "lang")
BITEXT_PARTITIONS = ("src_lang", "tgt_lang")


def column(arrow_type: pa.DataType, *, nullable: bool = False, default=dataclasses.MISSING):
    """A row field and the Parquet column it becomes (type, nullability)."""
    meta = {"arrow": arrow_type, "nullable": nullable}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRow:
    """One token shard row (one utterance), the single definition of its columns:
    :data:`TOKEN_FILE_SCHEMA` is derived from these fields, in this order, and
    both row builders (``tokenizer.assign.token_row``, ``testing.synthetic_shards``)
    make their rows with it. The partition keys (``corpus``, ``split``,
    ``lang``) come last: they are folder names, not file columns. A new
    column is one field here (nullable with a default, so older builders
    keep working) and a schema version bump."""

    id: str = column(pa.string())
    sentence_id: str | None = column(pa.string(), nullable=True)
    speaker: str | None = column(pa.string(), nullable=True)
    source_lang: str | None = column(pa.string(), nullable=True)
    modality: str = column(pa.string())
    audio: str = column(pa.string())
    offset_s: float | None = column(pa.float32(), nullable=True)
    duration_s: float = column(pa.float32())
    n_frames: int = column(pa.int32())
    tokens: object = column(pa.list_(pa.int16()))  # int16 ids (numpy array or list)
    durations: object = column(pa.list_(pa.int16()), nullable=True)  # run lengths, or None
    text: str = column(pa.string())
    translation: str | None = column(pa.string(), nullable=True)
    tgt_lang: str | None = column(pa.string(), nullable=True)
    codebook: str = column(pa.string())
    corpus: str = column(pa.string())
    split: str = column(pa.string())
    lang: str = column(pa.string())

    def as_dict(self) -> dict:
        """The row as the shard writers take it (no copy of the token arrays)."""
        return {name: getattr(self, name) for name in TOKEN_COLUMNS}


TOKEN_COLUMNS = tuple(f.name for f in dataclasses.fields(TokenRow))
TOKEN_FILE_SCHEMA = pa.schema(
    [
        pa.field(f.name, f.metadata["arrow"], nullable=f.metadata["nullable"])
        for f in dataclasses.fields(TokenRow)
        if f.name not in TOKEN_PARTITIONS
    ]
)
TOKEN_SCHEMA = with_partitions(TOKEN_FILE_SCHEMA, TOKEN_PARTITIONS)

BITEXT_FILE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("src_text", pa.string(), nullable=False),
        pa.field("tgt_text", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)
BITEXT_SCHEMA = with_partitions(BITEXT_FILE_SCHEMA, BITEXT_PARTITIONS)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
    ]
)

# ``speechtok embed`` output: one row per embedded utterance or text, in input order.
EMBEDDING_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("text", pa.string()),  # the transcript or text (null when unknown)
        pa.field("embedding", pa.list_(pa.float32()), nullable=False),
    ]
)

# Sub-folders of a job's output folder.
TOKENS_DIR = "tokens"
BITEXT_DIR = "bitext"
REJECTS_DIR = "rejects"
EMBEDDINGS_DIR = "embeddings"
INDEX_FILE = "_index.json"
CARD_FILE = "README.md"

# Keys of the Parquet file metadata of token shards (values are strings).
META_ENCODER = b"speechtok.encoder"
META_LAYER = b"speechtok.layer"
META_FRAME_RATE = b"speechtok.frame_rate"
META_CODEBOOK_SHA256 = b"speechtok.codebook_sha256"
META_VERSION = b"speechtok.version"
# Every partitioned shard: its partition, e.g. ``corpus=fleurs/split=test/lang=fr``.
META_PARTITION = b"speechtok.partition"


def partition_path(values: dict[str, str], keys: tuple[str, ...]) -> str:
    """``corpus=fleurs/split=test/lang=fr`` for the given partition values."""
    for k in keys:
        v = str(values[k])
        if not v or "/" in v or "=" in v:
            raise ValueError(f"bad partition value {k}={v!r}")
    return "/".join(f"{k}={values[k]}" for k in keys)


def shard_name(index: int, ext: str = "parquet") -> str:
    """Deterministic, zero-padded shard file names: ``part-00003.parquet``."""
    return f"part-{index:05d}.{ext}"


def validate(table: pa.Table, schema: pa.Schema) -> None:
    """Raise ``ValueError`` naming the first column that does not match."""
    names = table.schema.names
    if names != schema.names:
        raise ValueError(f"columns {names} != expected {schema.names}")
    for field in schema:
        got = table.schema.field(field.name)
        if got.type != field.type:
            raise ValueError(f"column {field.name!r} has type {got.type}, expected {field.type}")
        if not field.nullable and table.column(field.name).null_count:
            raise ValueError(f"column {field.name!r} has nulls")
