"""Token post-processing: downsampling (e.g. 50 Hz -> 25 Hz) and run-length dedup.

Decision on downsampling: by default (``mode="mean"``) the encoder features
of each group of ``factor`` consecutive frames are **averaged before
assignment**, and the codebook is fitted on features averaged the same way.
Averaging keeps information from every frame (taking every 2nd token would
throw half the frames away) and halves the assignment cost. The last group of
an odd-length utterance is the mean of the frames it has, so no audio is
dropped: ``n_tokens == ceil(n_frames / factor)``. ``mode="stride"`` (keep
every ``factor``-th token) exists for codebooks fitted at the full rate.

Both settings travel in the codebook metadata (``downsample``,
``downsample_mode``, and ``dedup`` for the tokenize job's choice), so a
codebook is always applied the way it was fitted::

    cfg = PostprocessConfig(downsample=2)             # 50 Hz Whisper -> 25 Hz
    # fit: downsample each utterance's features (never across utterances), sample, fit
    sample = np.concatenate([downsample_frames(f, 2) for f in per_utterance_features])
    cb = kmeans.fit(sample, 1024).with_metadata(frame_rate=25.0, **cfg.to_metadata())
    # tokenize: the codebook's metadata says how to downsample
    tokens, durations = frames_to_tokens(cb, utterance_features, dedup=True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

DOWNSAMPLE_MODES = ("mean", "stride")


@dataclass(frozen=True, kw_only=True)
class PostprocessConfig:
    """How frames become tokens: ``downsample`` factor and mode, and run-length ``dedup``."""

    downsample: int = 1
    downsample_mode: str = "mean"
    dedup: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.downsample, int) or self.downsample < 1:
            raise ValueError(f"downsample must be an integer >= 1, got {self.downsample!r}")
        if self.downsample_mode not in DOWNSAMPLE_MODES:
            raise ValueError(f"downsample_mode must be one of {DOWNSAMPLE_MODES}")

    def to_metadata(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> PostprocessConfig:
        """The settings a codebook was fitted with (defaults for older metadata)."""
        return cls(
            downsample=int(metadata.get("downsample") or 1),
            downsample_mode=metadata.get("downsample_mode") or "mean",
            dedup=bool(metadata.get("dedup", False)),
        )


class Tokens(NamedTuple):
    """``tokens`` int64; ``durations`` int64 run lengths (in tokens before dedup) or None."""

    tokens: np.ndarray
    durations: np.ndarray | None


def dedup(tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    """Collapse runs of equal tokens: ``[5, 5, 7, 5] -> ([5, 7, 5], [2, 1, 1])``.

    ``sum(durations) == len(tokens)`` and no two neighbours of the result are equal.
    """
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr.copy(), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], arr[1:] != arr[:-1])))
    durations = np.diff(np.append(starts, arr.size)).astype(np.int64)
    return arr[starts], durations


def expand(tokens: Any, durations: Any) -> np.ndarray:
    """Inverse of :func:`dedup`: repeat each token by its duration."""
    return np.repeat(np.asarray(tokens), np.asarray(durations, dtype=np.int64))


def downsample_frames(features: Any, factor: int) -> np.ndarray:
    """Average each group of ``factor`` consecutive frames (last group: what is left).

    ``[n, d] -> [ceil(n / factor), d]`` float32; ``factor=1`` returns the input as float32.
    """
    arr = np.asarray(features, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"features must be [frames, dim], got shape {arr.shape}")
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if factor == 1 or arr.shape[0] == 0:
        return arr
    n, d = arr.shape
    full = n // factor
    out = np.empty((-(-n // factor), d), dtype=np.float32)
    out[:full] = arr[: full * factor].reshape(full, factor, d).mean(axis=1, dtype=np.float64)
    if full * factor < n:
        out[full] = arr[full * factor :].mean(axis=0, dtype=np.float64)
    return out


def downsample_tensor(features, factor: int):
    """:func:`downsample_frames` for a torch tensor, on its device (float32 means)."""
    if factor == 1 or features.shape[0] == 0:
        return features
    n, d = features.shape
    full = n // factor
    head = features[: full * factor].reshape(full, factor, d).mean(dim=1)
    if full * factor == n:
        return head
    import torch

    return torch.cat([head, features[full * factor :].mean(dim=0, keepdim=True)])


def downsample_tokens(tokens: Any, factor: int) -> np.ndarray:
    """Keep every ``factor``-th token (the first of each group): ``ceil(n / factor)`` tokens."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {arr.shape}")
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    return arr[::factor]


def frames_to_tokens(
    codebook: Any,
    features: Any,
    *,
    dedup: bool | None = None,
    config: PostprocessConfig | None = None,
    device: str | None = None,
) -> Tokens:
    """Encoder features of one utterance ``[frames, dim]`` -> tokens (+ run lengths).

    Downsampling follows ``config`` or, by default, the codebook's own
    metadata (how it was fitted); ``dedup`` overrides the config's choice.
    """
    cfg = config or PostprocessConfig.from_metadata(codebook.metadata)
    use_dedup = cfg.dedup if dedup is None else bool(dedup)
    if cfg.downsample > 1 and cfg.downsample_mode == "mean":
        tokens = codebook.assign(downsample_frames(features, cfg.downsample), device=device)
    else:
        tokens = codebook.assign(features, device=device)
        if cfg.downsample > 1:
            tokens = downsample_tokens(tokens, cfg.downsample)
    if not use_dedup:
        return Tokens(tokens, None)
    return Tokens(*_dedup_tokens(tokens))


# The module-level name ``dedup`` is shadowed by the keyword inside frames_to_tokens.
_dedup_tokens = dedup


def tensors_to_tokens(codebook: Any, features: list, *, dedup: bool | None = None) -> list[Tokens]:
    """:func:`frames_to_tokens` for several clips whose features are torch tensors
    on one device: downsampled there and assigned in one pass, so only token
    ids cross to the host. Agrees with the per-clip numpy path up to float32
    rounding of the means (the numpy path averages in float64)."""
    cfg = PostprocessConfig.from_metadata(codebook.metadata)
    use_dedup = cfg.dedup if dedup is None else bool(dedup)
    if not features:
        return []
    mean = cfg.downsample > 1 and cfg.downsample_mode == "mean"
    feats = [downsample_tensor(f, cfg.downsample) if mean else f for f in features]
    import torch

    labels = codebook.assign_tensor(torch.cat(feats)).cpu().numpy()
    out, start = [], 0
    for f in feats:
        tokens = labels[start : start + f.shape[0]]
        start += f.shape[0]
        if cfg.downsample > 1 and not mean:
            tokens = downsample_tokens(tokens, cfg.downsample)
        out.append(Tokens(*_dedup_tokens(tokens)) if use_dedup else Tokens(tokens, None))
    return out
