"""Tiny randomly initialised speech models saved to a folder, so the ``hf:``
and Whisper code paths run on real transformers modules in a second, offline."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def clip(seconds: float, seed: int = 0, freq: float = 220.0) -> np.ndarray:
    """A voiced-like test clip: a modulated tone plus a little noise, 16 kHz."""
    n = round(seconds * 16000)
    t = np.arange(n) / 16000
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (wave + 0.02 * rng.standard_normal(n)).astype(np.float32)


def tiny_whisper_config(**overrides):
    from transformers import WhisperConfig

    fields = dict(
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=32,
        vocab_size=100,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        decoder_start_token_id=1,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    fields.update(overrides)
    return WhisperConfig(**fields)


def save_tiny_whisper(folder: str, seed: int = 0) -> str:
    import torch
    from transformers import WhisperModel

    torch.manual_seed(seed)
    WhisperModel(tiny_whisper_config()).save_pretrained(folder)
    return folder


def save_tiny_wav2vec2(folder: str, kind: str = "wav2vec2", masks: bool = False, seed: int = 0):
    """wav2vec 2.0 / HuBERT; ``masks`` picks the layer-norm feature encoder
    (trained with attention masks) and a feature extractor that returns them."""
    import torch
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    config_cls, model_cls = {
        "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
        "hubert": (HubertConfig, HubertModel),
    }[kind]
    config = config_cls(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 2),
        conv_kernel=(10, 8, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if masks else "group",
        do_stable_layer_norm=masks,
        vocab_size=10,
    )
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=masks).save_pretrained(folder)
    return folder


def save_tiny_w2v_bert(folder: str, seed: int = 0) -> str:
    import torch
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    config = Wav2Vec2BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        feature_projection_input_dim=160,
        conv_depthwise_kernel_size=5,
        output_hidden_size=32,
        vocab_size=10,
    )
    torch.manual_seed(seed)
    Wav2Vec2BertModel(config).save_pretrained(folder)
    SeamlessM4TFeatureExtractor().save_pretrained(folder)
    return folder


def save_tiny_ct2_whisper(folder: str, seed: int = 0):
    """A tiny random Whisper converted by CTranslate2's own converter (fp16, like
    the real package). Returns (transformers model, folder)."""
    import torch
    from ctranslate2.converters.transformers import WhisperLoader
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(tiny_whisper_config()).eval()
    loader = WhisperLoader()
    spec = loader.get_model_spec(model)
    spec.config.suppress_ids = []
    spec.config.suppress_ids_begin = []
    spec.config.lang_ids = []
    spec.config.alignment_heads = [[0, 0]]
    spec.register_vocabulary([f"tok{i}" for i in range(model.config.vocab_size)])
    spec.validate()
    spec.optimize(quantization="float16")
    os.makedirs(folder, exist_ok=True)
    spec.save(folder)
    return model, folder


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
