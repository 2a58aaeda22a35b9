"""Beam ``ModelHandler`` for the speech model (the one module under ``tokenizer/``
that imports apache_beam).

The handler owns a :class:`~tokenizer.speech_model.SpeechModel`: the encoder
and, for tokenize, the codebook, on one device. Elements are ``(key,
waveform)``: ``key`` any picklable value (an utterance id, an AudioExample),
``waveform`` 1-D float 16 kHz mono. Predictions are ``(key, output)`` with
``output`` what the task makes of the clip: float32 features ``[n_frames,
dim]`` without a task, ``kmeans.postprocess.Tokens`` for a
:class:`~tokenizer.speech_model.TokenTask`, downsampled frames for a
:class:`~tokenizer.speech_model.FrameTask`, or an ``EncodeFailure`` for a clip
the model failed on even alone.

Two ways to run it:

- our jobs use the same :class:`~tokenizer.speech_model.ModelSpec` directly
  from :class:`pipelines.speech.EncodeClips`, which decodes clips on a thread
  pool ahead of the model (RunInference would decode in the thread that runs
  the model, one clip after another; and importing Beam's ML package alone
  took seconds of a job's start-up);
- anyone may use it with ``RunInference(handler).with_exception_handling()``:
  batches are sized by audio seconds (``element_size_fn`` weighs each clip in
  centiseconds; Beam 2.77's ``BatchElements`` has no weight cap of its own),
  a bad clip lands alone in ``failed_preprocessing[0]``.

The model is never a Beam ``large_model``: a proxy process would pickle every
batch of audio and features across a socket; one copy per worker process,
shared by its threads, fits many times in any GPU.

Example::

    handler = SpeechModelHandler(EncoderConfig(name="whisper-base"), TokenTask(codebook=cb))
    main, failed = clips | RunInference(handler).with_exception_handling()
    # main: (utt_id, Tokens(tokens, durations) or EncodeFailure)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from tokenizer.encoders.base import SAMPLE_RATE, EncoderConfig, check_waveform
from tokenizer.speech_model import EncodeFailure, FrameTask, ModelSpec, SpeechModel, TokenTask

__all__ = ["EncodeFailure", "SpeechModelHandler", "check_element", "clip_weight"]

CENTISECOND = SAMPLE_RATE // 100

Element = tuple[Any, np.ndarray]


def clip_weight(element: Element) -> int:
    """A clip's weight for BatchElements: its length in centiseconds (>= 1)."""
    return max(1, len(element[1]) // CENTISECOND)


def _count_retry() -> None:
    Metrics.counter("speechtok", "encode.retried_batches").inc()


def check_element(element: Element) -> Element:
    """Preprocessing: ``(key, 1-D finite float waveform)`` or a ValueError that
    RunInference's exception handling routes to ``failed_preprocessing``."""
    if not isinstance(element, tuple) or len(element) != 2:
        raise ValueError(f"expected a (key, waveform) tuple, got {type(element).__name__}")
    key, wave = element
    return key, check_waveform(wave)


class SpeechModelHandler(ModelHandler[Element, Element, SpeechModel]):
    """RunInference handler of a :class:`SpeechModel` (see module doc).

    ``batch_seconds``: audio per model call (default: 4 x the encoder's
    ``max_batch_seconds``); ``identity``: the encoder identity the launcher
    planned (``describe_encoder``), checked when the model loads."""

    def __init__(
        self,
        config: EncoderConfig,
        task: TokenTask | FrameTask | None = None,
        *,
        batch_seconds: float | None = None,
        identity: dict | None = None,
    ):
        self.spec = ModelSpec(
            encoder=config, task=task, identity=identity, batch_seconds=batch_seconds
        )
        target = max(1, round(self.spec.batch_seconds * 100))
        super().__init__(min_batch_size=target, max_batch_size=target, element_size_fn=clip_weight)

    @property
    def config(self) -> EncoderConfig:
        return self.spec.encoder

    @property
    def task(self) -> TokenTask | FrameTask | None:
        return self.spec.task

    @property
    def batch_seconds(self) -> float:
        return self.spec.batch_seconds

    def load_model(self) -> SpeechModel:
        return self.spec.load()

    def run_inference(
        self,
        batch: Sequence[Element],
        model: SpeechModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[Element]:
        outputs = model.run([wave for _, wave in batch], on_retry=_count_retry)
        return list(zip((key for key, _ in batch), outputs, strict=True))

    def get_preprocess_fns(self):
        return [check_element]

    def validate_inference_args(self, inference_args: dict[str, Any] | None):
        if inference_args:
            raise ValueError(f"SpeechModelHandler takes no inference_args, got {inference_args}")

    def get_num_bytes(self, batch: Sequence[Element]) -> int:
        return int(sum(np.asarray(wave).nbytes for _, wave in batch))

    def get_metrics_namespace(self) -> str:
        return "speechtok_encoder"
