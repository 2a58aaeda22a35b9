"""``hf:`` encoders on tiny random wav2vec 2.0 / HuBERT / w2v-BERT 2.0 models
saved to a temp dir (offline): every layer equals transformers' own
hidden_states[layer], frame counts are exact, masks make batching invisible."""

import os
from pathlib import Path

import numpy as np
import pytest

from tests.tokenizer.encoders.helpers import (
    clip,
    save_tiny_w2v_bert,
    save_tiny_wav2vec2,
    save_tiny_whisper,
)
from tokenizer.encoders import build_encoder
from tokenizer.encoders import hf as hf_module
from tokenizer.encoders.whisper import WhisperEncoder

torch = pytest.importorskip("torch")

MODELS = {
    "wav2vec2": lambda d: save_tiny_wav2vec2(d, "wav2vec2", masks=False),
    "hubert-masked": lambda d: save_tiny_wav2vec2(d, "hubert", masks=True),
    "w2v-bert": save_tiny_w2v_bert,
}
LENGTHS = [16000, 7001, 12345, 3333]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-hf")
    return {name: save(str(root / name)) for name, save in MODELS.items()}


def _reference_hidden_states(folder, wave):
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    inputs = extractor([wave], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("name", list(MODELS))
def test_every_layer_equals_transformers_hidden_states(model_dirs, name):
    wave = clip(0.9, seed=11)
    reference = _reference_hidden_states(model_dirs[name], wave)
    depth = len(reference) - 1
    for layer in range(depth + 1):
        enc = build_encoder(f"hf:{model_dirs[name]}", layer=layer)
        feats = enc.encode([wave])[0]
        expected = reference[layer][0].numpy()
        assert feats.shape == (enc.n_frames(len(wave)), enc.dim) == expected.shape
        np.testing.assert_allclose(feats, expected, atol=3e-5, err_msg=f"layer {layer}")


@pytest.mark.parametrize("name", list(MODELS))
def test_batching_does_not_change_features(model_dirs, name):
    enc = build_encoder(f"hf:{model_dirs[name]}")
    waves = [clip(n / 16000, seed=n) for n in LENGTHS]
    batched = enc.encode(waves)
    for wave, feats in zip(waves, batched, strict=True):
        np.testing.assert_allclose(feats, enc.encode([wave])[0], atol=1e-5)


def test_models_without_masks_run_clips_alone(model_dirs):
    plain = build_encoder(f"hf:{model_dirs['wav2vec2']}", max_batch_seconds=100)
    masked = build_encoder(f"hf:{model_dirs['hubert-masked']}", max_batch_seconds=100)
    similar = [15000, 16000, 14000, 15500]
    assert plain.plan_batches(similar) == [[1], [3], [0], [2]]
    assert masked.plan_batches(similar) == [[1, 3, 0, 2]]


@pytest.mark.parametrize("name", list(MODELS))
def test_frame_counts_follow_the_models_own_arithmetic(model_dirs, name):
    enc = build_encoder(f"hf:{model_dirs[name]}")
    lengths = [0, 1, 399, 400, 401, 959, 4321]
    feats = enc.encode([clip(n / 16000, seed=n) for n in lengths])
    for n, f in zip(lengths, feats, strict=True):
        assert f.shape == (enc.n_frames(n), 32)
    identity = enc.identity()
    assert identity.encoder == f"hf:{model_dirs[name]}" and identity.mode is None
    # conv strides 5*4*2 = 40 samples -> 400 Hz; w2v-BERT: 10 ms fbank, stacked by 2 -> 50 Hz
    assert identity.frame_rate == (50.0 if name == "w2v-bert" else 400.0)


def test_whisper_checkpoints_use_the_whisper_path(tmp_path):
    enc = build_encoder(f"hf:{save_tiny_whisper(str(tmp_path / 'w'))}", mode="padded")
    assert isinstance(enc, WhisperEncoder) and enc.identity().mode == "padded"
    with pytest.raises(ValueError, match="Whisper encoders only"):
        build_encoder(f"hf:{save_tiny_wav2vec2(str(tmp_path / 'v'))}", mode="padded")


def test_remote_folders_are_copied_once_through_the_storage_module(
    model_dirs, tmp_path, monkeypatch
):
    """A gs:// model folder is read through datastore.storage (Beam FileSystems in
    production; an in-memory store here) into the user cache, once."""
    folder = model_dirs["hubert-masked"]
    store = {
        f"gs://bucket/models/hubert/{name}": (Path(folder) / name).read_bytes()
        for name in os.listdir(folder)
    }
    reads = []
    monkeypatch.setattr(hf_module.storage, "list_files", lambda prefix, suffix="": sorted(store))
    monkeypatch.setattr(
        hf_module.storage, "read_bytes", lambda uri: reads.append(uri) or store[uri]
    )
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "cache"))
    enc = build_encoder("hf:gs://bucket/models/hubert/", layer=2)
    assert sorted(reads) == sorted(store)
    wave = clip(0.5, seed=1)
    np.testing.assert_allclose(
        enc.encode([wave])[0], build_encoder(f"hf:{folder}", layer=2).encode([wave])[0], atol=1e-6
    )
    build_encoder("hf:gs://bucket/models/hubert/", layer=1)
    assert len(reads) == len(store)  # second build: served from the cache


def test_raw_waveform_models_work_without_a_preprocessor_config(model_dirs, tmp_path):
    """wav2vec 2.0 checkpoints often ship no preprocessor_config.json:
    transformers' defaults (normalise, no masks for group-norm models) apply."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(model_dirs["wav2vec2"], bare)
    (bare / "preprocessor_config.json").unlink()
    wave = clip(0.6, seed=4)
    np.testing.assert_array_equal(
        build_encoder(f"hf:{bare}").encode([wave])[0],
        build_encoder(f"hf:{model_dirs['wav2vec2']}").encode([wave])[0],
    )


@pytest.mark.gpu
def test_cuda_bf16_matches_cpu(model_dirs):
    from tests.tokenizer.encoders.helpers import cosine_rows

    waves = [clip(n / 16000, seed=n) for n in LENGTHS]
    folder = model_dirs["w2v-bert"]
    cpu = build_encoder(f"hf:{folder}").encode(waves)
    gpu = build_encoder(f"hf:{folder}", device="cuda", dtype="bfloat16").encode(waves)
    for a, b in zip(cpu, gpu, strict=True):
        assert b.shape == a.shape and cosine_rows(a, b).min() > 0.99
