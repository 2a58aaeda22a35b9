"""Shards from a stream of rows, with memory bounded by one run, not by the rows.

Why: a job must never hold its rows anywhere as a whole. Beam's embedded
runner keeps everything that crosses a stage boundary (a GroupByKey, a side
input) in its own memory, so shard writing cannot group rows there. Rows are
instead written as they come (:class:`RunWriter`): buffered up to
``max_rows`` in all, then written as *run files* (Arrow IPC, one partition
each) under ``OUT/_runs/``; only a :class:`RunFile` record per file travels on.
Once every run exists, :func:`finalise` turns one partition's runs into its
shards, one bucket in memory at a time.

The shards are the ones the rows would give written at once: a partition of
``n`` rows has ``ceil(n / rows_per_shard)`` buckets, a row goes to bucket
``crc32(id) % buckets`` (:func:`bucket_of`, the same in every process), each
bucket is sorted (:data:`SORT_KEYS`) and written as
``part-{first_index + bucket:05d}.parquet``. Run boundaries, worker count and
arrival order change nothing in the files.

Example::

    writer = RunWriter("out", "tokens")
    runs = [run for row in rows for run in writer.add(row)] + writer.flush()
    for folder, group in group_runs(runs).items():
        infos = finalise("out", "tokens", folder, group, config=WriteConfig())
    outfolder.remove_runs("out")   # once the index is written
"""

from __future__ import annotations

import math
import os
import tempfile
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datastore import schema, storage
from datastore.shards import KINDS, ShardInfo, WriteConfig, partition_dir, table_from_rows
from datastore.shards import write_stored as _write_stored

RUNS_DIR = "_runs"
# Rows held before a run is written (all partitions together). Why 4,096: a few
# MB of token rows (~1 KB each), and a 2 M-row job writes ~500 runs.
RUN_ROWS = 4096
# The order inside a shard: by id, ties (rejects of one id) by the rest, so the
# files do not depend on the order rows arrived in.
SORT_KEYS = {
    schema.TOKENS_DIR: ("id", "audio"),
    schema.REJECTS_DIR: ("id", "source", "stage", "reason", "detail"),
    schema.BITEXT_DIR: ("id",),
    schema.EMBEDDINGS_DIR: ("id",),
}
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


class RunFile(NamedTuple):
    """One run: ``rows`` rows of partition ``folder`` (e.g.
    ``tokens/corpus=c/split=s/lang=fr``) in the file ``uri``; ``reasons``:
    rows per reject reason (rejects only)."""

    kind: str
    folder: str
    uri: str
    rows: int
    reasons: tuple[tuple[str, int], ...] = ()


def runs_dir(out_dir: str) -> str:
    return storage.join(out_dir, RUNS_DIR)


class RunWriter:
    """Rows of one ``kind`` -> run files under ``OUT/_runs/``, at most
    ``max_rows`` rows held in memory (:meth:`add` returns the runs it wrote).

    Held rows are kept columnar: every :data:`BATCH_ROWS` rows of a partition
    become an Arrow batch (a token row as a Python dict with its arrays is
    ~10x its Arrow size).
    """

    BATCH_ROWS = 256

    def __init__(self, out_dir: str, kind: str, max_rows: int = RUN_ROWS):
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.out_dir, self.kind, self.max_rows = out_dir, kind, max_rows
        self._keys = KINDS[kind][1]
        self._rows: dict[str, list[dict]] = {}  # per partition, not yet columnar
        self._tables: dict[str, list[pa.Table]] = {}
        self._reasons: dict[str, Counter] = {}
        self._n_held = 0

    def add(self, row: dict) -> list[RunFile]:
        folder = partition_dir(self.kind, {k: row[k] for k in self._keys})
        rows = self._rows.setdefault(folder, [])
        rows.append(row)
        if self.kind == schema.REJECTS_DIR:
            self._reasons.setdefault(folder, Counter())[row["reason"]] += 1
        if len(rows) >= self.BATCH_ROWS:
            self._columnar(folder)
        self._n_held += 1
        return self.flush() if self._n_held >= self.max_rows else []

    def _columnar(self, folder: str) -> None:
        rows = self._rows.pop(folder, None)
        if rows:
            self._tables.setdefault(folder, []).append(table_from_rows(rows, self.kind))

    def flush(self) -> list[RunFile]:
        """Write every held row; the runs written (one per partition held)."""
        for folder in list(self._rows):
            self._columnar(folder)
        tables, self._tables, self._n_held = self._tables, {}, 0
        reasons, self._reasons = self._reasons, {}
        return [
            self._write(folder, pa.concat_tables(parts), reasons.get(folder))
            for folder, parts in sorted(tables.items())
        ]

    def _write(self, folder: str, table: pa.Table, reasons: Counter | None) -> RunFile:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as stream:
            stream.write_table(table)
        uri = storage.join(runs_dir(self.out_dir), folder, f"run-{uuid.uuid4().hex}.arrow")
        storage.makedirs(storage.dirname(uri))
        storage.write_bytes(uri, sink.getvalue().to_pybytes())
        return RunFile(
            self.kind, folder, uri, table.num_rows, tuple(sorted((reasons or {}).items()))
        )


