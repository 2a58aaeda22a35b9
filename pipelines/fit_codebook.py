"""``speechtok fit-codebook``: encoder frames -> a k-means codebook folder.

read manifest parts (ids deduplicated by a census) -> decode (thread pool, ahead of the model) ->
encode + optional frame averaging (``--downsample``) on the model's device ->
stratified reservoir sample of
frames (per language, capped per utterance; a CombineFn per language, each cut
to its share before they are joined, so memory and element sizes are bounded by
the sample, not the corpus) -> ``kmeans.fit`` -> ``OUT/centroids.npy`` +
``OUT/codebook.json``, with ``OUT/rejects/`` and ``OUT/_index.json``.

Run it as ``speechtok fit-codebook ...`` or ``python -m pipelines.cli fit-codebook``.
"""

from __future__ import annotations

import json
import time
from typing import NamedTuple

import apache_beam as beam

from datastore import shards, storage
from datastore.card import JobCard
from datastore.identity import FeatureIdentity
from datastore.outlock import held_token, locks_output
from pipelines import common, outcome
from pipelines.job_configs import (
    FitCodebookJobConfig,
    fit_codebook_config,
)
from pipelines.speech import ReadExamples, SpeechModelStage
from pipelines.summary import finish_run


class NoCodebook(outcome.JobFailed):
    """The job ran but fitted nothing; ``index`` is what it wrote (rejects, counts)."""

    def __init__(self, message: str, index: shards.Index | None):
        super().__init__(message)
        self.index = index


class SampleFrames(beam.CombineFn):
    """Beam wrapper of :class:`kmeans.sampling.StratifiedReservoir` (order-independent),
    used per language: its output is the language's reservoir, compacted.

    Why per language: one reservoir of every language crossed the runner as one
    element of ``languages x 2 x sample_frames`` frames; on an H100 with Whisper
    base (512 dims, 4 languages, 30 h) that was a 2.3 GB element, over gRPC's 2 GB
    limit, and the job failed after encoding everything. Accumulators are
    compacted (:meth:`compact`) before Beam sends them, and each language is cut
    to its share of the sample before the languages are joined (:class:`JoinShares`).
    """

    def __init__(self, sampler_config):
        self.sampler_config = sampler_config

    def create_accumulator(self):
        from kmeans.sampling import StratifiedReservoir

        return StratifiedReservoir(self.sampler_config)

    def add_input(self, acc, item: UtteranceFrames):
        return acc.add(item.lang, item.id, item.frames)

    def merge_accumulators(self, accumulators):
        from kmeans.sampling import StratifiedReservoir

        return StratifiedReservoir.merge_all(accumulators)

    def compact(self, acc):
        return acc.compact()

    def extract_output(self, acc):
        return acc.compact()


class JoinShares(SampleFrames):
    """The languages' reservoirs, each cut to its quota, joined into the final
    sample: the frames one reservoir over everything would give (a test)."""

    def add_input(self, acc, share):
        return acc.merge(share)

    def extract_output(self, acc):
        return acc.extract()


def cut_to_quota(lang_and_reservoir, quota: dict):
    return lang_and_reservoir[1].keep(quota)


def quotas(held: dict, sample_frames: int) -> dict:
    """Each language's share of the sample (:func:`kmeans.sampling.allocate`)."""
    from kmeans.sampling import allocate

    return allocate(held, sample_frames)


class UtteranceFrames(NamedTuple):
    """What the sampler takes from one utterance."""

    lang: str
    id: str
    frames: object  # float32 [n_frames, dim]


def frames_for_sampling(clip) -> UtteranceFrames:
    """An :class:`~pipelines.speech.EncodedClip` with (downsampled) frames -> sampler input."""
    return UtteranceFrames(clip.example.lang, clip.example.id, clip.output)


SAMPLE_DIR = "sample"


def save_sample(sample, directory: str) -> None:
    """The fitted frames as plain .npy files (no pickle: langs are fixed-width unicode)."""
    import numpy as np

    storage.makedirs(directory)
    storage.write_npy(storage.join(directory, "frames.npy"), sample.frames)
    storage.write_npy(storage.join(directory, "langs.npy"), np.asarray(sample.langs, dtype=str))


def codebook_card_facts(out_dir: str, _index) -> list[tuple[str, str]]:
    """The codebook card's own lines, from the ``codebook.json`` this job wrote."""
    from kmeans.codebook import METADATA_FILE

    uri = storage.join(out_dir, METADATA_FILE)
    if not storage.exists(uri):
        return []
    meta = json.loads(storage.read_text(uri))
    return [
        ("codebook", f"`{meta.get('id')}` (sha256 `{meta.get('sha256')}`)"),
        ("k x dim", f"{meta.get('k')} x {meta.get('dim')}"),
        (
            "encoder",
            f"`{meta.get('encoder')}`, layer {meta.get('layer')}, mode {meta.get('mode')}",
        ),
        (
            "token rate",
            f"{meta.get('frame_rate')} tokens/s (downsample {meta.get('downsample', 1)})",
        ),
        ("inertia", f"{meta.get('inertia')}"),
    ]


