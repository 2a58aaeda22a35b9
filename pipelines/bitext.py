"""``speechtok bitext``: WikiMatrix TSV.gz files -> filtered bitext shards.

Reads every file matching ``--input`` (local or ``gs://``), keeps lines with
score >= ``--min-score`` that pass the length, ratio and identical-side
filters, removes exact duplicate pairs, and writes
``OUT/bitext/src_lang=A/tgt_lang=B/part-*.parquet``, ``OUT/rejects/`` and
``OUT/_index.json``. The filtering logic is :mod:`tokenizer.bitext`.

Run it as ``speechtok bitext ...`` or ``python -m pipelines.bitext ...``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field

import apache_beam as beam

from pipelines import common, outcome
from pipelines.summary import finish_run
from tokenizer import io, schema, shards
from tokenizer.bitext import BitextConfig, BitextPair, keep_first, read_wikimatrix, select_files
from tokenizer.outlock import locks_output


@dataclass(frozen=True, kw_only=True)
class BitextJobConfig:
    input: str
    out: str
    filters: BitextConfig
    write: shards.WriteConfig = field(default_factory=shards.WriteConfig)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["filters"]["langs"] = sorted(self.filters.langs) if self.filters.langs else None
        return d


class FilterBitext(beam.PTransform):
    """File URIs -> ``{"ok": BitextPair, "rejects": Reject}`` (one item per line)."""

    def __init__(self, config: BitextConfig):
        super().__init__()
        self.config = config

    def expand(self, files):
        items = (
            files
            | "Reshuffle" >> beam.Reshuffle()  # spread files over workers
            | "ReadLines" >> beam.FlatMap(read_wikimatrix, self.config)
        )
        read = common.route_rejects(items)
        unique = (
            read.ok
            | "KeyById" >> beam.Map(lambda p: (p.id, p))
            | "GroupDuplicates" >> beam.GroupByKey()
            | "KeepFirst" >> beam.FlatMap(_keep_first).with_outputs("rejects", main="ok")
        )
        return {
            "items": items,
            "ok": unique.ok,
            "rejects": (read.rejects, unique.rejects) | beam.Flatten(),
        }


def _keep_first(id_pairs):
    first, dups = keep_first(list(id_pairs[1]))
    yield first
    for r in dups:
        common.counter("rejected.duplicate_pair").inc()
        yield beam.pvalue.TaggedOutput("rejects", r)


def build(pipeline: beam.Pipeline, config: BitextJobConfig, files: list[str]) -> None:
    out = pipeline | "Files" >> beam.Create(files) | "Filter" >> FilterBitext(config.filters)
    rows = out["ok"] | "Rows" >> beam.Map(BitextPair.as_row)
    pair_shards = rows | "WriteBitext" >> common.WriteShards(
        config.out, schema.BITEXT_DIR, config.write
    )
    reject_shards = common.reject_rows(out["rejects"]) | "WriteRejects" >> common.WriteShards(
        config.out, schema.REJECTS_DIR, config.write
    )
    _ = {
        "counts": {"input": out["items"], "accepted": out["ok"], "rejected": out["rejects"]},
        "rejects": out["rejects"],
        "shard_infos": (pair_shards, reject_shards),
    } | "Index" >> common.WriteIndex(config.out, "bitext", config.as_dict())


@locks_output("bitext")  # before anything in --out is deleted
def run(config: BitextJobConfig, beam_args: list[str] = ()) -> shards.Index:
    """Run the job and return its index (raises on a failed job)."""
    started = time.monotonic()
    files = select_files(io.glob(config.input), config.filters)
    if not files:
        raise FileNotFoundError(
            f"no WikiMatrix.*.tsv.gz file matches {config.input!r} (after --langs)"
        )
    print(f"bitext: {len(files)} file(s), keeping score >= {config.filters.min_score}", flush=True)
    shards.sweep_temp_files(config.out)
    options = common.pipeline_options(beam_args)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, files)
    result = common.run_pipeline(pipeline, options, "bitext")
    return finish_run("bitext", config.out, common.counters(result), started=started)


@locks_output("bitext")  # before anything in --out is deleted
def run_cli(args, beam_args) -> int:
    from pipelines.cli import UsageError

    langs = frozenset(x.strip() for x in args.langs.split(",")) if args.langs else None
    try:
        filters = BitextConfig(
            min_score=args.min_score,
            langs=langs,
            min_chars=args.min_chars,
            max_chars=args.max_chars,
            max_length_ratio=args.max_length_ratio,
        )
        write = shards.WriteConfig(rows_per_shard=args.rows_per_shard, compression=args.compression)
        config = BitextJobConfig(input=args.input, out=args.out, filters=filters, write=write)
        index = run(config, beam_args)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    outcome.check(index, args)
    return 0


if __name__ == "__main__":
    from pipelines.cli import main

    sys.exit(main(["bitext", *sys.argv[1:]]))