def read_run(run: RunFile) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(storage.read_bytes(run.uri))) as reader:
        return reader.read_all()


def bucket_of(ids: Sequence[str], n_buckets: int) -> np.ndarray:
    """Each id's bucket among ``n_buckets``: ``crc32(id) % n_buckets`` (salted
    ``hash()`` would differ between worker processes)."""
    crcs = np.fromiter((zlib.crc32(i.encode("utf-8")) for i in ids), np.int64, len(ids))
    return crcs % n_buckets


def group_runs(runs: Iterable[RunFile]) -> dict[str, list[RunFile]]:
    """Runs by partition folder (what one :func:`finalise` call takes)."""
    out: dict[str, list[RunFile]] = {}
    for run in runs:
        out.setdefault(run.folder, []).append(run)
    return out


def finalise(
    out_dir: str,
    kind: str,
    folder: str,
    runs: Sequence[RunFile],
    *,
    config: WriteConfig,
    first_index: int = 0,
    metadata: dict | None = None,
) -> list[ShardInfo]:
    """One partition's runs -> its shards (see the module docstring).

    Memory: one run at a time, then one bucket's sort order (its sorted rows
    are taken one row group at a time). The runs are first split by bucket
    into local temporary files (one pass), then each bucket is read back
    (memory-mapped), sorted and written.
    """
    n_rows = sum(r.rows for r in runs)
    if n_rows == 0:
        return []
    n_buckets = max(1, math.ceil(n_rows / config.rows_per_shard))
    ordered = sorted(runs, key=lambda r: r.uri)  # the files do not depend on it; logs do

    def write(bucket: int, table: pa.Table) -> ShardInfo:
        keys = [(k, "ascending") for k in SORT_KEYS[kind]]
        return _write_stored(
            table,
            out_dir=out_dir,
            kind=kind,
            folder=folder,
            index=first_index + bucket,
            config=config,
            metadata=metadata,
            order=pc.sort_indices(table, sort_keys=keys),  # taken a row group at a time
        )

    # Even one bucket goes through a local file: read back memory-mapped, its
    # rows are page cache the kernel can drop, not heap (a 50,000-row shard
    # held whole was the growth left on Flink's LOOPBACK workers).
    with tempfile.TemporaryDirectory(prefix="speechtok-buckets-") as tmp:
        paths = _spill_by_bucket(ordered, n_buckets, tmp)
        infos = []
        for bucket, path in enumerate(paths):
            if os.path.exists(path):
                with pa.ipc.open_stream(pa.memory_map(path)) as reader:
                    infos.append(write(bucket, reader.read_all()))
            pa.default_memory_pool().release_unused()  # a worker runs many stages: give it back
        return infos


def _spill_by_bucket(runs: Sequence[RunFile], n_buckets: int, tmp: str) -> list[str]:
    """Every run's rows appended to its bucket's local IPC file; the files' paths."""
    paths = [os.path.join(tmp, f"bucket-{b:05d}.arrow") for b in range(n_buckets)]
    writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
    try:
        for run in runs:
            table = read_run(run)
            if n_buckets == 1:  # every row is bucket 0: no ids to hash, no reorder
                bounds = np.array([0, table.num_rows])
            else:
                buckets = bucket_of(table.column("id").to_pylist(), n_buckets)
                order = np.argsort(buckets, kind="stable")
                table, buckets = table.take(order), buckets[order]
                bounds = np.searchsorted(buckets, np.arange(n_buckets + 1))
            for b in range(n_buckets):
                lo, hi = int(bounds[b]), int(bounds[b + 1])
                if hi > lo:
                    if b not in writers:
                        writers[b] = pa.ipc.new_stream(paths[b], table.schema)
                    writers[b].write_table(table.slice(lo, hi - lo))
    finally:
        for w in writers.values():
            w.close()
    return paths
