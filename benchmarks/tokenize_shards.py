"""The shard-writing part of ``benchmarks.tokenize`` (``--parts shards``):
the same token table written by raw ``pq.write_table`` and by
``datastore.shards.write_table`` (same zstd; ours adds file metadata, the
sha256 and the atomic temp + fsync + rename), and the job's write path
(``WriteShards``' bucket writer: sort, ``table_from_rows``, write) against
``pa.Table.from_pylist`` + ``pq.write_table`` from the same row dicts.
In this process, best of ``--shard-repeats`` per peer, peers in turns.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks._harness import MB, target

TARGETS = {"write_vs_pyarrow": 0.8}  # shard writing >= 0.8 x raw pyarrow
K = 1024  # token values drawn from a codebook of this size
PARTITION = "tokens/corpus=fleurs/split=train/lang=fr"  # the rows' (shards hold one partition)


def token_rows(n: int, seed: int = 0) -> list[dict]:
    """Row dicts shaped like the job's (int16 token arrays of 2-20 s at 50 Hz, k=1024),
    all of one partition (``PARTITION``): a shard holds one partition's rows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lang = "fr"
    rows = []
    for i in range(n):
        n_frames = int(rng.integers(100, 1000))
        rows.append(
            {
                "id": f"{lang}/{i:08d}",
                "sentence_id": str(i // 3),
                "speaker": f"f{i % 5}",
                "corpus": "fleurs",
                "split": "train",
                "lang": lang,
                "source_lang": f"{lang}_xx",
                "modality": "speech",
                "audio": f"/data/fleurs/{lang}/audio/train/{i:08d}.wav",
                "duration_s": n_frames / 50.0,
                "n_frames": n_frames,
                "tokens": rng.integers(0, K, n_frames).astype(np.int16),
                "durations": None,
                "text": "Tous les êtres humains naissent libres et égaux en dignité. " * 2,
                "translation": None,
                "tgt_lang": None,
                "codebook": "whisper-base-L3-k1024-00000000",
            }
        )
    return rows


def bench_shards(args, work: Path) -> tuple[list[dict], list[dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datastore import schema, shards
    from pipelines.common import WriteShards

    rows = token_rows(args.shard_rows)
    config = shards.WriteConfig()
    table = shards.table_from_rows(sorted(rows, key=lambda r: r["id"]), schema.TOKENS_DIR)
    metadata = {schema.META_ENCODER: "whisper-base", schema.META_VERSION: schema.SCHEMA_VERSION}
    out = work / "shards"
    out.mkdir(parents=True, exist_ok=True)
    writer = WriteShards(str(out), schema.TOKENS_DIR, config, metadata)

    def raw_table() -> None:
        pq.write_table(table, out / "raw.parquet", compression=config.compression)

    def ours_table() -> None:
        shards.write_table(table, str(out / "ours.parquet"), config, metadata)

    def raw_rows() -> None:
        t = pa.Table.from_pylist(rows, schema=schema.TOKEN_SCHEMA)
        pq.write_table(t, out / "raw-rows.parquet", compression=config.compression)

    def job_path() -> None:
        writer._write_bucket(((PARTITION, 0), rows))  # the job's own per-bucket writer

    peers = {
        "pyarrow.write_table": raw_table,
        "shards.write_table": ours_table,
        "pyarrow from rows": raw_rows,
        "job write path": job_path,
    }
    best = dict.fromkeys(peers, float("inf"))
    for _ in range(args.shard_repeats):
        for name, fn in peers.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    size = (out / "raw.parquet").stat().st_size
    table_mb = table.nbytes / MB
    result = []
    for name, seconds in best.items():
        result.append(
            {
                "row": name,
                "rows": len(rows),
                "wall_s": seconds,
                "rows_per_s": len(rows) / seconds,
                "table_mb_per_s": table_mb / seconds,
            }
        )
    by = {r["row"]: r for r in result}
    for r in result:
        r["vs_pyarrow_table"] = best["pyarrow.write_table"] / r["wall_s"]
    checks = [
        target(
            "shards.write_table / pyarrow.write_table (same table)",
            best["pyarrow.write_table"] / best["shards.write_table"],
            TARGETS["write_vs_pyarrow"],
        ),
        target(
            "job write path / pyarrow from the same row dicts",
            best["pyarrow from rows"] / best["job write path"],
            TARGETS["write_vs_pyarrow"],
        ),
    ]
    by["pyarrow.write_table"]["parquet_mb"] = size / MB
    return result, checks
