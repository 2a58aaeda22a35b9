"""Beam RunInference glue for the speech encoders (the one module under
``tokenizer/`` that imports apache_beam).

Elements are ``(key, waveform)``: ``key`` any picklable id (the utterance id),
``waveform`` 1-D float 16 kHz mono. Predictions are ``(key, features)`` with
``features`` float32 ``[encoder.n_frames(len(waveform)), encoder.dim]``.

Why a handler of our own rather than Beam's PyTorch one:

- batches are sized by total audio, not element count: ``element_size_fn``
  weighs each clip in centiseconds and ``BatchElements`` targets
  ``batch_seconds`` of audio (Beam 2.77's ``BatchElements`` takes
  ``min/max_batch_size`` in units of ``element_size_fn``; it has no
  ``max_batch_weight``, which only ``SortAndBatchElements`` accepts). The
  encoder then sorts each batch by length and splits it into padded
  sub-batches of ``max_batch_seconds`` with masks;
- one bad clip must not sink its batch: a preprocessing step checks each
  element, so with ``RunInference(...).with_exception_handling()`` a bad clip
  lands alone in ``failed_preprocessing[0]`` (as ``(element, error)``); when
  the model fails on a batch of several clips, each clip is encoded again
  alone and one that still fails gets an :class:`EncodeFailure` as its
  prediction, so ``failed_inferences`` only holds single-clip batches. The
  retry happens here, not in a branch flattened back into the output,
  because Beam's embedded runner materialises a Flatten's inputs: every
  feature array of the corpus would sit in memory at once;
- on CUDA the model is a ``large_model``: one copy per worker machine,
  shared across processes; on CPU each process holds its own copy, shared by
  its threads (Beam's default).

Example::

    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    handler = EncoderModelHandler(EncoderConfig(name="whisper-base", layer=3))
    main, failed = (
        clips  # PCollection of (utt_id, np.float32 waveform)
        | RunInference(handler).with_exception_handling()
    )
    # main: (utt_id, float32 [n_frames, 512] or EncodeFailure);
    # failed.failed_preprocessing[0]: bad clips
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from tokenizer.encoders import Encoder, EncoderConfig, build_encoder
from tokenizer.encoders.base import SAMPLE_RATE, check_waveform

CENTISECOND = SAMPLE_RATE // 100
# A Beam batch spans several encoder batches, so the encoder can sort a wider
# pool by length (less padding) while each forward pass stays bounded.
BATCH_OVER_ENCODER_BATCH = 4

Element = tuple[Any, np.ndarray]


@dataclasses.dataclass(frozen=True)
class EncodeFailure:
    """The prediction of a clip the model failed on even when encoded alone."""

    error: str


def clip_weight(element: Element) -> int:
    """A clip's weight for BatchElements: its length in centiseconds (>= 1)."""
    return max(1, len(element[1]) // CENTISECOND)


def check_element(element: Element) -> Element:
    """Preprocessing: ``(key, 1-D finite float waveform)`` or a ValueError that
    RunInference's exception handling routes to ``failed_preprocessing``."""
    if not isinstance(element, tuple) or len(element) != 2:
        raise ValueError(f"expected a (key, waveform) tuple, got {type(element).__name__}")
    key, wave = element
    return key, check_waveform(wave)


class EncoderModelHandler(ModelHandler[Element, Element, Encoder]):
    """RunInference handler wrapping :func:`build_encoder` (see module doc).

    ``batch_seconds``: audio per Beam batch (default: 4 x the encoder's
    ``max_batch_seconds``)."""

    def __init__(self, config: EncoderConfig, *, batch_seconds: float | None = None):
        if batch_seconds is None:
            batch_seconds = BATCH_OVER_ENCODER_BATCH * config.max_batch_seconds
        if not batch_seconds > 0:
            raise ValueError(f"batch_seconds must be positive, got {batch_seconds!r}")
        target = max(1, round(batch_seconds * 100))
        super().__init__(
            min_batch_size=target,
            max_batch_size=target,
            element_size_fn=clip_weight,
            large_model=config.device.startswith("cuda"),
        )
        self._config = config
        self.batch_seconds = float(batch_seconds)

    @property
    def config(self) -> EncoderConfig:
        return self._config

    def load_model(self) -> Encoder:
        fields = dataclasses.asdict(self._config)
        return build_encoder(fields.pop("name"), **fields)

    def run_inference(
        self,
        batch: Sequence[Element],
        model: Encoder,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[Element]:
        keys = [key for key, _ in batch]
        waves = [wave for _, wave in batch]
        try:
            features = model.encode(waves)
        except Exception:
            if len(batch) == 1:
                raise  # RunInference's exception handling reports it
            Metrics.counter("speechtok", "encode.retried_batches").inc()
            features = [_encode_alone(model, wave) for wave in waves]
        return list(zip(keys, features, strict=True))

    def get_preprocess_fns(self):
        return [check_element]

    def validate_inference_args(self, inference_args: dict[str, Any] | None):
        if inference_args:
            raise ValueError(f"EncoderModelHandler takes no inference_args, got {inference_args}")

    def get_num_bytes(self, batch: Sequence[Element]) -> int:
        return int(sum(np.asarray(wave).nbytes for _, wave in batch))

    def get_metrics_namespace(self) -> str:
        return "speechtok_encoder"


def _encode_alone(model: Encoder, wave: np.ndarray) -> np.ndarray | EncodeFailure:
    try:
        return model.encode([wave])[0]
    except Exception as exc:  # this clip fails on its own
        return EncodeFailure(f"{type(exc).__name__}: {exc}")
