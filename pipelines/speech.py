"""Beam transforms shared by the speech jobs (fit-codebook, tokenize).

``ReadExamples``: manifest parts -> AudioExamples (+ line rejects), ids
deduplicated across the whole input. ``SpeechModelStage``: example -> what
the speech model makes of it (tokens for tokenize, frames for fit-codebook)
as an :class:`EncodedClip`, or a reject; clips are decoded on a pool ahead of
the model. Each takes and gives plain records; the logic lives in
:mod:`tokenizer`.

Why the shape: no per-example element crosses a stage boundary. Reading,
decoding, encoding and writing run fused, one element at a time, so the
embedded runner's memory does not grow with the rows (it holds whatever
crosses a boundary). What does cross is small: manifest parts, 8-byte id
hashes (:mod:`tokenizer.manifests.ids`), per-part and per-bundle tallies
(``{"input": n}`` dicts the index adds up) and run-file names
(:mod:`datastore.runs`). Parallelism comes from the parts: large manifests
are cut into spans of lines (:func:`tokenizer.manifests.plan_parts`).
"""

from __future__ import annotations

import collections
import time
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from datastore.records import AudioExample, Reason, Reject
from pipelines import common, progress
from tokenizer import audio, containers
from tokenizer.manifests import ManifestConfig, SourcePart, duplicate_reject, read_part
from tokenizer.manifests.ids import IdCensus, claim_key, id_hash, id_hashes


class ReadExamples(beam.PTransform):
    """Manifest parts -> ``{"ok": examples, one per id; "rejects"; "tally"}``.

    ``tally``: one ``{"input": n}`` per part, the records it read (examples
    and line rejects; ids in ``skip_ids``, already in the folder, are not
    input). With ``split_long``, ids of the windows' form (``x#w001``) are
    refused: a window of ``x`` would take that id. Duplicate ids take three passes over the manifest, each
    streaming (:mod:`tokenizer.manifests.ids`): a census of id hashes, the
    claims of the few repeated ones (skipped when there are none), then the
    read that keeps each id's winner and rejects the others.
    """

    def __init__(
        self,
        config: ManifestConfig,
        parts: list[SourcePart],
        skip_ids: frozenset[str] = frozenset(),
        *,
        split_long: bool = False,
    ):
        super().__init__()
        self.config, self.parts, self.skip_ids = config, parts, skip_ids
        self.split_long = split_long

    def expand(self, pipeline):
        parts = pipeline | "Parts" >> beam.Create(list(enumerate(self.parts)))
        read = _Reader(self.config, self.skip_ids, self.split_long)
        repeated = (
            parts
            | "CensusRead" >> beam.Map(_census_part, read)
            | "IdCensus" >> beam.CombineGlobally(IdCensusFn())
        )
        winners = (
            parts
            | "ClaimsRead"
            >> beam.FlatMap(_claims, read, repeated=beam.pvalue.AsSingleton(repeated))
            | "Winners" >> beam.CombinePerKey(min)
        )
        out = parts | "ReadPart" >> beam.ParDo(
            _ReadPart(read),
            repeated=beam.pvalue.AsSingleton(repeated),
            winners=beam.pvalue.AsDict(winners),
        ).with_outputs("rejects", "tally", main="ok")
        return {"ok": out.ok, "rejects": out.rejects, "tally": out.tally}


class _Reader(NamedTuple):
    """How every pass reads a part (the same items in the same order each time)."""

    config: ManifestConfig
    skip_ids: frozenset[str]
    split_long: bool

    def items(self, part: SourcePart):
        """``(ordinal, item)`` per record, ids in ``skip_ids`` left out;
        ``ordinal`` counts every item the reader gave (the claims' tie-break)."""
        for ordinal, item in enumerate(read_part(self.config, part)):
            if isinstance(item, AudioExample):
                if self.skip_ids and item.id in self.skip_ids:
                    continue
                if self.split_long and audio.is_window_id(item.id):
                    item = _reserved(item)
            yield ordinal, item


def _reserved(example: AudioExample) -> Reject:
    return Reject(
        id=example.id,
        source=example.uri,
        stage="read",
        reason=Reason.MALFORMED_LINE,
        detail=f"id {example.id!r}: ids ending in #wNNN name --split-long's windows",
    )


def _census_part(numbered: tuple[int, SourcePart], read: _Reader) -> Any:
    """One part's id hashes (a uint64 array), read once; ticks progress's total."""
    start = time.perf_counter()
    _, part = numbered
    ids = [i.id for _, i in read.items(part) if isinstance(i, AudioExample)]
    common.counter("time.read_ms").inc(int((time.perf_counter() - start) * 1000))
    progress.tick(read=len(ids))
    return id_hashes(ids)


