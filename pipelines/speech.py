"""Beam transforms shared by the speech jobs (fit-codebook, tokenize).

``ReadExamples``: manifest sources -> AudioExamples (+ line rejects), ids
deduplicated across the whole input. ``EncodeClips``: example -> what the
speech model makes of it (tokens for tokenize, frames for fit-codebook) as an
:class:`EncodedClip`, or a reject; clips are decoded on a thread pool ahead of
the model. Examples whose audio lies inside a tar archive or a Parquet row
group reach it grouped per archive / row group (:mod:`tokenizer.containers`),
so each is read once, in one pass. Each takes and gives plain records; the
logic lives in :mod:`tokenizer`.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from datastore.records import AudioExample, Reason, Reject
from pipelines import common, progress
from tokenizer import audio, containers
from tokenizer.manifests import ManifestConfig, duplicate_reject, pick_one_per_id, read_source


class ReadExamples(beam.PTransform):
    """Sources -> ``{"items", "ok", "rejects"}``; ``items`` is every record read."""

    def __init__(
        self, config: ManifestConfig, sources: list[str], skip_ids: frozenset[str] = frozenset()
    ):
        super().__init__()
        self.config, self.sources, self.skip_ids = config, sources, skip_ids

    def expand(self, pipeline):
        items = (
            pipeline
            | "Sources" >> beam.Create(self.sources)
            | "ReadSource" >> beam.FlatMap(_read_timed, self.config)
        )
        if self.skip_ids:
            skip = self.skip_ids
            items = items | "SkipExisting" >> beam.Filter(
                lambda i: not (isinstance(i, AudioExample) and i.id in skip)
            )
        read = common.route_rejects(items)
        unique = (
            read.ok
            | "CountRead" >> beam.Map(_count_read)
            | "KeyById" >> beam.Map(lambda e: (e.id, e))
            | "GroupIds" >> beam.GroupByKey()
            | "FirstPerId" >> beam.FlatMap(_one_per_id).with_outputs("rejects", main="ok")
        )
        rejects = (read.rejects, unique.rejects) | "AllReadRejects" >> beam.Flatten()
        return {"items": items, "ok": unique.ok, "rejects": rejects}


def _read_timed(source: str, config: ManifestConfig):
    """Read one manifest source, adding the time spent reading to ``time.read_ms``."""
    items = iter(read_source(config, source))
    spent = 0.0
    while True:
        start = time.perf_counter()
        item = next(items, _END)
        spent += time.perf_counter() - start
        if item is _END:
            break
        yield item
    common.counter("time.read_ms").inc(int(spent * 1000))


_END = object()


def _count_read(example):
    common.counter("read").inc()
    progress.tick(read=1)
    return example


def _one_per_id(id_examples):
    """One example per id (:func:`tokenizer.manifests.pick_one_per_id`)."""
    kept, duplicates = pick_one_per_id(id_examples[1])
    yield kept
    for dup in duplicates:
        common.counter(f"rejected.{Reason.DUPLICATE_ID}").inc()
        progress.tick(done=1)
        yield beam.pvalue.TaggedOutput("rejects", duplicate_reject(dup))


class EncodedClip(NamedTuple):
    """One clip through the model: its example, length in samples, and output
    (``Tokens`` for tokenize, float32 frames for fit-codebook)."""

    example: AudioExample
    n_samples: int
    output: Any


def encode_reject(example: AudioExample, exc: BaseException | str) -> Reject:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return Reject(
        id=example.id,
        source=example.uri,
        stage="encode",
        reason=Reason.ENCODE_ERROR,
        detail=detail[:500],
    )


class EncodeClips(beam.DoFn):
    """AudioExample -> :class:`EncodedClip` (main), ``Reject`` (``"rejects"``),
    and one id per extra window of a split recording (``"extra_windows"``).

    Why one DoFn for decode + model: the model runs in the bundle's thread
    while a thread pool decodes the next clips (:class:`tokenizer.prefetch.
    DecodeAhead`), so neither waits for the other; decoded audio crosses no
    process boundary (with a process pool, each clip is pickled once, back to
    this process). The model (encoder + codebook, one per worker
    process, shared by its threads through Beam's ``Shared``) is called with
    ``spec.batch_seconds`` of audio at a time; a batch is never held
    across bundles (``finish_bundle`` flushes), so the job's batches and
    rows do not depend on bundle boundaries beyond batch composition.

    ``decode_threads``: decoding threads (or processes) per worker process
    (default: one per core); ``decode_pool``: ``threads``, ``processes`` or
    ``auto`` (:func:`tokenizer.prefetch.resolve_pool`). Timers (milliseconds, Beam counters): ``time.decode_ms`` (sum
    over threads), ``time.decode_wait_ms`` (the model's thread blocked on
    decoding), ``time.model_ms``; ``audio.accepted_ms`` counts encoded audio.
    """

    def __init__(
        self,
        audio_config: audio.AudioConfig,
        spec,
        decode_threads: int | None = None,
        decode_pool: str = "auto",
    ):
        from apache_beam.utils.shared import Shared

        self.audio_config, self.spec, self.decode_threads = audio_config, spec, decode_threads
        self.decode_pool = decode_pool
        self._shared = Shared()

    def setup(self):
        from tokenizer.prefetch import DecodeAhead, default_threads, resolve_pool

        threads = self.decode_threads or default_threads()
        self._model = self._shared.acquire(self.spec.load, tag=repr(self.spec))
        self._target = int(self.spec.batch_seconds * self.audio_config.sample_rate)
        processes = resolve_pool(self.decode_pool, self.spec.encoder.device) == "processes"
        self._ahead = DecodeAhead(
            _prepare(self.audio_config),
            threads=threads,
            max_pending=threads * 4,
            processes=processes,
        )
        self._min_pending = threads * 4
        self._seen_samples = self._seen_clips = 0

    def start_bundle(self):
        self._batch: list[tuple[AudioExample, Any]] = []
        self._batch_samples = 0

    def process(self, element: AudioExample | containers.MemberGroup):
        if isinstance(element, containers.MemberGroup):  # one pass over an archive/row group
            for member in containers.iter_group(element, self.audio_config):
                for result, seconds in self._ahead.submit(member):
                    yield from self._accept(result, seconds)
            return
        for result, seconds in self._ahead.submit(element):
            yield from self._accept(result, seconds)

    def finish_bundle(self):
        for result, seconds in self._ahead.drain():
            for out in self._accept(result, seconds):
                yield _windowed(out)
        for out in self._flush():
            yield _windowed(out)
        progress.flush()

    def _accept(self, result, seconds: float):
        """A decode result -> rejects now, clips into the batch (model run when full)."""
        common.counter("time.decode_ms").inc(int(seconds * 1000))
        waited = self._ahead.wait_seconds
        if waited:
            common.counter("time.decode_wait_ms").inc(int(waited * 1000))
            self._ahead.wait_seconds = 0.0
        if isinstance(result, Reject):
            common.counter(f"rejected.{result.reason}").inc()
            progress.tick(done=1)
            yield beam.pvalue.TaggedOutput("rejects", result)
            return
        if len(result) > 1:  # a split recording: each window is a record
            progress.tick(read=len(result) - 1)
        for window, _ in result[1:]:
            yield beam.pvalue.TaggedOutput("extra_windows", window.id)
        for example, wave in result:
            self._batch.append((example, wave))
            self._batch_samples += len(wave)
            self._learn(len(wave))
        if self._batch_samples >= self._target:
            yield from self._flush()

    def _learn(self, n_samples: int) -> None:
        """Keep about one model batch of clips decoding ahead (memory: ~2 batches)."""
        self._seen_samples += n_samples
        self._seen_clips += 1
        per_batch = self._target * self._seen_clips // max(1, self._seen_samples)
        self._ahead.max_pending = max(self._min_pending, min(4096, per_batch))

    def _flush(self):
        batch, self._batch, self._batch_samples = self._batch, [], 0
        if not batch:
            return
        start = time.perf_counter()
        try:
            outputs = self._model.run([wave for _, wave in batch], on_retry=_count_retry)
        except Exception as exc:  # a lone clip the model fails on (batches are retried)
            if len(batch) != 1:
                raise
            outputs = [_failure(exc)]
        common.counter("time.model_ms").inc(int((time.perf_counter() - start) * 1000))
        for output, (example, wave) in zip(outputs, batch, strict=True):
            if _is_failure(output):
                common.counter(f"rejected.{Reason.ENCODE_ERROR}").inc()
                progress.tick(done=1)
                yield beam.pvalue.TaggedOutput("rejects", encode_reject(example, output.error))
                continue
            audio_ms = len(wave) * 1000 // self.audio_config.sample_rate
            common.counter("encoded").inc()
            common.counter("audio.accepted_ms").inc(audio_ms)
            progress.tick(done=1, audio_ms=audio_ms)
            yield EncodedClip(example, len(wave), output)


def _prepare(config: audio.AudioConfig):
    """The decode pool's function (picklable, for a process pool)."""
    import functools

    return functools.partial(audio.prepare_item, config=config)


def _count_retry() -> None:
    common.counter("encode.retried_batches").inc()


def _failure(exc: BaseException):
    from tokenizer.speech_model import EncodeFailure

    return EncodeFailure(f"{type(exc).__name__}: {exc}")


def _is_failure(output) -> bool:
    from tokenizer.speech_model import EncodeFailure

    return isinstance(output, EncodeFailure)


def _windowed(out):
    """finish_bundle outputs need a window: ours are all in the global window."""
    if isinstance(out, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(out.tag, GlobalWindows.windowed_value(out.value))
    return GlobalWindows.windowed_value(out)


class _KeyContainer(beam.DoFn):
    """Files and commands pass on alone; tar/Parquet members go (key, example) to
    ``members``, grouped per archive or row group for one read pass each."""

    def process(self, example: AudioExample):
        key = containers.group_key(example)
        if key is None:
            yield example
        else:
            yield beam.pvalue.TaggedOutput("members", (key, example))


class SpeechModelStage(beam.PTransform):
    """Examples -> ``{"ok": EncodedClip, "rejects": Reject, "extra_windows": id}``.

    With ``split_long`` one recording becomes N windows (N outputs);
    ``extra_windows`` holds one element per window beyond the first, which the
    jobs add to their ``input`` count so ``input = accepted + rejected`` holds.
    """

    def __init__(
        self,
        audio_config: audio.AudioConfig,
        spec,
        decode_threads: int | None = None,
        decode_pool: str = "auto",
    ):
        super().__init__()
        self.audio_config, self.spec, self.decode_threads = audio_config, spec, decode_threads
        self.decode_pool = decode_pool

    def expand(self, examples):
        keyed = examples | "ByContainer" >> beam.ParDo(_KeyContainer()).with_outputs(
            "members", main="files"
        )
        groups = (
            keyed.members
            | "GroupMembers" >> beam.GroupByKey()
            | "MemberGroups" >> beam.MapTuple(containers.make_group)
        )
        # No Reshuffle after: ReadExamples' id grouping has just spread the files
        # over workers by key, and GroupMembers spreads the member groups;
        # another shuffle would only pickle every example once more.
        out = (
            (keyed.files, groups)
            | "FilesAndGroups" >> beam.Flatten()
            | "DecodeAndRun"
            >> beam.ParDo(
                EncodeClips(self.audio_config, self.spec, self.decode_threads, self.decode_pool)
            ).with_outputs("rejects", "extra_windows", main="ok")
        )
        return {"ok": out.ok, "rejects": out.rejects, "extra_windows": out.extra_windows}
