"""An encoder and what follows it, on one device: clips in, what a job keeps out.

Why: measured on an H100 (DESIGN "GPU workers"), the tokenize job kept the GPU
~1 % busy partly because every clip's float32 features left the GPU, crossed
a process boundary as a pickle and were assigned to centroids on the CPU one
utterance at a time. Here the codebook sits on the encoder's device, so the
features never leave it: the job gets back token ids and run lengths
(:class:`TokenTask`) or, for fit-codebook, the downsampled frames it samples
(:class:`FrameTask`).

On CPU the features are plain host arrays and each clip is assigned alone,
exactly as before this module existed, so CPU tokens are unchanged. On CUDA
the clips of one call are downsampled and assigned together in one pass
(:func:`kmeans.postprocess.tensors_to_tokens`).

A batch the model fails on is retried clip by clip; a clip that still fails
gets an :class:`EncodeFailure` as its output, so one bad clip costs one
reject, not a batch. One model serves every thread of a worker process
(Beam's harness threads share it): calls are serialised by a lock, because
concurrent forward passes on one device only add memory.

Example::

    model = SpeechModel.load(EncoderConfig(name="mfcc"), TokenTask(codebook="cb/mfcc-k64"))
    tokens = model.run([wave_a, wave_b])     # [Tokens(tokens, durations), ...]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from datastore.identity import FeatureIdentity
from tokenizer.encoders import Encoder, build_from_config
from tokenizer.encoders import check_identity as check_encoder_identity
from tokenizer.encoders.base import EncoderConfig


@dataclass(frozen=True, kw_only=True)
class TokenTask:
    """Assign each frame to its nearest centroid of the codebook at ``codebook``
    (a folder URI), downsampled as the codebook was fitted; ``dedup``:
    run-length deduplicate."""

    codebook: str
    dedup: bool = False


@dataclass(frozen=True, kw_only=True)
class FrameTask:
    """Return each clip's frames averaged over groups of ``downsample`` (what
    the codebook will be fitted on)."""

    downsample: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.downsample, int) or self.downsample < 1:
            raise ValueError(f"downsample must be an integer >= 1, got {self.downsample!r}")


@dataclass(frozen=True)
class EncodeFailure:
    """The output of a clip the model failed on even when encoded alone."""

    error: str


# A model call spans several encoder batches, so the encoder can sort a wider
# pool by length (less padding) while each forward pass stays bounded.
BATCH_OVER_ENCODER_BATCH = 4


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything a worker needs to build its :class:`SpeechModel`: picklable,
    Beam-free (the speech jobs' DoFn holds one). ``identity``: the encoder identity the launcher planned
    (``describe_encoder``), checked when the model loads. ``batch_seconds``:
    audio per model call (default: 4 x the encoder's ``max_batch_seconds``)."""

    encoder: EncoderConfig
    task: TokenTask | FrameTask | None = None
    identity: FeatureIdentity | None = None
    batch_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.batch_seconds is None:
            default = BATCH_OVER_ENCODER_BATCH * self.encoder.max_batch_seconds
            object.__setattr__(self, "batch_seconds", float(default))
        if not self.batch_seconds > 0:
            raise ValueError(f"batch_seconds must be positive, got {self.batch_seconds!r}")

    def load(self) -> SpeechModel:
        return SpeechModel.load(self.encoder, self.task, identity=self.identity)


class CodebookDoesNotFit(ValueError):
    """The codebook's centroids do not have the encoder's feature dimension."""


class SpeechModel:
    """An :class:`~tokenizer.encoders.Encoder` plus its task, ready to run (module doc)."""

    def __init__(self, encoder: Encoder, task: TokenTask | FrameTask | None = None):
        self.encoder = encoder
        self.task = task
        self.codebook = None
        self.on_device = encoder.uses_torch and encoder.config.device.startswith("cuda")
        if isinstance(task, TokenTask):
            from kmeans import Codebook
            from kmeans.postprocess import PostprocessConfig

            self.codebook = Codebook.load(task.codebook)
            check_codebook_dim(self.codebook.dim, encoder.dim, task.codebook)
            # Read once: the metadata is a deep copy per access (a JSON round trip).
            self._postprocess = PostprocessConfig.from_metadata(self.codebook.metadata)
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        config: EncoderConfig,
        task: TokenTask | FrameTask | None = None,
        *,
        identity: FeatureIdentity | None = None,
    ) -> SpeechModel:
        """Build the encoder (and load the codebook); ``identity``: what the
        launcher planned from configs alone, checked against the loaded model."""
        encoder = build_from_config(config)
        if identity is not None:
            check_encoder_identity(encoder, identity)
        return cls(encoder, task)

    def run(self, waves: Sequence[np.ndarray], *, on_retry=None) -> list:
        """One output per clip, in order: features (no task), ``Tokens`` or frames,
        or :class:`EncodeFailure` for a clip the model cannot encode even alone.
        ``on_retry()`` is called when a failed batch is retried clip by clip."""
        with self._lock:
            try:
                return self._run(waves)
            except Exception:
                if len(waves) == 1:
                    raise  # the caller reports a lone failure itself
                if on_retry is not None:
                    on_retry()
                return [self._run_alone(wave) for wave in waves]

    def _run_alone(self, wave: np.ndarray):
        try:
            return self._run([wave])[0]
        except Exception as exc:  # this clip fails on its own
            return EncodeFailure(f"{type(exc).__name__}: {exc}")

    def _run(self, waves: Sequence[np.ndarray]) -> list:
        feats = self.encoder.encode(waves, as_tensors=self.on_device)
        if isinstance(self.task, TokenTask):
            return self._tokens(feats)
        if isinstance(self.task, FrameTask):
            return self._frames(feats)
        return [f.cpu().numpy() if self.on_device else f for f in feats]

    def _tokens(self, feats: list) -> list:
        from kmeans.kernels import single_threaded_ops
        from kmeans.postprocess import frames_to_tokens, tensors_to_tokens

        if self.on_device:
            return tensors_to_tokens(self.codebook, feats, dedup=self.task.dedup)
        # One utterance is a small matmul: torch's OpenMP threads would only wait
        # at barriers for cores the decode threads hold (the stand-in benchmark
        # spent most of its model time there). Same tokens: no GEMM here splits
        # the reduction across threads.
        config, dedup = self._postprocess, self.task.dedup
        with single_threaded_ops():
            return [frames_to_tokens(self.codebook, f, dedup=dedup, config=config) for f in feats]

    def _frames(self, feats: list) -> list[np.ndarray]:
        from kmeans.postprocess import downsample_frames, downsample_tensor

        factor = self.task.downsample
        if self.on_device:
            return [downsample_tensor(f, factor).cpu().numpy() for f in feats]
        return [downsample_frames(f, factor) for f in feats]


def check_codebook_dim(codebook_dim: int, encoder_dim: int, where: str) -> None:
    if codebook_dim != encoder_dim:
        raise CodebookDoesNotFit(
            f"codebook {where} has {codebook_dim}-dim centroids but the encoder gives "
            f"{encoder_dim}-dim features: fit a codebook on this encoder"
        )
