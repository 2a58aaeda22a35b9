"""Beam plumbing shared by the jobs: options, running, counters, sharded writes, the index.

The jobs differ in what they compute; they end the same way: rows are
written as they come into run files (:class:`WriteRuns`), each partition's
runs then become hive-partitioned, hash-bucketed, id-sorted shards (atomic,
deterministic names; :class:`FinaliseShards`), rejects likewise, and
``_index.json`` is written last from small side inputs (tallies, shard
infos), so it exists only once every shard does and it fails the job if
``input != accepted + rejected``; the dataset card (``README.md``,
:mod:`datastore.card`) follows the index.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms.window import GlobalWindows

from datastore import card, shards
from datastore import schema as shards_schema
from datastore.card import JobCard
from pipelines.metrics import NAMESPACE, counter, counters  # noqa: F401 (the jobs' names)

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


def _closed_stream(exc: BaseException | None) -> bool:
    """A gRPC stream the runner closed (``CANCELLED``, or ``UNKNOWN`` on the
    state channel): how a portable runner (Flink, Spark) ends a LOOPBACK
    worker's streams after each stage."""
    code = getattr(exc, "code", None)
    return callable(code) and getattr(code(), "name", "") in ("CANCELLED", "UNKNOWN")


_quieted: list[bool] = []
# Beam's SDK-worker threads that read those streams.
_STREAM_THREADS = ("read_state", "read_grpc_client_inputs", "run_worker")


class _HideClosedStreams(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _closed_stream(record.exc_info[1]))


def quiet_portable_shutdown() -> None:
    """Hide the tracebacks Beam's SDK worker prints when a portable runner
    closes its streams at the end of each stage ("Multiplexer hanging up",
    "Application error processing RPC"; logged and raised in the worker's
    stream threads after the work is done). A job that fails still fails (the
    runner reports it); any other thread error still shows. Skipped under ``-v``."""
    if _quieted or logging.getLogger("apache_beam").getEffectiveLevel() <= logging.DEBUG:
        return
    _quieted.append(True)  # once per process
    logging.getLogger("apache_beam.runners.worker.data_plane").addFilter(_HideClosedStreams())
    previous = threading.excepthook

    def hook(args):
        name = getattr(args.thread, "name", "") or ""
        if not (_closed_stream(args.exc_value) and name.startswith(_STREAM_THREADS)):
            previous(args)

    threading.excepthook = hook


def run_pipeline(pipeline: beam.Pipeline, options: PipelineOptions, job: str):
    """Run and wait, showing progress (:mod:`pipelines.progress`); the result."""
    from pipelines.progress import Progress

    if options.view_as(StandardOptions).runner == "PortableRunner":
        quiet_portable_shutdown()

    with Progress(job, local=runs_locally(options)) as progress:
        result = pipeline.run()
        progress.follow(result)
        result.wait_until_finish()
    return result


class WriteRuns(beam.PTransform):
    """Rows of one kind -> :class:`~datastore.runs.RunFile` records: rows are
    written to run files under ``OUT/_runs/`` as they come, in the stage that
    makes them (no row crosses a stage boundary; see :mod:`datastore.runs`)."""

    def __init__(self, out_dir: str, kind: str):
        super().__init__()
        self.out_dir, self.kind = out_dir, kind

    def expand(self, rows):
        return rows | "WriteRunFiles" >> beam.ParDo(_WriteRunFiles(self.out_dir, self.kind))


class _WriteRunFiles(beam.DoFn):
    def __init__(self, out_dir: str, kind: str):
        self.out_dir, self.kind = out_dir, kind

    def start_bundle(self):
        from datastore.runs import RunWriter

        self._writer = RunWriter(self.out_dir, self.kind)

    def process(self, row: dict):
        start = time.perf_counter()
        runs = self._writer.add(row)
        if runs:
            counter("time.write_ms").inc(int((time.perf_counter() - start) * 1000))
        yield from runs

    def finish_bundle(self):
        start = time.perf_counter()
        runs = self._writer.flush()
        counter("time.write_ms").inc(int((time.perf_counter() - start) * 1000))
        for run in runs:
            yield GlobalWindows.windowed_value(run)


