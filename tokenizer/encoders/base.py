"""The encoder interface: 16 kHz waveforms in, one ``[n_frames, dim]`` float32
array per clip out.

Every encoder shares the batching logic here, so the Beam jobs see one
contract: clips are sorted by length (longest first) and grouped into batches
whose *padded* compute stays under ``max_batch_seconds``; each encoder handles
padding masks inside its ``_encode_batch`` so that a clip's features do not
depend on which other clips share its batch. ``encode`` checks the result
against ``n_frames`` (exact frame arithmetic), because the tokenize job
records ``n_frames`` and run lengths that must add up.

Example::

    from tokenizer.encoders import build_encoder
    enc = build_encoder("mfcc")
    feats = enc.encode([np.zeros(16000, np.float32)])   # [array of shape (50, 39)]
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from datastore.identity import FeatureIdentity
from datastore.settings import setting
from tokenizer.heap import release_free_memory

SAMPLE_RATE = 16000
DTYPES = ("float32", "bfloat16", "float16")
WHISPER_MODES = ("padded", "unpadded")
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
CPU_BATCH_SECONDS = 40.0  # default max_batch_seconds per device (see EncoderConfig)
CUDA_BATCH_SECONDS = 1200.0


@dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """What to build and how to run it.

    ``layer=None`` takes the encoder's default (Whisper and ``hf:`` models: the
    middle layer, as the paper takes USM's middle layer). ``dtype`` other than
    float32: on CPU autocast (bf16, where AMX makes it fast); on CUDA the
    weights are cast once (see ``Encoder.casts_weights``; fp16 only on CUDA).
    ``mode`` is Whisper's ``padded`` (30 s windows) or ``unpadded`` (clip
    length); ``None`` lets the encoder choose.
    ``max_batch_seconds`` bounds the padded audio of one forward pass;
    ``None`` picks the device's default: 40 s on CPU, where big batches only
    add cache misses (whisper-base unpadded on 1 core: 40 s batches as fast as
    one clip at a time, 240 s batches ~20% slower), 1,200 s on CUDA (on an
    H100, whisper-base layer 3 encoded 1.6x faster at 1,200 s than at 40 s in
    fp32; DESIGN "GPU workers").
    ``threads`` sets torch's intra-op threads for the whole process when the
    encoder is built (``None``: torch's default, one per core); use 1 when
    several worker processes share the cores, as Beam's SDK harness does:
    two 2-thread processes on 2 busy cores ran ~5x slower than 1-thread ones.
    """

    name: str = setting(flag="--encoder", help="mfcc | whisper-base | hf:<dir or hub id>")
    layer: int | None = setting(None, help="encoder layer (default: the encoder's own)")
    device: str = setting("cpu", help="cpu | cuda | cuda:N")
    dtype: str = setting(
        "float32",
        choices=DTYPES,
        help="encoder compute dtype (bfloat16 on CPU uses AMX where present; float16: CUDA only)",
    )
    max_batch_seconds: float | None = setting(
        None, help="audio seconds per encoder batch (default: 40 on CPU, 1200 on CUDA)"
    )
    mode: str | None = setting(
        None,
        choices=("padded", "unpadded"),
        help="Whisper only: 30 s padded windows or clip-length (default: unpadded)",
    )
    threads: int | None = setting(
        None, help="torch threads per worker process (1 when several workers share the cores)"
    )

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"encoder name must be a non-empty string, got {self.name!r}")
        if self.layer is not None and (
            isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0
        ):
            raise ValueError(f"layer must be a non-negative int or None, got {self.layer!r}")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.dtype == "float16" and self.device == "cpu":
            raise ValueError("dtype float16 needs a CUDA device; use bfloat16 on CPU")
        if self.max_batch_seconds is None:
            default = CUDA_BATCH_SECONDS if self.device.startswith("cuda") else CPU_BATCH_SECONDS
            object.__setattr__(self, "max_batch_seconds", default)
        seconds = self.max_batch_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"max_batch_seconds must be a number, got {seconds!r}")
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"max_batch_seconds must be positive and finite, got {seconds!r}")
        if self.mode is not None and self.mode not in WHISPER_MODES:
            raise ValueError(f"mode must be one of {WHISPER_MODES} or None, got {self.mode!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ValueError(f"threads must be a positive int or None, got {self.threads!r}")


def resolve_layer(name: str, layer: int | None, depth: int) -> int:
    """The layer a config asks for, defaulting to the middle (the paper's choice)."""
    chosen = depth // 2 if layer is None else layer
    if chosen > depth:
        raise ValueError(f"{name} has {depth} layers; layer must be 0..{depth}")
    return chosen


def check_waveform(wave: Any, index: int = 0) -> np.ndarray:
    """A clip as contiguous 1-D float32 with finite samples, or a ValueError."""
    arr = np.asarray(wave)
    if arr.ndim != 1:
        raise ValueError(f"waveform {index}: expected 1-D mono audio, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"waveform {index}: expected float samples, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"waveform {index}: non-finite samples")
    return arr


def torch_or_hint():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a core dependency
        raise ImportError(
            "this encoder needs torch: pip install torch==2.13.0 (CPU) before speechtok"
        ) from err
    return torch


class Encoder:
    """Base class: subclasses set ``config``, ``frame_rate``, ``dim`` and
    implement ``n_frames`` and ``_encode_batch``.

    ``window_samples``: clips longer than this are cut into windows of this
    many samples, encoded separately and concatenated (Whisper: 30 s). It must
    be a multiple of the samples per frame so that frame counts add up.
    """

    config: EncoderConfig
    frame_rate: float
    dim: int
    window_samples: ClassVar[int | None] = None
    uses_torch: ClassVar[bool] = True
    # A batch closes before padding would exceed this fraction of its audio:
    # sorting alone still lets a 10 s clip pad a dozen 2 s ones (measured on
    # 2 CPU cores: a batch padded 60% cost 1.7x the CPU of one clip at a time).
    max_padding_fraction: ClassVar[float] = 0.25

    # -- to implement ---------------------------------------------------------
    def n_frames(self, n_samples: int) -> int:
        raise NotImplementedError

    def _encode_batch(self, clips: list[np.ndarray]) -> list:
        """Encode non-empty clips (each at most ``window_samples`` long): one
        ``[frames, dim]`` numpy array or torch tensor (any float dtype, on the
        encoder's device) per clip."""
        raise NotImplementedError

    def _batch_cost_seconds(self, lengths: Sequence[int]) -> float:
        """Compute a batch of clips with these lengths costs, in audio seconds
        (default: every clip padded to the longest)."""
        return len(lengths) * max(lengths) / SAMPLE_RATE

    def _padding_fraction(self, lengths: Sequence[int]) -> float:
        """Padded positions over real ones when these clips share a batch."""
        return len(lengths) * max(lengths) / sum(lengths) - 1.0

    def _max_batch_size(self) -> int | None:
        """A hard cap on clips per batch (1 for models that cannot mask padding)."""
        return None

    # -- shared ---------------------------------------------------------------
    def identity(self) -> FeatureIdentity:
        """What a codebook fitted on these features depends on."""
        return FeatureIdentity(
            encoder=self.config.name,
            layer=self.config.layer or 0,
            mode=self.config.mode,
            frame_rate=self.frame_rate,
            dim=self.dim,
        )

    def _check_n_samples(self, n_samples: int) -> int:
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 0:
            raise ValueError(f"n_samples must be a non-negative int, got {n_samples!r}")
        return int(n_samples)

    @property
    def casts_weights(self) -> bool:
        """Reduced precision by casting the weights once (CUDA) instead of autocast (CPU).

        Why: autocast re-casts every weight on each forward pass; on an H100
        with 40 s batches that made bf16 five times slower than fp32 (446x vs
        2,222x real time, DESIGN "GPU workers"). On CPU autocast stays: AMX
        bf16 runs fast under it and CPU tokens stay what they were.
        """
        return self.config.dtype != "float32" and self.config.device.startswith("cuda")

    def compute_dtype(self):
        """The torch dtype weights and inputs are cast to (float32 unless ``casts_weights``)."""
        torch = torch_or_hint()
        return getattr(torch, self.config.dtype) if self.casts_weights else torch.float32

    def _run_context(self):
        """inference_mode, plus autocast when a reduced dtype runs on CPU."""
        if not self.uses_torch:
            return contextlib.nullcontext()
        torch = torch_or_hint()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.config.dtype != "float32" and not self.casts_weights:
            device_type = "cuda" if self.config.device.startswith("cuda") else "cpu"
            stack.enter_context(
                torch.autocast(device_type=device_type, dtype=getattr(torch, self.config.dtype))
            )
        return stack

    def plan_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices of clips that give frames, grouped into batches, longest first, each
        batch's padded cost within ``max_batch_seconds`` and its padding within
        ``max_padding_fraction`` (a single clip over budget still gets a batch
        of its own)."""
        encodable = [i for i, n in enumerate(lengths) if n > 0 and self.n_frames(n) > 0]
        order = sorted(encodable, key=lambda i: -lengths[i])
        cap = self._max_batch_size()
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            candidate = [*current, i]
            sizes = [lengths[j] for j in candidate]
            full = (
                self._batch_cost_seconds(sizes) > self.config.max_batch_seconds
                or self._padding_fraction(sizes) > self.max_padding_fraction
                or (cap is not None and len(current) >= cap)
            )
            if current and full:
                batches.append(current)
                candidate = [i]
            current = candidate
        if current:
            batches.append(current)
        return batches

    def encode(self, waveforms: Sequence[np.ndarray], *, as_tensors: bool = False) -> list:
        """One float32 ``[n_frames(len(w)), dim]`` array per 16 kHz mono clip, in
        input order; batches internally by audio seconds.

        ``as_tensors``: torch tensors left on the encoder's device instead of
        numpy arrays, so a codebook on the same device can assign them without
        a round trip through host memory (:mod:`tokenizer.speech_model`).
        """
        clips = [check_waveform(w, i) for i, w in enumerate(waveforms)]
        pieces: list[np.ndarray] = []
        owners: list[int] = []
        step = self.window_samples
        for i, clip in enumerate(clips):
            if step is None or len(clip) <= step:
                pieces.append(clip)
                owners.append(i)
                continue
            for start in range(0, len(clip), step):
                pieces.append(clip[start : start + step])
                owners.append(i)
        outputs: list = [None] * len(pieces)
        with self._run_context():
            for batch in self.plan_batches([len(p) for p in pieces]):
                feats = self._encode_batch([pieces[i] for i in batch])
                for i, f in zip(batch, feats, strict=True):
                    outputs[i] = _as_output(f, as_tensors)
                if self.uses_torch:  # activations of varying sizes fragment the heap (heap.py)
                    release_free_memory()
        per_clip: list[list] = [[] for _ in clips]
        for i, owner in enumerate(owners):
            out = outputs[i]
            if out is None:  # a piece too short to give a frame
                out = _as_output(
                    np.zeros((0, self.dim), np.float32), as_tensors, self.config.device
                )
            per_clip[owner].append(out)
        result = []
        for clip, parts in zip(clips, per_clip, strict=True):
            feats = parts[0] if len(parts) == 1 else _concat(parts)
            expected = (self.n_frames(len(clip)), self.dim)
            if tuple(feats.shape) != expected:  # an encoder bug, never the caller's
                raise RuntimeError(
                    f"{self.config.name}: got features {tuple(feats.shape)} for {len(clip)} "
                    f"samples, expected {expected}"
                )
            result.append(feats)
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identity()})"


def _as_output(features, as_tensors: bool, device: str | None = None):
    """float32 numpy (host) or float32 torch tensor (device) of one clip's features."""
    if isinstance(features, np.ndarray):
        if not as_tensors:
            return np.ascontiguousarray(features, dtype=np.float32)
        torch = torch_or_hint()
        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(
            device or "cpu"
        )
    features = features.float()
    if as_tensors:
        return features
    return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)


def _concat(parts: list):
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=0)
    return torch_or_hint().cat(parts, dim=0)
