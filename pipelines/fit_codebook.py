"""``speechtok fit-codebook``: encoder frames -> a k-means codebook folder.

read manifest -> dedup ids -> decode (thread pool, ahead of the model) ->
encode + optional frame averaging (``--downsample``) on the model's device ->
stratified reservoir sample of
frames (per language, capped per utterance; a CombineFn, so memory is bounded
by the sample, not the corpus) -> ``kmeans.fit`` -> ``OUT/centroids.npy`` +
``OUT/codebook.json``, with ``OUT/rejects/`` and ``OUT/_index.json``.

Run it as ``speechtok fit-codebook ...`` or ``python -m pipelines.fit_codebook``.
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
from tokenizer.audio import AudioConfig
from tokenizer.encoders import EncoderConfig
from tokenizer.manifests import ManifestConfig, list_sources
from tokenizer.outlock import locks_output


@dataclass(frozen=True, kw_only=True)
class FitCodebookJobConfig:
    """``sample_frames``: frames k-means sees (split evenly over languages);
    ``max_frames_per_utt``: so one long file cannot dominate; ``save_sample``:
    also write that sample (``OUT/sample/frames.npy`` float32 [n, dim] and
    ``langs.npy``), to refit with other k or backends without re-encoding."""

    manifest: ManifestConfig
    encoder: EncoderConfig
    k: int
    out: str
    audio: AudioConfig = field(default_factory=AudioConfig)
    sample_frames: int = 200_000
    max_frames_per_utt: int | None = 500
    downsample: int = 1
    backend: str = "torch"
    save_sample: bool = False
    seed: int = 0
    decode_threads: int | None = None
    write: shards.WriteConfig = field(default_factory=shards.WriteConfig)

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"k must be >= 2, got {self.k}")
        if self.sample_frames < self.k:
            raise ValueError(f"sample_frames ({self.sample_frames}) must be >= k ({self.k})")
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {self.downsample}")
        if self.decode_threads is not None and self.decode_threads < 1:
            raise ValueError(f"decode_threads must be >= 1, got {self.decode_threads}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class NoCodebook(outcome.JobFailed):
    """The job ran but fitted nothing; ``index`` is what it wrote (rejects, counts)."""

    def __init__(self, message: str, index: shards.Index | None):
        super().__init__(message)
        self.index = index


class SampleFrames(beam.CombineFn):
    """Beam wrapper of :class:`kmeans.sampling.StratifiedReservoir` (order-independent)."""

    def __init__(self, sampler_config):
        self.sampler_config = sampler_config

    def create_accumulator(self):
        from kmeans.sampling import StratifiedReservoir

        return StratifiedReservoir(self.sampler_config)

    def add_input(self, acc, item):
        lang, utt_id, frames = item
        return acc.add(lang, utt_id, frames)

    def merge_accumulators(self, accumulators):
        from kmeans.sampling import StratifiedReservoir

        return StratifiedReservoir.merge_all(accumulators)

    def extract_output(self, acc):
        return acc.extract()


def frames_for_sampling(clip) -> tuple[str, str, object]:
    """An :class:`~pipelines.speech.EncodedClip` with (downsampled) frames ->
    ``(lang, id, frames)`` for the sampler."""
    return clip.example.lang, clip.example.id, clip.output


SAMPLE_DIR = "sample"


def save_sample(sample, directory: str) -> None:
    """The fitted frames as plain .npy files (no pickle: langs are fixed-width unicode)."""
    import numpy as np

    io.makedirs(directory)
    io.write_npy(io.join(directory, "frames.npy"), sample.frames)
    io.write_npy(io.join(directory, "langs.npy"), np.asarray(sample.langs, dtype=str))


def fit_and_save(sample, config: FitCodebookJobConfig, identity: dict) -> dict:
    """Fit k-means on the sample and write the codebook folder; returns its summary."""
    import kmeans
    from kmeans.postprocess import PostprocessConfig

    n_frames = int(sample.frames.shape[0])
    common.counter("sampled_frames").inc(n_frames)
    if n_frames < config.k:
        # Nothing to fit (e.g. every input rejected): no codebook, but the job
        # still writes its rejects and index, and the launcher says why.
        return {"id": None, "k": config.k, "sampled_frames": n_frames}
    device = config.encoder.device if config.backend == "torch" else None
    opts = {"device": device} if device and device != "cpu" else {}
    codebook = kmeans.fit(sample.frames, config.k, seed=config.seed, backend=config.backend, **opts)
    post = PostprocessConfig(downsample=config.downsample)
    codebook = codebook.with_metadata(
        encoder=identity["encoder"],
        layer=identity["layer"],
        mode=identity["mode"],
        frame_rate=identity["frame_rate"] / config.downsample,
        encoder_frame_rate=identity["frame_rate"],
        sample_per_lang=sample.per_lang,
        seen_frames=sample.seen_frames,
        seen_utterances=sample.seen_utts,
        max_frames_per_utt=config.max_frames_per_utt,
        **post.to_metadata(),
    )
    codebook.save(config.out)
    if config.save_sample:
        save_sample(sample, io.join(config.out, SAMPLE_DIR))
    return {"id": codebook.id, "k": codebook.k, "inertia": codebook.metadata["inertia"]}


def plan(config: FitCodebookJobConfig) -> tuple[dict, list[str]]:
    from kmeans.codebook import CENTROIDS_FILE, METADATA_FILE
    from tokenizer.encoders import describe_config

    identity = describe_config(config.encoder)  # from configs: no weights loaded here
    sources = list_sources(config.manifest)
    shards.sweep_temp_files(config.out)
    # An earlier run's codebook must not pass for this run's when this one fits nothing.
    for name in (schema.REJECTS_DIR, schema.INDEX_FILE, METADATA_FILE, CENTROIDS_FILE):
        io.delete(io.join(config.out, name))
    return identity, sources


def build(
    pipeline: beam.Pipeline, config: FitCodebookJobConfig, identity: dict, sources: list[str]
) -> None:
    from kmeans.sampling import SamplerConfig
    from tokenizer.speech_model import FrameTask, ModelSpec

    spec = ModelSpec(
        encoder=config.encoder, task=FrameTask(downsample=config.downsample), identity=identity
    )
    read = pipeline | "Read" >> ReadExamples(config.manifest, sources)
    encoded = read["ok"] | "Encode" >> SpeechModelStage(config.audio, spec, config.decode_threads)
    sampler = SamplerConfig(
        sample_frames=config.sample_frames,
        max_frames_per_utt=config.max_frames_per_utt,
        seed=config.seed,
    )
    summary = (
        encoded["ok"]
        | "Frames" >> beam.Map(frames_for_sampling)
        | "Sample" >> beam.CombineGlobally(SampleFrames(sampler))
        | "FitAndSave" >> beam.Map(fit_and_save, config, identity)
    )
    rejects = (read["rejects"], encoded["rejects"]) | "AllRejects" >> beam.Flatten()
    reject_shards = common.reject_rows(rejects) | "WriteRejects" >> common.WriteShards(
        config.out, schema.REJECTS_DIR, config.write
    )
    # A recording split into N windows (split_long) counts as N input records.
    inputs = (read["items"], encoded["extra_windows"]) | "InputRecords" >> beam.Flatten()
    # The codebook summary rides along as a side input, so the index is written
    # only after the codebook is saved.
    _ = {
        "counts": {"input": inputs, "accepted": encoded["ok"], "rejected": rejects},
        "rejects": rejects,
        "shard_infos": (reject_shards,),
        "after": summary,
    } | "Index" >> common.WriteIndex(
        config.out, "fit-codebook", config.as_dict(), {"encoder": identity}
    )


@locks_output("fit-codebook")  # before anything in --out is deleted
def run(
    config: FitCodebookJobConfig,
    beam_args: list[str] = (),
    planned=None,
    *,
    started: float | None = None,
) -> shards.Index:
    """Run the job; returns the folder's index. ``started``: ``time.monotonic()``
    when the command began (default: now)."""
    started = time.monotonic() if started is None else started
    identity, sources = planned or plan(config)
    print(
        f"fit-codebook: {len(sources)} manifest source(s), k={config.k}, encoder {identity}",
        flush=True,
    )
    options = common.pipeline_options(beam_args)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, identity, sources)
    result = common.run_pipeline(pipeline, options, "fit-codebook")
    beam_counters = common.counters(result)
    index = finish_run("fit-codebook", config.out, beam_counters, started=started)
    from kmeans import Codebook
    from kmeans.codebook import METADATA_FILE

    if not io.exists(io.join(config.out, METADATA_FILE)):
        counts = index.counts if index else {"input": 0, "accepted": 0, "rejected": 0}
        sampled = beam_counters.get("sampled_frames")
        raise NoCodebook(
            outcome.verdict(counts, index.rejects_by_reason if index else {}, where=config.out)
            or f"no codebook written: {'the' if sampled is None else sampled} sampled frames "
            f"are fewer than k={config.k} (more audio, or a smaller --k)",
            index,
        )
    cb = Codebook.load(config.out)
    print(
        f"codebook {cb.id}: k={cb.k}, dim={cb.dim}, inertia={cb.metadata['inertia']:.4g}",
        flush=True,
    )
    return index


@locks_output("fit-codebook")  # before anything in --out is deleted
def run_cli(args, beam_args) -> int:
    from pipelines.cli import UsageError, speech_configs

    started = time.monotonic()
    manifest, audio, encoder = speech_configs(args)
    try:
        optional = {
            k: v
            for k, v in {
                "sample_frames": args.sample_frames,
                "max_frames_per_utt": args.max_frames_per_utt,
                "save_sample": args.save_sample or None,
            }.items()
            if v is not None
        }
        config = FitCodebookJobConfig(
            manifest=manifest,
            encoder=encoder,
            audio=audio,
            k=args.k,
            out=args.out,
            downsample=args.downsample,
            backend=args.backend,
            seed=args.seed,
            decode_threads=args.decode_threads,
            **optional,
        )
        planned = plan(config)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        index = run(config, beam_args, planned, started=started)
    except NoCodebook as exc:
        outcome.check(exc.index, args)  # no input / all rejected, said with the input hint
        raise
    outcome.check(index, args)
    return 0


if __name__ == "__main__":
    from pipelines.cli import main

    sys.exit(main(["fit-codebook", *sys.argv[1:]]))
