"""Beam transforms shared by the speech jobs (fit-codebook, tokenize).

``ReadExamples``: manifest sources -> AudioExamples (+ line rejects), ids
deduplicated across the whole input. ``DecodeAudio``: example -> (example,
16 kHz waveform) or a reject. ``EncodeAudio``: RunInference with our
ModelHandler -> (example, features) or an ``encode_error`` reject. Each
takes and gives plain records; the logic lives in :mod:`tokenizer`.
"""

from __future__ import annotations

import apache_beam as beam

from pipelines import common
from tokenizer import audio
from tokenizer.encoders import EncoderConfig
from tokenizer.manifests import ManifestConfig, duplicate_reject, read_source
from tokenizer.records import AudioExample, Reason, Reject


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
            | "ReadSource" >> beam.FlatMap(lambda src, cfg: read_source(cfg, src), self.config)
        )
        if self.skip_ids:
            skip = self.skip_ids
            items = items | "SkipExisting" >> beam.Filter(
                lambda i: not (isinstance(i, AudioExample) and i.id in skip)
            )
        read = common.route_rejects(items)
        unique = (
            read.ok
            | "CountRead" >> beam.Map(_count, "read")
            | "KeyById" >> beam.Map(lambda e: (e.id, e))
            | "GroupIds" >> beam.GroupByKey()
            | "FirstPerId" >> beam.FlatMap(_first_per_id).with_outputs("rejects", main="ok")
        )
        rejects = (read.rejects, unique.rejects) | "AllReadRejects" >> beam.Flatten()
        return {"items": items, "ok": unique.ok, "rejects": rejects}


def _count(x, name):
    common.counter(name).inc()
    return x


def _first_per_id(id_examples):
    """Keep one example per id, deterministically (smallest URI, then text)."""
    examples = sorted(id_examples[1], key=lambda e: (e.uri, e.text))
    yield examples[0]
    for dup in examples[1:]:
        common.counter(f"rejected.{Reason.DUPLICATE_ID}").inc()
        yield beam.pvalue.TaggedOutput("rejects", duplicate_reject(dup))


class DecodeAudio(beam.PTransform):
    """Examples -> ``{"ok": (example, waveform), "rejects": Reject, "extra_windows": id}``.

    With ``split_long`` one recording becomes N windows (N rows downstream);
    ``extra_windows`` holds one element per window beyond the first, which the
    jobs add to their ``input`` count so ``input = accepted + rejected`` holds.
    """

    def __init__(self, config: audio.AudioConfig):
        super().__init__()
        self.config = config

    def expand(self, examples):
        decoded = (
            examples
            | "Spread" >> beam.Reshuffle()  # decode + encode work spreads over workers
            | "Decode"
            >> beam.FlatMap(_decode, self.config).with_outputs("extra_windows", main="decoded")
        )
        out = common.route_rejects(decoded.decoded)
        return {
            "ok": out.ok | "CountDecoded" >> beam.Map(_count, "decoded"),
            "rejects": out.rejects,
            "extra_windows": decoded.extra_windows,
        }


def _decode(example: AudioExample, config: audio.AudioConfig):
    result = audio.prepare(example, config)
    if isinstance(result, Reject):
        yield result
        return
    yield from result
    for window, _ in result[1:]:
        yield beam.pvalue.TaggedOutput("extra_windows", window.id)


def encode_reject(example: AudioExample, exc: BaseException | str) -> Reject:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return Reject(
        id=example.id,
        source=example.uri,
        stage="encode",
        reason=Reason.ENCODE_ERROR,
        detail=detail[:500],
    )


class EncodeAudio(beam.PTransform):
    """``(example, waveform)`` -> ``{"ok": ((example, n_samples), features), "rejects": Reject}``.

    RunInference with :class:`~tokenizer.model_handler.EncoderModelHandler`
    (batches by audio seconds). A clip the handler's preprocessing refuses
    becomes an ``encode_error`` reject; the clips of a batch the model failed
    on are retried one at a time (inside the handler), so only those that fail
    alone are rejected. The features leave in one stream, split from the
    failures by tagged outputs: a Flatten here would make the embedded runner
    hold every feature array of the corpus in memory.
    """

    def __init__(self, encoder: EncoderConfig):
        super().__init__()
        self.encoder = encoder

    def expand(self, decoded):
        from apache_beam.ml.inference.base import RunInference

        from tokenizer.model_handler import EncoderModelHandler

        keyed = decoded | "KeyWithLength" >> beam.Map(lambda ew: ((ew[0], len(ew[1])), ew[1]))
        main, dlq = (
            keyed
            | "RunInference"
            >> RunInference(EncoderModelHandler(self.encoder)).with_exception_handling()
        )
        bad_clips = dlq.failed_preprocessing[0] | "BadClip" >> beam.Map(
            lambda elem_exc: encode_reject(elem_exc[0][0][0], elem_exc[1])
        )
        bad_batches = dlq.failed_inferences | "BadBatch" >> beam.FlatMap(
            lambda batch_exc: [encode_reject(key[0], batch_exc[1]) for key, _ in batch_exc[0]]
        )
        encoded = main | "SplitFailures" >> beam.FlatMap(_split_failures).with_outputs(
            "rejects", main="ok"
        )
        rejects = (bad_clips, bad_batches, encoded.rejects) | "EncodeRejects" >> beam.Flatten()
        ok = encoded.ok | "CountEncoded" >> beam.Map(_count, "encoded")
        return {
            "ok": ok,
            "rejects": rejects | "CountEncodeRejects" >> beam.Map(_count, "rejected.encode_error"),
        }


def _split_failures(keyed_features):
    from tokenizer.model_handler import EncodeFailure

    key, features = keyed_features
    if isinstance(features, EncodeFailure):
        yield beam.pvalue.TaggedOutput("rejects", encode_reject(key[0], features.error))
    else:
        yield keyed_features
