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

TOKEN_FILE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("sentence_id", pa.string()),
        pa.field("speaker", pa.string()),
        pa.field("source_lang", pa.string()),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("audio", pa.string(), nullable=False),
        pa.field("offset_s", pa.float32()),
        pa.field("duration_s", pa.float32(), nullable=False),
        pa.field("n_frames", pa.int32(), nullable=False),
        pa.field("tokens", pa.list_(pa.int16()), nullable=False),
        pa.field("durations", pa.list_(pa.int16())),
        pa.field("text", pa.string(), nullable=False),
        pa.field("translation", pa.string()),
        pa.field("tgt_lang", pa.string()),
        pa.field("codebook", pa.string(), nullable=False),
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