CARD = JobCard(
    title="a k-means codebook (`speechtok fit-codebook`) and its rejects",
    facts=codebook_card_facts,
)


def fit_and_save(sample, config: FitCodebookJobConfig, identity: FeatureIdentity) -> dict:
    """Fit k-means on the sample and write the codebook folder; returns its summary."""
    from kmeans.api import fit_frame_sample

    n_frames = int(sample.frames.shape[0])
    common.counter("sampled_frames").inc(n_frames)
    codebook = fit_frame_sample(
        sample,
        config.k,
        identity=identity,
        downsample=config.downsample,
        max_frames_per_utt=config.max_frames_per_utt,
        seed=config.seed,
        backend=config.backend,
        device=config.encoder.device,
        fitted_on={
            "format": config.manifest.format,
            "langs": sorted(sample.per_lang),  # the languages that gave frames
            "splits": list(config.manifest.splits) if config.manifest.splits else None,
        },
    )
    if codebook is None:
        # Nothing to fit (e.g. every input rejected): no codebook, but the job
        # still writes its rejects and index, and the launcher says why.
        return {"id": None, "k": config.k, "sampled_frames": n_frames}
    codebook.save(config.out)
    if config.save_sample:
        save_sample(sample, storage.join(config.out, SAMPLE_DIR))
    return {"id": codebook.id, "k": codebook.k, "inertia": codebook.metadata["inertia"]}


def plan(config: FitCodebookJobConfig) -> tuple[FeatureIdentity, list]:
    """The launcher's work (:func:`tokenizer.launch.plan_frames`)."""
    from tokenizer.launch import plan_frames

    return plan_frames(encoder=config.encoder, manifest=config.manifest, out=config.out)


def build(
    pipeline: beam.Pipeline, config: FitCodebookJobConfig, identity: FeatureIdentity, parts: list
) -> None:
    from kmeans.sampling import SamplerConfig
    from tokenizer.speech_model import FrameTask, ModelSpec

    spec = ModelSpec(
        encoder=config.encoder, task=FrameTask(downsample=config.downsample), identity=identity
    )
    read = pipeline | "Read" >> ReadExamples(
        config.manifest, parts, split_long=config.audio.split_long
    )
    encoded = read["ok"] | "Encode" >> SpeechModelStage(
        config.audio, spec, config.decode_threads, config.decode_pool
    )
    sampler = SamplerConfig(
        sample_frames=config.sample_frames,
        max_frames_per_utt=config.max_frames_per_utt,
        seed=config.seed,
    )
    per_lang = (
        encoded["ok"]
        | "Frames" >> beam.Map(lambda clip: (clip.example.lang, frames_for_sampling(clip)))
        | "SamplePerLang" >> beam.CombinePerKey(SampleFrames(sampler))
    )
    held = (
        per_lang
        | "Held" >> beam.Map(lambda kv: (kv[0], kv[1].held_frames()[kv[0]]))
        | "AllHeld" >> beam.combiners.ToDict()
        | "Quotas" >> beam.Map(quotas, config.sample_frames)
    )
    summary = (
        per_lang
        | "CutToQuota" >> beam.Map(cut_to_quota, beam.pvalue.AsSingleton(held))
        | "Sample" >> beam.CombineGlobally(JoinShares(sampler))
        | "FitAndSave" >> beam.Map(fit_and_save, config, identity)
    )
    out = config.out
    read_reject_runs = read["rejects"] | "ReadRejects" >> common.WriteRejectRuns(out)
    encode_reject_runs = encoded["rejects"] | "EncodeRejects" >> common.WriteRejectRuns(out)
    runs = (read_reject_runs, encode_reject_runs) | "AllRuns" >> beam.Flatten()
    infos = runs | "Shards" >> common.FinaliseShards(out, config.write)
    # Accepted: every clip encoded (its frames offered to the sampler).
    encoded_tally = encoded["tally"] | "Accepted" >> beam.Map(
        lambda t: {"input": t.get("input", 0), "accepted": t.get("encoded", 0)}
    )
    # The codebook summary rides along as a side input, so the index is written
    # only after the codebook is saved.
    _ = {
        "tallies": (read["tally"], encoded_tally, runs | "RunTally" >> beam.Map(common.run_tally)),
        "shard_infos": (infos,),
        "after": summary,
    } | "Index" >> common.WriteIndex(
        out,
        "fit-codebook",
        config.as_dict(),
        {"encoder": identity.as_dict()},
        fence=held_token(out),
        card=CARD,
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
    identity, parts = planned or plan(config)
    print(
        f"fit-codebook: {len(parts)} manifest part(s), k={config.k}, encoder {identity.as_dict()}",
        flush=True,
    )
    options = common.pipeline_options(beam_args)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, identity, parts)
    result = common.run_pipeline(pipeline, options, "fit-codebook")
    beam_counters = common.counters(result)
    index = finish_run("fit-codebook", config.out, beam_counters, started=started)
    from kmeans import Codebook
    from kmeans.codebook import METADATA_FILE

    if not storage.exists(storage.join(config.out, METADATA_FILE)):
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
    from datastore.errors import UsageError

    started = time.monotonic()
    try:
        config = fit_codebook_config(args)
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