class WriteRejectRuns(beam.PTransform):
    """Reject records -> run files of reject rows (:class:`WriteRuns`)."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir

    def expand(self, rejects):
        return (
            rejects
            | "RejectRows" >> beam.Map(lambda r: r.as_row())
            | "Runs" >> WriteRuns(self.out_dir, shards_schema.REJECTS_DIR)
        )


class FinaliseShards(beam.PTransform):
    """Run files (any kinds) -> one ``ShardInfo`` per shard written.

    Each partition's runs become its shards (:func:`datastore.runs.finalise`):
    hash-bucketed, id-sorted ``part-{first_index + bucket:05d}.parquet``, the
    same files on any runner. Only run-file records are grouped.
    ``metadata``: kind -> the Parquet key-value metadata of its shards;
    ``first_index``: partition folder -> first shard number (appends).
    """

    def __init__(
        self,
        out_dir: str,
        config: shards.WriteConfig,
        metadata: dict[str, dict] | None = None,
        first_index: dict[str, int] | None = None,
    ):
        super().__init__()
        self.out_dir, self.config = out_dir, config
        self.metadata, self.first_index = metadata or {}, first_index or {}

    def expand(self, runs):
        return (
            runs
            | "ByPartition" >> beam.Map(lambda run: (run.folder, run))
            | "GroupRuns" >> beam.GroupByKey()
            | "Finalise" >> beam.FlatMap(self._finalise)
        )

    def _finalise(self, folder_runs) -> list[shards.ShardInfo]:
        from datastore.runs import finalise

        start = time.perf_counter()
        folder, runs = folder_runs
        runs = list(runs)
        kind = runs[0].kind
        infos = finalise(
            self.out_dir,
            kind,
            folder,
            runs,
            config=self.config,
            first_index=self.first_index.get(folder, 0),
            metadata=self.metadata.get(kind),
        )
        counter(f"written.{kind}").inc(sum(i.rows for i in infos))
        counter("time.write_ms").inc(int((time.perf_counter() - start) * 1000))
        return infos


def writer_record() -> dict:
    """Who writes an index: host, process and speechtok version."""
    import os
    import socket
    from importlib import metadata

    try:
        version = metadata.version("speechtok")
    except metadata.PackageNotFoundError:  # a source checkout without an install
        version = "unknown"
    return {"host": socket.gethostname(), "pid": os.getpid(), "version": version}


def run_tally(run) -> dict[str, int]:
    """What a run file adds to the index's counts: its rows are accepted, or
    rejected (by reason)."""
    if run.kind == shards_schema.REJECTS_DIR:
        return {"rejected": run.rows, **{f"reason:{k}": n for k, n in run.reasons}}
    return {"accepted": run.rows}


class SumTallies(beam.CombineFn):
    """``{name: n}`` dicts -> their sum (one dict)."""

    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, acc, tally):
        acc.update(tally)
        return acc

    def merge_accumulators(self, accs):
        total = collections.Counter()
        for acc in accs:
            total.update(acc)
        return total

    def extract_output(self, acc):
        return dict(acc)


class WriteIndex(beam.PTransform):
    """Write ``_index.json`` once everything else is written (side inputs).

    Inputs: ``tallies``, PCollections of ``{name: n}`` dicts whose sum gives
    the counts (``input``, ``accepted``, ``rejected``, ``reason:<code>``;
    other names are ignored); ``shard_infos``, the ``ShardInfo`` outputs of
    every :class:`FinaliseShards`; optional ``after``: outputs the index must
    wait for. The write fails the job when the counts do not reconcile, or
    when the output lock no longer holds ``fence`` (another job took the
    folder over: this one must not publish); the run files are deleted once
    the index exists.
    """

    def __init__(
        self,
        out_dir: str,
        job: str,
        config: dict,
        extra: dict | None = None,
        previous: shards.Index | None = None,
        *,
        settings: dict | None = None,
        fence: str | None = None,
        card: JobCard | None = None,
    ):
        super().__init__()
        self.out_dir, self.job, self.config, self.extra = out_dir, job, config, extra or {}
        self.previous = previous  # an earlier run's index this run appends to
        self.settings = settings or {}  # what defines the rows (appends must match)
        self.fence = fence  # the launcher's lock token, checked before publishing
        self.card = card  # what the job says of its folder on the dataset card

    def expand(self, inputs):
        tallies = (
            tuple(inputs["tallies"])
            | "FlattenTallies" >> beam.Flatten()
            | "SumTallies" >> beam.CombineGlobally(SumTallies())
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
                tallies=beam.pvalue.AsSingleton(tallies),
                infos=beam.pvalue.AsList(infos),
                after=beam.pvalue.AsList(after),
            )
        )

    def _write(self, _, tallies, infos, after) -> dict:
        from datastore import outfolder

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
            settings=self.settings,
            writer=writer_record(),
        )
        # Raises (fails the job) when counts do not reconcile or the lock was lost.
        index.write(self.out_dir, fence=self.fence)
        card.write_card(self.out_dir, index, self.card)  # README.md, from the index: after it
        outfolder.remove_runs(self.out_dir)
        return counts
