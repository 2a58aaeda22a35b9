"""``speechtok bitext``: WikiMatrix TSV.gz files -> filtered bitext shards.

Reads every file matching ``--input`` (local or ``gs://``), keeps lines with
score >= ``--min-score`` that pass the length, ratio and identical-side
filters, removes exact duplicate pairs, and writes
``OUT/bitext/src_lang=A/tgt_lang=B/part-*.parquet``, ``OUT/rejects/`` and
``OUT/_index.json``. Output of an earlier run in ``OUT`` is deleted first
(its shards would otherwise sit beside the new ones, unlisted).

Memory is bounded: the unit of work is one language pair (its files), which
:func:`corpora.bitext.filter_language_pair` filters, deduplicates by a
64-bit key and writes as it streams, so no per-line element ever crosses a
Beam shuffle (the embedded runner holds a whole shuffle in memory: 1 M
duplicate lines took 1.8 GB that way). Language pairs run in parallel.

Run it as ``speechtok bitext ...`` or ``python -m pipelines.cli bitext ...``.
"""

from __future__ import annotations

import time
from collections import Counter

import apache_beam as beam

from corpora.bitext import filter_language_pair, parse_pair, select_files
from datastore import card, outfolder, schema, shards, storage
from datastore.card import JobCard
from datastore.outfolder import check_folder_job, readable_index
from datastore.outlock import held_token, locks_output
from pipelines import common, outcome
from pipelines.job_configs import BitextJobConfig, bitext_config
from pipelines.summary import finish_run


def bitext_card_facts(_out_dir: str, index: shards.Index) -> list[tuple[str, str]]:
    filters = index.config.get("filters") or {}
    return [("min score", f"{filters.get('min_score')}")]


CARD = JobCard(title="bitext shards (`speechtok bitext`)", facts=bitext_card_facts)


def language_pairs(files: list[str]) -> list[list[str]]:
    """Files grouped by language pair (duplicates are only looked for within
    one), groups and files in sorted order: the same input gives the same
    groups, hence the same shard names."""
    groups: dict[tuple[str, str], list[str]] = {}
    for uri in sorted(files):
        groups.setdefault(parse_pair(uri), []).append(uri)
    return [groups[k] for k in sorted(groups)]


class FilterBitext(beam.PTransform):
    """Groups of files (one language pair each) -> one summary dict per group,
    shards already written under ``out`` (see :func:`filter_language_pair`)."""

    def __init__(self, config: BitextJobConfig):
        super().__init__()
        self.config = config

    def expand(self, groups):
        return (
            groups
            | "Reshuffle" >> beam.Reshuffle()  # spread language pairs over workers
            | "FilterDedupWrite" >> beam.Map(_filter_group, self.config)
        )


def _filter_group(numbered: tuple[int, list[str]], config: BitextJobConfig) -> dict:
    group, files = numbered
    summary = filter_language_pair(
        files, group=group, config=config.filters, out_dir=config.out, write=config.write
    )
    for reason, n in summary["reasons"].items():
        common.counter(f"rejected.{reason}").inc(n)
    common.counter(f"written.{schema.BITEXT_DIR}").inc(summary["accepted"])
    common.counter(f"written.{schema.REJECTS_DIR}").inc(summary["rejected"])
    return summary


def write_index(summaries: list[dict], config: BitextJobConfig, fence: str | None = None) -> dict:
    """``_index.json`` from the per-group summaries (raises when counts do not
    reconcile, or when the output lock no longer holds ``fence``)."""
    counts = {k: sum(s[k] for s in summaries) for k in ("input", "accepted", "rejected")}
    reasons: Counter[str] = Counter()
    for s in summaries:
        reasons.update(s["reasons"])
    index = shards.Index(
        job="bitext",
        config=config.as_dict(),
        counts=counts,
        rejects_by_reason=dict(sorted(reasons.items())),
        shards=sorted((i for s in summaries for i in s["shards"]), key=lambda i: i["path"]),
        writer=common.writer_record(),
    )
    index.write(config.out, fence=fence)
    card.write_card(config.out, index, CARD)  # README.md, from the index: after it
    return counts


def build(pipeline: beam.Pipeline, config: BitextJobConfig, files: list[str]) -> None:
    _ = (
        pipeline
        | "LanguagePairs" >> beam.Create(list(enumerate(language_pairs(files))))
        | "Filter" >> FilterBitext(config)
        | "Gather" >> beam.combiners.ToList()
        | "WriteIndex" >> beam.Map(write_index, config, held_token(config.out))
    )


@locks_output("bitext")  # before anything in --out is deleted
def run(config: BitextJobConfig, beam_args: list[str] = ()) -> shards.Index:
    """Run the job and return its index (raises on a failed job)."""
    started = time.monotonic()
    files = select_files(storage.glob(config.input), config.filters)
    if not files:
        raise FileNotFoundError(
            f"no WikiMatrix.*.tsv.gz file matches {config.input!r} (after --langs)"
        )
    print(f"bitext: {len(files)} file(s), keeping score >= {config.filters.min_score}", flush=True)
    check_folder_job(config.out, readable_index(config.out), "bitext")
    outfolder.start_fresh(config.out, (schema.BITEXT_DIR, schema.REJECTS_DIR))
    options = common.pipeline_options(beam_args)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, files)
    result = common.run_pipeline(pipeline, options, "bitext")
    return finish_run("bitext", config.out, common.counters(result), started=started)


@locks_output("bitext")  # before anything in --out is deleted
def run_cli(args, beam_args) -> int:
    from datastore.errors import UsageError

    try:
        index = run(bitext_config(args), beam_args)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    outcome.check(index, args)
    return 0
