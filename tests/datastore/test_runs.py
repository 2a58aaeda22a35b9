"""Run files -> shards (datastore.runs): the files are the ones the rows give
written at once (hash buckets, id order), byte for byte, whatever the run
boundaries, the arrival order and the number of writers."""

from __future__ import annotations

import math
import random
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from datastore import outfolder, runs, schema, shards, storage
from tests.datastore.test_shards import token_row

META = {schema.META_ENCODER: "mfcc", schema.META_VERSION: schema.SCHEMA_VERSION}


def reject_row(i: int, reason: str = "decode_error") -> dict:
    return {"id": f"r{i % 5}", "source": f"/a/{i}.wav", "stage": "decode", "reason": reason,
            "detail": f"detail {i}"}  # fmt: skip


def bucket_files(rows: list[dict], out, kind: str, config: shards.WriteConfig, first: int = 0):
    """What the jobs wrote before run files: every row of a partition grouped
    in memory, hash-bucketed by id, sorted, written with write_shard."""
    n_buckets = max(1, math.ceil(len(rows) / config.rows_per_shard))
    buckets: dict[int, list[dict]] = {}
    for row in rows:
        buckets.setdefault(zlib.crc32(row["id"].encode()) % n_buckets, []).append(row)
    keys = runs.SORT_KEYS[kind]
    return [
        shards.write_shard(
            sorted(b, key=lambda r: tuple(r[k] for k in keys)),
            out_dir=str(out),
            kind=kind,
            index=first + i,
            config=config,
            metadata=META if kind == schema.TOKENS_DIR else None,
        )
        for i, b in sorted(buckets.items())
    ]


def through_runs(rows, out, kind, config, *, max_rows, writers=1, first=0, seed=0):
    rows = rows[:]
    random.Random(seed).shuffle(rows)
    written = []
    for w in range(writers):  # each writer (a worker's bundle) takes every writers-th row
        writer = runs.RunWriter(str(out), kind, max_rows=max_rows)
        for row in rows[w::writers]:
            written += writer.add(row)
        written += writer.flush()
    infos = []
    for folder, group in sorted(runs.group_runs(written).items()):
        infos += runs.finalise(
            str(out),
            kind,
            folder,
            group,
            config=config,
            first_index=first,
            metadata=META if kind == schema.TOKENS_DIR else None,
        )
    return written, infos


@pytest.mark.parametrize("n_rows,per_shard", [(1, 50), (37, 50), (120, 25), (200, 7)])
def test_runs_give_the_files_rows_written_at_once_give(tmp_path, n_rows, per_shard):
    rows = [token_row(i) for i in range(n_rows)]
    config = shards.WriteConfig(rows_per_shard=per_shard, row_group_rows=8)
    expected = {i.path: i.sha256 for i in bucket_files(rows, tmp_path / "a", "tokens", config)}
    for max_rows, writers, seed in [(1, 1, 0), (5, 3, 1), (1000, 2, 2)]:
        out = tmp_path / f"b{max_rows}-{writers}"
        _, infos = through_runs(
            rows, out, "tokens", config, max_rows=max_rows, writers=writers, seed=seed
        )
        assert {i.path: i.sha256 for i in infos} == expected
        assert sum(i.rows for i in infos) == n_rows


def test_partitions_reasons_and_first_index(tmp_path):
    rows = [token_row(i, lang) for i in range(30) for lang in ("fr", "de")]
    config = shards.WriteConfig(rows_per_shard=12)
    written, infos = through_runs(rows, tmp_path, "tokens", config, max_rows=7, first=3)
    folders = {r.folder for r in written}
    assert folders == {f"tokens/corpus=fleurs/split=test/lang={lang}" for lang in ("fr", "de")}
    assert sorted({i.path.rsplit("-", 1)[1] for i in infos}) == [
        "00003.parquet", "00004.parquet", "00005.parquet",
    ]  # fmt: skip
    table = pq.read_table(tmp_path / infos[0].path)
    assert (
        table.schema.metadata[schema.META_PARTITION]
        == infos[0].path.split("/", 1)[1].rsplit("/", 1)[0].encode()
    )
    # rejects: reasons counted per run; ties on id ordered by the other columns
    rejects = [reject_row(i, "decode_error" if i % 3 else "missing_file") for i in range(40)]
    written, infos = through_runs(
        rejects, tmp_path / "r", "rejects", shards.WriteConfig(rows_per_shard=9), max_rows=6
    )
    tally = {}
    for run in written:
        for reason, n in run.reasons:
            tally[reason] = tally.get(reason, 0) + n
    assert tally == {"decode_error": 26, "missing_file": 14}
    expected = bucket_files(
        rejects, tmp_path / "r2", "rejects", shards.WriteConfig(rows_per_shard=9)
    )
    assert {i.path: i.sha256 for i in infos} == {i.path: i.sha256 for i in expected}


def test_writer_holds_at_most_max_rows(tmp_path):
    writer = runs.RunWriter(str(tmp_path), "tokens", max_rows=4)
    sizes = []
    for i in range(10):
        for run in writer.add(token_row(i, ("fr", "de")[i % 2])):
            sizes.append(run.rows)
        assert writer._n_held < 4
    sizes += [r.rows for r in writer.flush()]
    assert sum(sizes) == 10 and max(sizes) <= 4
    files = storage.list_files(runs.runs_dir(str(tmp_path)), ".arrow")
    assert len(files) == len(sizes)
    outfolder.remove_runs(str(tmp_path))
    assert not storage.exists(runs.runs_dir(str(tmp_path)))


def test_bucket_of_is_crc32():
    ids = ["a", "fr/0001", "ü-é", ""]
    assert runs.bucket_of(ids, 7).tolist() == [zlib.crc32(i.encode()) % 7 for i in ids]
    assert runs.bucket_of([], 3).dtype == np.int64
