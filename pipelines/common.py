"""Beam plumbing shared by the jobs: options, running, counters, sharded writes, the index.

The jobs differ in what they compute; they end the same way: rows are
written as hive-partitioned, hash-bucketed, id-sorted shards (atomic,
deterministic names), rejects likewise, and ``_index.json`` is written last
from side inputs, so it exists only once every shard does and it fails the
job if ``input != accepted + rejected``; the dataset card (``README.md``,
:mod:`tokenizer.card`) follows the index.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from tokenizer import card, shards
from tokenizer.records import Reject

NAMESPACE = "speechtok"
DEFAULT_RUNNER = "FnApiRunner"  # Beam's embedded runner, named directly (DirectRunner
# would first try to download the Prism runner binary, which fails offline).
LOCAL_RUNNERS = {"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}
log = logging.getLogger("speechtok")


def pipeline_options(beam_args: Iterable[str]) -> PipelineOptions:
    """Beam options from the flags the CLI did not consume; embedded runner by default.

    Raises ``beam_options.BeamOptionError`` (a usage error) on an unknown flag or bad value.
    """
    from pipelines import beam_options

    args = list(beam_args)
    beam_options.check(args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args += ["--runner", DEFAULT_RUNNER]
    return PipelineOptions(args)


def runs_locally(options: PipelineOptions) -> bool:
    """True for runners whose workers run on this machine (the embedded
    runner in any mode, the portable runner with LOOPBACK workers)."""
    runner = options.view_as(StandardOptions).runner or DEFAULT_RUNNER
    if runner in LOCAL_RUNNERS:
        return True
    from apache_beam.options.pipeline_options import PortableOptions

    return runner == "PortableRunner" and (
        options.view_as(PortableOptions).environment_type == "LOOPBACK"
    )


def run_pipeline(pipeline: beam.Pipeline, options: PipelineOptions, job: str):
    """Run and wait, showing progress (:mod:`pipelines.progress`); the result."""
    from pipelines.progress import Progress

    with Progress(job, local=runs_locally(options)) as progress:
        result = pipeline.run()
        progress.follow(result)
        result.wait_until_finish()
    return result


def counter(name: str):
    return Metrics.counter(NAMESPACE, name)


def counters(result) -> dict[str, int]:
    """Our counters from a finished pipeline (committed where the runner has them)."""
    out = {}
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except Exception:  # some runners do not report metrics
        return out
    for c in query["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(c.result or 0)
    return out


def route_rejects(items, main: str = "ok"):
    """Split a stream of rows/records and :class:`Reject` into tagged outputs."""

    def _route(item):
        if isinstance(item, Reject):
            counter(f"rejected.{item.reason}").inc()
            yield beam.pvalue.TaggedOutput("rejects", item)
        else:
            yield item

    return items | "RouteRejects" >> beam.FlatMap(_route).with_outputs("rejects", main=main)


def stable_bucket(key: str, n_buckets: int) -> int:
    """A bucket that is the same in every process (``hash()`` is salted per process)."""
    return zlib.crc32(key.encode("utf-8")) % n_buckets


class WriteShards(beam.PTransform):
    """Row dicts -> Parquet shards; outputs one ``ShardInfo`` per file written.

    Rows are grouped per hive partition, hashed by id into
    ``ceil(rows / rows_per_shard)`` buckets, sorted by id, and written as
    ``part-{offset + bucket:05d}.parquet``: the same rows give the same files
    on any runner. ``first_index`` (partition dir -> int) offsets the names
    when appending to an existing output (``--skip-existing``).
    """

    def __init__(
        self,
        out_dir: str,
        kind: str,
        config: shards.WriteConfig,
        metadata: dict | None = None,
        first_index: dict[str, int] | None = None,
    ):
        super().__init__()
        self.out_dir, self.kind, self.config = out_dir, kind, config
        self.metadata, self.first_index = metadata or {}, first_index or {}

    def _partition_dir(self, row: dict) -> str:
        _, keys = shards.KINDS[self.kind]
        return shards.partition_dir(self.kind, {k: row[k] for k in keys})

    def expand(self, rows):
        keyed = rows | "KeyByPartition" >> beam.Map(lambda r: (self._partition_dir(r), r))
        sizes = (
            keyed
            | "One" >> beam.Map(lambda kv: (kv[0], 1))
            | "RowsPerPartition" >> beam.CombinePerKey(sum)
        )
        per_shard = self.config.rows_per_shard

        def to_bucket(kv, sizes):
            n_buckets = max(1, math.ceil(sizes[kv[0]] / per_shard))
            return (kv[0], stable_bucket(kv[1]["id"], n_buckets)), kv[1]

        return (
            keyed
            | "AssignBucket" >> beam.Map(to_bucket, sizes=beam.pvalue.AsDict(sizes))
            | "GroupBucket" >> beam.GroupByKey()
            | "WriteBucket" >> beam.Map(self._write_bucket)
        )

    def _write_bucket(self, key_rows) -> shards.ShardInfo:
        start = time.perf_counter()
        (pdir, bucket), rows = key_rows
        rows = sorted(rows, key=lambda r: r["id"])
        info = shards.write_shard(
            rows,
            out_dir=self.out_dir,
            kind=self.kind,
            index=self.first_index.get(pdir, 0) + bucket,
            config=self.config,
            metadata=self.metadata,
        )
        counter(f"written.{self.kind}").inc(len(rows))
        counter("time.write_ms").inc(int((time.perf_counter() - start) * 1000))
        return info


class WriteIndex(beam.PTransform):
    """Write ``_index.json`` once everything else is written (side inputs).

    Inputs: ``counts`` maps ``"input" | "accepted" | "rejected"`` to a PCollection of
    the elements to count; ``shard_infos`` are the ``ShardInfo`` outputs of
    every ``WriteShards``; ``rejects`` the Reject records (for the per-reason
    tally); optional ``after``: outputs the index must wait for. The write fails the job when the counts do not reconcile.
    """

    def __init__(
        self,
        out_dir: str,
        job: str,
        config: dict,
        extra: dict | None = None,
        previous: shards.Index | None = None,
    ):
        super().__init__()
        self.out_dir, self.job, self.config, self.extra = out_dir, job, config, extra or {}
        self.previous = previous  # an earlier run's index this run appends to

    def expand(self, inputs):
        counted = [
            pc | f"Count_{name}" >> beam.Map(lambda _, n=name: (n, 1))
            for name, pc in inputs["counts"].items()
        ]
        reasons = inputs["rejects"] | "ReasonKey" >> beam.Map(lambda r: (f"reason:{r.reason}", 1))
        tallies = (
            (*counted, reasons)
            | "FlattenTallies" >> beam.Flatten()
            | "Tally" >> beam.CombinePerKey(sum)
        )
        infos = inputs["shard_infos"] | "FlattenShards" >> beam.Flatten()
        pipeline = infos.pipeline
        # "after": outputs that must exist before the index (e.g. a saved codebook).
        after = inputs.get("after") or (pipeline | "NothingElse" >> beam.Create([]))
        return (
            pipeline
            | "IndexTrigger" >> beam.Create([None])
            | "WriteIndexFile"
            >> beam.Map(
                self._write,
                tallies=beam.pvalue.AsDict(tallies),
                infos=beam.pvalue.AsList(infos),
                after=beam.pvalue.AsList(after),
            )
        )

    def _write(self, _, tallies, infos, after) -> dict:
        counts = {k: int(tallies.get(k, 0)) for k in ("input", "accepted", "rejected")}
        reasons = {
            k.split(":", 1)[1]: v for k, v in sorted(tallies.items()) if k.startswith("reason:")
        }
        new_shards = shards.shard_dicts(infos)
        extra = dict(self.extra)
        if self.previous is not None:  # an append run: the index covers every run
            prev = self.previous
            extra["runs"] = [*prev.extra.get("runs", [prev.counts]), counts]
            counts = {k: prev.counts[k] + counts[k] for k in counts}
            for reason, n in prev.rejects_by_reason.items():
                reasons[reason] = reasons.get(reason, 0) + n
            new_paths = {s["path"] for s in new_shards}
            kept = [s for s in prev.shards if s["path"] not in new_paths]
            new_shards = sorted(kept + new_shards, key=lambda s: s["path"])
        index = shards.Index(
            job=self.job,
            config=self.config,
            counts=counts,
            rejects_by_reason=reasons,
            shards=new_shards,
            extra=extra,
        )
        index.write(self.out_dir)  # raises (fails the job) when counts do not reconcile
        card.write_card(self.out_dir, index)  # README.md, from the index: after it
        return counts


def reject_rows(rejects):
    return rejects | "RejectRows" >> beam.Map(lambda r: r.as_row())
