"""The shard schemas, defined once: token shards, bitext shards, rejects.

Writers build tables against these schemas and readers (the trainer,
downstream users) rely on them column by column. Layouts are hive-style so
``pyarrow.dataset(..., partitioning="hive")`` and Hugging Face ``datasets``
read them as they are; partition keys are also stored as columns so a single
file is self-describing.
"""

from __future__ import annotations

import pyarrow as pa

# 2: ``offset_s`` (where a segment starts in its recording; null for a whole file).
SCHEMA_VERSION = "2"

TOKEN_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("sentence_id", pa.string()),
        pa.field("speaker", pa.string()),
        pa.field("corpus", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
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

BITEXT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("src_lang", pa.string(), nullable=False),
        pa.field("tgt_lang", pa.string(), nullable=False),
        pa.field("src_text", pa.string(), nullable=False),
        pa.field("tgt_text", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
    ]
)

# Hive partition keys, in path order, per shard kind.
TOKEN_PARTITIONS = ("corpus", "split", "lang")
BITEXT_PARTITIONS = ("src_lang", "tgt_lang")

# Sub-folders of a job's output folder.
TOKENS_DIR = "tokens"
BITEXT_DIR = "bitext"
REJECTS_DIR = "rejects"
INDEX_FILE = "_index.json"

# Keys of the Parquet file metadata of token shards (values are strings).
META_ENCODER = b"speechtok.encoder"
META_LAYER = b"speechtok.layer"
META_FRAME_RATE = b"speechtok.frame_rate"
META_CODEBOOK_SHA256 = b"speechtok.codebook_sha256"
META_VERSION = b"speechtok.version"


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