class IdCensusFn(beam.CombineFn):
    """Beam wrapper of :class:`~tokenizer.manifests.ids.IdCensus`: part hash
    arrays -> the sorted hashes seen more than once."""

    def create_accumulator(self):
        return IdCensus()

    def add_input(self, census, hashes):
        return census.add(hashes)

    def merge_accumulators(self, censuses):
        censuses = iter(censuses)
        first = next(censuses)
        for other in censuses:
            first.merge(other)
        return first

    def compact(self, census):
        return census.compact()

    def extract_output(self, census):
        return census.repeated()


def _claims(numbered: tuple[int, SourcePart], read: _Reader, repeated):
    """``(id, claim key)`` for each example whose id hash is repeated (none: no read)."""
    if len(repeated) == 0:
        return
    wanted = set(repeated.tolist())
    index, part = numbered
    for ordinal, item in read.items(part):
        if isinstance(item, AudioExample) and id_hash(item.id) in wanted:
            yield item.id, claim_key(item, index, ordinal)


class _ReadPart(beam.DoFn):
    """A part -> its examples (duplicates' losers as ``duplicate_id`` rejects),
    line rejects (``"rejects"``) and one ``{"input": n}`` (``"tally"``)."""

    def __init__(self, read: _Reader):
        self.read = read
        self._repeated: tuple[int, set[int]] | None = None

    def process(self, numbered: tuple[int, SourcePart], repeated, winners):
        if self._repeated is None or self._repeated[0] != len(repeated):
            self._repeated = (len(repeated), set(repeated.tolist()))
        contested = self._repeated[1]
        index, part = numbered
        n_input, spent = 0, 0.0
        items = self.read.items(part)
        while True:
            start = time.perf_counter()
            numbered_item = next(items, None)
            spent += time.perf_counter() - start
            if numbered_item is None:
                break
            ordinal, item = numbered_item
            n_input += 1
            if isinstance(item, Reject):  # not in progress's total (examples only)
                common.counter(f"rejected.{item.reason}").inc()
                yield beam.pvalue.TaggedOutput("rejects", item)
            elif (
                contested
                and id_hash(item.id) in contested
                and (winners.get(item.id) != claim_key(item, index, ordinal))
            ):
                common.counter(f"rejected.{Reason.DUPLICATE_ID}").inc()
                progress.tick(done=1)
                yield beam.pvalue.TaggedOutput("rejects", duplicate_reject(item))
            else:
                common.counter("read").inc()
                yield item
        common.counter("time.read_ms").inc(int(spent * 1000))
        yield beam.pvalue.TaggedOutput("tally", {"input": n_input})


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
    """AudioExample or MemberGroup -> :class:`EncodedClip` (main), ``Reject``
    (``"rejects"``), and per bundle one ``{"input": extra windows, "encoded":
    clips}`` (``"tally"``): a recording split into N windows is N input records.

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
        self._tally = collections.Counter()

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
        if self._tally:
            yield _windowed(beam.pvalue.TaggedOutput("tally", dict(self._tally)))
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
            self._tally["input"] += len(result) - 1
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
            self._tally["encoded"] += 1
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


class GroupMembers(beam.DoFn):
    """Files and commands pass on alone; tar and Parquet members pass on as
    :class:`~tokenizer.containers.MemberGroup` s, each read in one pass.

    Members of one archive or row group arrive together (a FLEURS split's TSV
    names one archive, a Parquet file is read row group by row group), so a
    group is what arrives in a row, without a shuffle: at most
    ``MAX_OPEN_GROUPS`` groups are open (the oldest goes on when one more
    opens) and a group goes on at ``MAX_GROUP_MEMBERS``. A manifest that
    interleaves many archives costs more passes, never more memory.
    """

    MAX_OPEN_GROUPS = 8
    MAX_GROUP_MEMBERS = 10_000

    def start_bundle(self):
        self._open: collections.OrderedDict[str, list[AudioExample]] = collections.OrderedDict()

    def process(self, example: AudioExample):
        key = containers.group_key(example)
        if key is None:
            yield example
            return
        members = self._open.pop(key, [])
        members.append(example)
        self._open[key] = members
        if len(members) >= self.MAX_GROUP_MEMBERS:
            yield containers.make_group(key, self._open.pop(key))
        elif len(self._open) > self.MAX_OPEN_GROUPS:
            yield containers.make_group(*self._open.popitem(last=False))

    def finish_bundle(self):
        for key, members in self._open.items():
            yield _windowed(containers.make_group(key, members))
        self._open.clear()


class SpeechModelStage(beam.PTransform):
    """Examples -> ``{"ok": EncodedClip, "rejects": Reject, "tally": dict}``.

    With ``split_long`` one recording becomes N windows (N outputs); the
    tally's ``input`` counts the windows beyond the first, which the jobs add
    to their input count so ``input = accepted + rejected`` holds.
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
        out = (
            examples
            | "GroupMembers" >> beam.ParDo(GroupMembers())
            | "DecodeAndRun"
            >> beam.ParDo(
                EncodeClips(self.audio_config, self.spec, self.decode_threads, self.decode_pool)
            ).with_outputs("rejects", "tally", main="ok")
        )
        return {"ok": out.ok, "rejects": out.rejects, "tally": out.tally}
