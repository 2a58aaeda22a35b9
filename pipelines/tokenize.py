"""``speechtok tokenize``: speech -> audio-token Parquet shards.

read manifest parts (ids deduplicated by a census of their hashes) -> decode
(thread pool, ahead of the model) -> encode + nearest centroid (+ optional
run-length dedup) on the model's device -> rows into run files -> per
partition, ``OUT/tokens/corpus=C/split=S/lang=L/part-*.parquet``,
``OUT/rejects/``, ``OUT/_index.json``. Everything up to the run files runs
fused, one example at a time: memory does not grow with the rows
(:mod:`pipelines.speech`).

Guarantees: every input record ends as a row or a reject (the index write
fails the job otherwise); shards appear only complete (atomic writes) and
have deterministic names and contents; one output folder holds one codebook;
``--skip-existing`` tokenizes only ids not yet in the folder and appends new
shards. The launcher checks the codebook against the encoder's identity read
from configs (no weights are loaded before the workers start). Run it as
``speechtok tokenize ...`` or ``python -m pipelines.cli tokenize``.
"""

from __future__ import annotations

import time

import apache_beam as beam

from datastore import schema, shards, storage
from datastore.card import JobCard
from datastore.outlock import held_token, locks_output
from pipelines import common, outcome
from pipelines.job_configs import TokenizeJobConfig, tokenize_config
from pipelines.speech import ReadExamples, SpeechModelStage
from pipelines.summary import finish_run
from tokenizer.assign import token_row
from tokenizer.launch import TokenPlan, plan_tokens

CARD = JobCard(title="audio-token shards (`speechtok tokenize`)")


def plan(config: TokenizeJobConfig) -> TokenPlan:
    """The launcher's checks and the output folder readied (:func:`plan_tokens`)."""
    return plan_tokens(
        codebook_dir=config.codebook,
        encoder=config.encoder,
        manifest=config.manifest,
        out=config.out,
        append=config.skip_existing,
        dedup=config.dedup,
        audio=config.audio,
    )


def row_of(clip, codebook_id: str, sample_rate: int) -> dict:
    """An :class:`~pipelines.speech.EncodedClip` with tokens -> its shard row."""
    return token_row(
        clip.example, clip.output, codebook_id, n_samples=clip.n_samples, sample_rate=sample_rate
    )


def build(pipeline: beam.Pipeline, config: TokenizeJobConfig, the_plan: TokenPlan) -> None:
    from tokenizer.speech_model import ModelSpec, TokenTask

    cb = the_plan.codebook
    spec = ModelSpec(
        encoder=config.encoder,
        task=TokenTask(codebook=config.codebook, dedup=config.dedup),
        identity=the_plan.identity,
    )
    read = pipeline | "Read" >> ReadExamples(
        config.manifest, the_plan.parts, the_plan.skip_ids, split_long=config.audio.split_long
    )
    encoded = read["ok"] | "Encode" >> SpeechModelStage(
        config.audio, spec, config.decode_threads, config.decode_pool
    )
    metadata = {
        schema.META_ENCODER: the_plan.identity.encoder,
        schema.META_LAYER: the_plan.identity.layer,
        schema.META_FRAME_RATE: the_plan.identity.token_rate(cb.downsample),
        schema.META_CODEBOOK_SHA256: cb.sha256,
        schema.META_VERSION: schema.SCHEMA_VERSION,
    }
    out = config.out
    token_runs = (
        encoded["ok"]
        | "TokenRows" >> beam.Map(row_of, cb.id, config.audio.sample_rate)
        | "TokenRuns" >> common.WriteRuns(out, schema.TOKENS_DIR)
    )
    read_reject_runs = read["rejects"] | "ReadRejects" >> common.WriteRejectRuns(out)
    encode_reject_runs = encoded["rejects"] | "EncodeRejects" >> common.WriteRejectRuns(out)
    runs = (token_runs, read_reject_runs, encode_reject_runs) | "AllRuns" >> beam.Flatten()
    infos = runs | "Shards" >> common.FinaliseShards(
        out, config.write, {schema.TOKENS_DIR: metadata}, the_plan.first_index
    )
    extra = {
        # Where the codebook is, absolute: a run trained from elsewhere finds it.
        **cb.ref(storage.absolute_uri(config.codebook)).index_fields(),
        "encoder": the_plan.identity.as_dict(),
    }
    _ = {
        # input: the records read plus, per split recording, its windows beyond the first
        "tallies": (
            read["tally"],
            encoded["tally"],
            runs | "RunTally" >> beam.Map(common.run_tally),
        ),
        "shard_infos": (infos,),
    } | "Index" >> common.WriteIndex(
        out,
        "tokenize",
        config.as_dict(),
        extra,
        the_plan.previous,
        settings=the_plan.settings,
        fence=held_token(out),
        card=CARD,
    )


@locks_output("tokenize")  # before anything in --out is deleted
def run(
    config: TokenizeJobConfig,
    beam_args: list[str] = (),
    the_plan: TokenPlan | None = None,
    *,
    started: float | None = None,
) -> shards.Index:
    """Run the job; returns the output folder's index (raises on a failed job).
    ``started``: ``time.monotonic()`` when the command began (default: now)."""
    started = time.monotonic() if started is None else started
    the_plan = the_plan or plan(config)
    print(
        f"tokenize: {len(the_plan.parts)} manifest part(s), codebook {the_plan.codebook.id}"
        + (f", skipping {len(the_plan.skip_ids)} existing ids" if the_plan.skip_ids else ""),
        flush=True,
    )
    options = common.pipeline_options(beam_args)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, the_plan)
    result = common.run_pipeline(pipeline, options, "tokenize")
    return finish_run("tokenize", config.out, common.counters(result), started=started)


@locks_output("tokenize")  # before anything in --out is deleted
def run_cli(args, beam_args) -> int:
    from datastore.errors import UsageError

    started = time.monotonic()
    try:
        config = tokenize_config(args)
        the_plan = plan(config)
    except (FileNotFoundError, ValueError) as exc:  # CodebookMismatch, FolderMismatch too
        raise UsageError(str(exc)) from None
    outcome.check(run(config, beam_args, the_plan, started=started), args)
    return 0
