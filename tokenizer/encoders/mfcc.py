"""``mfcc``: a weight-free spectral baseline (13 MFCC + deltas + delta-deltas).

Why: tests and CI need an encoder that is instant, deterministic and needs no
download, and k-means on MFCCs is the floor that any learned encoder must beat
(HuBERT's first iteration clusters exactly these 39 features). Numpy only, no
librosa/torchaudio.

Frames are at 50 Hz, like Whisper's, so codebooks, run lengths and shard
frame counts behave the same with either encoder: 25 ms windows every 20 ms,
frame ``i`` centred on sample ``320 * i`` (zero padding at both ends), hence
``n_frames(n) = ceil(n / 320)``. Each frame: DC removal, pre-emphasis 0.97,
Hann window, 512-point power spectrum, 40 HTK mel filters (20-7600 Hz), log,
DCT-II (orthonormal), 13 coefficients, cepstral lifter 22; deltas by the
usual +-2 frame regression. The clip is processed alone, so features never
depend on batching.

Example::

    enc = build_encoder("mfcc")
    enc.encode([np.zeros(16000, np.float32)])[0].shape   # (50, 39)
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from datastore.identity import FeatureIdentity
from tokenizer.encoders import register_encoder
from tokenizer.encoders.base import SAMPLE_RATE, Encoder, EncoderConfig

HOP = 320  # 20 ms -> 50 Hz
WINDOW = 400  # 25 ms
N_FFT = 512
N_MELS = 40
N_CEPS = 13
LIFTER = 22
PREEMPHASIS = 0.97
DELTA_WINDOW = 2
LOG_FLOOR = 1e-10


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window, mel filter bank [n_bins, n_mels] and lifted DCT [n_mels, n_ceps]."""
    n = np.arange(WINDOW)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / WINDOW)  # periodic Hann
    bins_hz = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT
    edges = _mel_to_hz(np.linspace(_hz_to_mel(20.0), _hz_to_mel(7600.0), N_MELS + 2))
    fbank = np.zeros((N_FFT // 2 + 1, N_MELS))
    for m in range(N_MELS):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (bins_hz - lo) / (mid - lo)
        falling = (hi - bins_hz) / (hi - mid)
        fbank[:, m] = np.clip(np.minimum(rising, falling), 0.0, None)
    k = np.arange(N_CEPS)[None, :]
    j = np.arange(N_MELS)[:, None]
    dct = np.cos(np.pi * k * (2 * j + 1) / (2 * N_MELS)) * math.sqrt(2.0 / N_MELS)
    dct[:, 0] /= math.sqrt(2.0)
    lifter = 1.0 + (LIFTER / 2.0) * np.sin(np.pi * np.arange(N_CEPS) / LIFTER)
    return window, fbank, dct * lifter[None, :]


def _deltas(feats: np.ndarray) -> np.ndarray:
    """Regression deltas over +-DELTA_WINDOW frames, edges repeated."""
    n = DELTA_WINDOW
    padded = np.pad(feats, ((n, n), (0, 0)), mode="edge")
    length = len(feats)
    num = sum(
        t * (padded[n + t : n + t + length] - padded[n - t : n - t + length])
        for t in range(1, n + 1)
    )
    return num / (2 * sum(t * t for t in range(1, n + 1)))


def mfcc_features(wave: np.ndarray) -> np.ndarray:
    """39-dim MFCC + deltas at 50 Hz for one 16 kHz clip (float32 [ceil(n/320), 39])."""
    n_frames = -(-len(wave) // HOP)
    if n_frames == 0:
        return np.zeros((0, 3 * N_CEPS), np.float32)
    window, fbank, dct = _tables()
    half = WINDOW // 2
    total = (n_frames - 1) * HOP + WINDOW
    signal = np.zeros(total, np.float64)
    signal[half : half + len(wave)] = wave[: total - half]
    frames = np.lib.stride_tricks.sliding_window_view(signal, WINDOW)[::HOP][:n_frames]
    frames = frames - frames.mean(axis=1, keepdims=True)
    emphasised = np.empty_like(frames)
    emphasised[:, 1:] = frames[:, 1:] - PREEMPHASIS * frames[:, :-1]
    emphasised[:, 0] = frames[:, 0] * (1.0 - PREEMPHASIS)
    power = np.abs(np.fft.rfft(emphasised * window, n=N_FFT, axis=1)) ** 2
    ceps = np.log(np.maximum(power @ fbank, LOG_FLOOR)) @ dct
    delta = _deltas(ceps)
    return np.concatenate([ceps, delta, _deltas(delta)], axis=1).astype(np.float32)


def describe_mfcc(config: EncoderConfig) -> FeatureIdentity:
    """The identity of an mfcc encoder (validates the config as building it does)."""
    if config.layer not in (None, 0):
        raise ValueError(f"mfcc has no layers: layer must be 0 or unset, got {config.layer}")
    if config.mode is not None:
        raise ValueError("mode applies to Whisper encoders only")
    if config.device != "cpu" or config.dtype != "float32":
        raise ValueError("mfcc runs in numpy: use device='cpu' and dtype='float32'")
    return FeatureIdentity(
        encoder=config.name, layer=0, mode=None, frame_rate=SAMPLE_RATE / HOP, dim=3 * N_CEPS
    )


@register_encoder("mfcc", describe=describe_mfcc)
class MfccEncoder(Encoder):
    """Weight-free MFCC baseline; ``layer`` is always 0 and ``mode`` unused."""

    uses_torch = False

    def __init__(self, config: EncoderConfig):
        describe_mfcc(config)
        self.config = dataclasses.replace(config, layer=0)
        self.frame_rate = SAMPLE_RATE / HOP
        self.dim = 3 * N_CEPS

    def n_frames(self, n_samples: int) -> int:
        return -(-self._check_n_samples(n_samples) // HOP)

    def _padding_fraction(self, lengths) -> float:
        return 0.0  # each clip is processed alone: nothing is padded

    def _encode_batch(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return [mfcc_features(c) for c in clips]
