"""``speechtok tokenize``: speech -> audio-token Parquet shards.

read manifest -> dedup ids -> decode (thread pool, ahead of the model) ->
encode + nearest centroid (+ optional run-length dedup) on the model's device
-> ``OUT/tokens/corpus=C/split=S/lang=L/part-*.parquet``, ``OUT/rejects/``,
``OUT/_index.json``.

Guarantees: every input record ends as a row or a reject (the index write
fails the job otherwise); shards appear only complete (atomic writes) and
have deterministic names and contents; one output folder holds one codebook;
``--skip-existing`` tokenizes only ids not yet in the folder and appends new
shards. The launcher checks the codebook against the encoder's identity read
from configs (no weights are loaded before the workers start). Run it as
``speechtok tokenize ...`` or ``python -m pipelines.tokenize``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field

import apache_beam as beam

from pipelines import common, outcome
from pipelines.speech import ReadExamples, SpeechModelStage
from pipelines.summary import finish_run
from tokenizer import io, schema, shards
from tokenizer.assign import check_codebook_fits_int16, token_row
from tokenizer.audio import AudioConfig
from tokenizer.encoders import EncoderConfig
from tokenizer.manifests import ManifestConfig, list_sources
from tokenizer.outlock import locks_output


class CodebookMismatch(ValueError):
    """The codebook was fitted on other features, or the folder holds another codebook."""


@dataclass(frozen=True, kw_only=True)
class TokenizeJobConfig:
    manifest: ManifestConfig
    encoder: EncoderConfig
    codebook: str
    out: str
    audio: AudioConfig = field(default_factory=AudioConfig)
    dedup: bool = False
    skip_existing: bool = False
    decode_threads: int | None = None
    write: shards.WriteConfig = field(default_factory=shards.WriteConfig)

    def __post_init__(self) -> None:
        if self.decode_threads is not None and self.decode_threads < 1:
            raise ValueError(f"decode_threads must be >= 1, got {self.decode_threads}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Plan:
    """What the launcher works out before the pipeline is built."""

    codebook: object
    identity: dict
    sources: list[str]
    skip_ids: frozenset[str]
    first_index: dict[str, int]
    previous: shards.Index | None


def check_identity(codebook_meta: dict, identity: dict) -> None:
    """Refuse a codebook fitted on different features (encoder, layer, mode)."""
    for key in ("encoder", "layer", "mode"):
        if codebook_meta.get(key) != identity.get(key):
            raise CodebookMismatch(
                f"codebook was fitted with {key}={codebook_meta.get(key)!r} but the encoder gives "
                f"{key}={identity.get(key)!r}; fit a codebook for these features"
            )


def plan(config: TokenizeJobConfig) -> Plan:
    from kmeans import Codebook
    from tokenizer.encoders import describe_config
    from tokenizer.speech_model import check_codebook_dim

    codebook = Codebook.load(config.codebook)
    check_codebook_fits_int16(codebook.k)
    identity = describe_config(config.encoder)
    check_identity(codebook.metadata, identity)
    check_codebook_dim(codebook.dim, identity["dim"], config.codebook)
    previous = shards.Index.read(config.out)
    if previous is not None and previous.extra.get("codebook") not in (None, codebook.id):
        raise CodebookMismatch(
            f"{config.out} holds tokens of codebook {previous.extra['codebook']}, not {codebook.id}: "
            "a codebook change needs a new output folder"
        )
    shards.sweep_temp_files(config.out)
    skip_ids: frozenset[str] = frozenset()
    first_index: dict[str, int] = {}
    if config.skip_existing and previous is not None:
        remove_unlisted_shards(config.out, previous)
        skip_ids = existing_ids(config.out, previous)
        first_index = next_shard_indices(previous)
    else:
        previous = None
        for kind in (schema.TOKENS_DIR, schema.REJECTS_DIR):
            io.delete(io.join(config.out, kind))
        io.delete(io.join(config.out, schema.INDEX_FILE))
    sources = list_sources(config.manifest)
    return Plan(codebook, identity, sources, skip_ids, first_index, previous)


def remove_unlisted_shards(out: str, index: shards.Index) -> None:
    """Shards a killed append left behind (complete files not in the index)."""
    listed = {s["path"] for s in index.shards}
    base = (io.local_path(out) if io.is_local(out) else out).rstrip("/")
    for kind in (schema.TOKENS_DIR, schema.REJECTS_DIR):
        for uri in io.list_files(io.join(out, kind), ".parquet"):
            if uri[len(base) + 1 :] not in listed:
                io.delete(uri)


def existing_ids(out: str, index: shards.Index) -> frozenset[str]:
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for s in index.shards:
        if s["path"].startswith(schema.TOKENS_DIR + "/"):
            with io.open_read(io.join(out, s["path"])) as f:
                ids.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    return frozenset(ids)


def next_shard_indices(index: shards.Index) -> dict[str, int]:
    """Per partition folder, the first free shard number."""
    out: dict[str, int] = {}
    for s in index.shards:
        folder, name = s["path"].rsplit("/", 1)
        number = int(name.split("-")[1].split(".")[0])
        out[folder] = max(out.get(folder, 0), number + 1)
    return out


def row_of(clip, codebook_id: str, sample_rate: int) -> dict:
    """An :class:`~pipelines.speech.EncodedClip` with tokens -> its shard row."""
    return token_row(
        clip.example, clip.output, codebook_id, n_samples=clip.n_samples, sample_rate=sample_rate
    )


def build(pipeline: beam.Pipeline, config: TokenizeJobConfig, the_plan: Plan) -> None:
    from tokenizer.speech_model import ModelSpec, TokenTask

    cb = the_plan.codebook
    spec = ModelSpec(
        encoder=config.encoder,
        task=TokenTask(codebook=config.codebook, dedup=config.dedup),
        identity=the_plan.identity,
    )
    read = pipeline | "Read" >> ReadExamples(config.manifest, the_plan.sources, the_plan.skip_ids)
    encoded = read["ok"] | "Encode" >> SpeechModelStage(config.audio, spec, config.decode_threads)
    rows = encoded["ok"] | "TokenRows" >> beam.Map(row_of, cb.id, config.audio.sample_rate)
    metadata = {
        schema.META_ENCODER: the_plan.identity["encoder"],
        schema.META_LAYER: the_plan.identity["layer"],
        schema.META_FRAME_RATE: the_plan.identity["frame_rate"]
        / int(cb.metadata.get("downsample") or 1),
        schema.META_CODEBOOK_SHA256: cb.sha256,
        schema.META_VERSION: schema.SCHEMA_VERSION,
    }
    token_shards = rows | "WriteTokens" >> common.WriteShards(
        config.out, schema.TOKENS_DIR, config.write, metadata, the_plan.first_index
    )
    rejects = (read["rejects"], encoded["rejects"]) | "AllRejects" >> beam.Flatten()
    reject_shards = common.reject_rows(rejects) | "WriteRejects" >> common.WriteShards(
        config.out, schema.REJECTS_DIR, config.write, first_index=the_plan.first_index
    )
    extra = {"codebook": cb.id, "codebook_sha256": cb.sha256, "encoder": the_plan.identity}
    # A recording split into N windows (split_long) counts as N input records.
    inputs = (read["items"], encoded["extra_windows"]) | "InputRecords" >> beam.Flatten()
    _ = {
        "counts": {"input": inputs, "accepted": rows, "rejected": rejects},
        "rejects": rejects,
        "shard_infos": (token_shards, reject_shards),
    } | "Index" >> common.WriteIndex(
        config.out, "tokenize", config.as_dict(), extra, the_plan.previous
    )


@locks_output("tokenize")  # before anything in --out is deleted
def run(
    config: TokenizeJobConfig,
    beam_args: list[str] = (),
    the_plan: Plan | None = None,
    *,
    started: float | None = None,
) -> shards.Index:
    """Run the job; returns the output folder's index (raises on a failed job).
    ``started``: ``time.monotonic()`` when the command began (default: now)."""
    started = time.monotonic() if started is None else started
    the_plan = the_plan or plan(config)
    print(
        f"tokenize: {len(the_plan.sources)} manifest source(s), codebook {the_plan.codebook.id}"
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
    from pipelines.cli import UsageError, speech_configs

    started = time.monotonic()
    manifest, audio, encoder = speech_configs(args)
    try:
        write = shards.WriteConfig(
            rows_per_shard=args.rows_per_shard or shards.WriteConfig.rows_per_shard,
            compression=args.compression,
        )
        config = TokenizeJobConfig(
            manifest=manifest,
            encoder=encoder,
            audio=audio,
            codebook=args.codebook,
            out=args.out,
            dedup=args.dedup,
            skip_existing=args.skip_existing,
            decode_threads=args.decode_threads,
            write=write,
        )
        the_plan = plan(config)
    except (FileNotFoundError, ValueError) as exc:  # CodebookMismatch is a ValueError
        raise UsageError(str(exc)) from None
    outcome.check(run(config, beam_args, the_plan, started=started), args)
    return 0


if __name__ == "__main__":
    from pipelines.cli import main

    sys.exit(main(["tokenize", *sys.argv[1:]]))
