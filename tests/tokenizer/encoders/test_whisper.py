"""Whisper code paths on a tiny random Whisper (fast): log-mel, frame
arithmetic, padded/unpadded modes, layer selection against transformers, and
the CTranslate2 conversion against CTranslate2's own converter and runtime."""

import os
import struct

import numpy as np
import pytest

from tests.tokenizer.encoders.helpers import (
    clip,
    cosine_rows,
    save_tiny_ct2_whisper,
    save_tiny_whisper,
)
from tokenizer.encoders import build_encoder
from tokenizer.encoders import whisper_convert as wc
from tokenizer.encoders.whisper import WINDOW_SAMPLES, log_mel

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_whisper(str(tmp_path_factory.mktemp("tiny-whisper")))


@pytest.fixture(scope="module")
def hf_encoder(tiny_dir):
    from transformers import WhisperModel

    return WhisperModel.from_pretrained(tiny_dir, attn_implementation="eager").encoder.eval()


LENGTHS = [1, 159, 160, 161, 319, 320, 321, 12345, 16000, WINDOW_SAMPLES - 100, WINDOW_SAMPLES]


def test_log_mel_matches_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor

    clips = [clip(n / 16000, seed=n) for n in LENGTHS]
    reference = WhisperFeatureExtractor()(clips, sampling_rate=16000, return_tensors="np")
    reference = reference.input_features
    padded, _ = log_mel(clips, padded=True)
    np.testing.assert_allclose(padded.numpy(), reference, atol=1e-5)
    unpadded, n_mel = log_mel(clips, padded=False)
    for i, n in enumerate(LENGTHS):
        assert n_mel[i] == -(-n // 160)
        np.testing.assert_allclose(
            unpadded[i, :, : n_mel[i]].numpy(), reference[i, :, : n_mel[i]], atol=1e-5
        )
        assert not unpadded[i, :, n_mel[i] :].any()


@pytest.mark.parametrize("mode", ["padded", "unpadded"])
def test_frame_counts_are_exact(tiny_dir, mode):
    enc = build_encoder(f"hf:{tiny_dir}", mode=mode, layer=1)
    lengths = [0, 1, 319, 320, 321, 16000, 23457]
    feats = enc.encode([clip(n / 16000, seed=n) for n in lengths])
    assert enc.frame_rate == 50.0 and enc.dim == 32
    for n, f in zip(lengths, feats, strict=True):
        assert f.shape == (enc.n_frames(n), 32) == (-(-n // 320), 32)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_padded_mode_equals_transformers_hidden_states(tiny_dir, hf_encoder, layer):
    """Each layer, in padded mode, is transformers' own hidden_states[layer]
    (the last one after the final layer norm), frames past the clip dropped."""
    from transformers import WhisperFeatureExtractor

    waves = [clip(1.3, seed=1), clip(0.41, seed=2)]
    enc = build_encoder(f"hf:{tiny_dir}", mode="padded", layer=layer)
    ours = enc.encode(waves)
    features = WhisperFeatureExtractor()(waves, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = hf_encoder(features.input_features, output_hidden_states=True)
    for i, wave in enumerate(waves):
        expected = out.hidden_states[layer][i, : enc.n_frames(len(wave))].numpy()
        np.testing.assert_allclose(ours[i], expected, atol=2e-5)


def test_unpadded_is_batch_independent_and_close_to_padded(tiny_dir):
    waves = [clip(s, seed=i) for i, s in enumerate((0.2, 1.7, 0.9, 0.33))]
    enc = build_encoder(f"hf:{tiny_dir}", layer=2)
    assert enc.config.mode == "unpadded" and enc.identity().mode == "unpadded"
    batched = enc.encode(waves)
    for wave, feats in zip(waves, batched, strict=True):
        np.testing.assert_allclose(feats, enc.encode([wave])[0], atol=1e-5)
    padded = build_encoder(f"hf:{tiny_dir}", layer=2, mode="padded").encode(waves)
    # Same weights, different attention context: close but not equal.
    cos = np.concatenate([cosine_rows(a, b) for a, b in zip(batched, padded, strict=True)])
    assert cos.mean() > 0.9 and not np.allclose(batched[1], padded[1])


def test_unpadded_layer_zero_equals_padded_except_the_edge(tiny_dir):
    wave = clip(0.77, seed=5)
    a = build_encoder(f"hf:{tiny_dir}", layer=0, mode="padded").encode([wave])[0]
    b = build_encoder(f"hf:{tiny_dir}", layer=0, mode="unpadded").encode([wave])[0]
    np.testing.assert_allclose(a[:-1], b[:-1], atol=1e-5)


def test_long_clips_are_cut_into_30s_windows(tiny_dir):
    enc = build_encoder(f"hf:{tiny_dir}", layer=1, max_batch_seconds=60)
    wave = clip(31.0, seed=7)
    feats = enc.encode([wave])[0]
    assert feats.shape == (enc.n_frames(len(wave)), 32) == (1550, 32)
    np.testing.assert_allclose(feats[:1500], enc.encode([wave[:WINDOW_SAMPLES]])[0], atol=1e-5)
    np.testing.assert_allclose(feats[1500:], enc.encode([wave[WINDOW_SAMPLES:]])[0], atol=1e-5)


def test_layer_defaults_and_bounds(tiny_dir):
    assert build_encoder(f"hf:{tiny_dir}").config.layer == 1  # middle of 2
    with pytest.raises(ValueError, match=r"layer must be 0\.\.2"):
        build_encoder(f"hf:{tiny_dir}", layer=3)


# -- CTranslate2 conversion (the whisper-base path, on a tiny model) ----------


@pytest.fixture(scope="module")
def tiny_ct2(tmp_path_factory):
    return save_tiny_ct2_whisper(str(tmp_path_factory.mktemp("tiny-ct2")))


def test_parse_ct2_round_trips_ctranslate2s_converter(tiny_ct2):
    model, folder = tiny_ct2
    with open(os.path.join(folder, "model.bin"), "rb") as f:
        spec, variables, aliases = wc.parse_ct2(f.read())
    assert spec == "WhisperSpec"
    assert variables["encoder/conv1/weight"].dtype == np.float16
    tensors, heads = wc.ct2_whisper_to_hf_encoder(variables, aliases)
    expected = {f"encoder.{k}": v for k, v in model.model.encoder.state_dict().items()}
    assert heads == 2 and set(tensors) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(tensors[name], value.numpy().astype(np.float16), err_msg=name)


def test_parse_ct2_refuses_damaged_files(tiny_ct2):
    _, folder = tiny_ct2
    with open(os.path.join(folder, "model.bin"), "rb") as f:
        data = f.read()
    with pytest.raises(wc.CT2FormatError, match="truncated"):
        wc.parse_ct2(data[: len(data) // 2])
    with pytest.raises(wc.CT2FormatError, match="version"):
        wc.parse_ct2(struct.pack("<I", 99) + data[4:])
    with pytest.raises(wc.CT2FormatError, match="trailing"):
        wc.parse_ct2(data + b"\0\0\0\0\0")


def test_whisper_base_path_on_split_halves_matches_ctranslate2(tiny_ct2, tmp_path, monkeypatch):
    """The real pipeline (join halves -> parse -> map -> cache -> encoder) on a
    tiny CTranslate2 model split in two, checked against CTranslate2's encoder;
    a changed source gets a new cache entry."""
    import ctranslate2

    _, folder = tiny_ct2
    with open(os.path.join(folder, "model.bin"), "rb") as f:
        data = f.read()
    halves = [str(tmp_path / "model.bin.part1"), str(tmp_path / "model.bin.part2")]
    cut = len(data) // 2 + 7  # anywhere: the halves are plain byte ranges
    for path, chunk in zip(halves, (data[:cut], data[cut:]), strict=True):
        with open(path, "wb") as f:
            f.write(chunk)
    monkeypatch.setattr(wc, "source_files", lambda: halves)
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "cache"))

    first = wc.whisper_base_weights()
    assert first.startswith(str(tmp_path / "cache")) and os.path.exists(first)
    import hashlib

    assert os.path.basename(first).startswith(f"encoder-{hashlib.sha256(data).hexdigest()[:16]}")
    enc = build_encoder("whisper-base", layer=2, mode="padded")
    waves = [clip(1.1, seed=3), clip(0.5, seed=4)]
    ours = enc.encode(waves)
    features, _ = log_mel(waves, padded=True)
    reference = ctranslate2.models.Whisper(folder, compute_type="float32").encode(
        ctranslate2.StorageView.from_array(features.numpy())
    )
    reference = np.array(reference)
    for i, wave in enumerate(waves):
        cos = cosine_rows(ours[i], reference[i, : enc.n_frames(len(wave))])
        assert cos.min() > 0.999

    with open(halves[0], "r+b") as f:  # change one byte of the first weights
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    os.utime(halves[0], ns=(1, 1))
    second = wc.whisper_base_weights()
    assert second != first and os.path.exists(second) and os.path.exists(first)


def test_bf16_autocast_on_cpu_stays_close_to_float32(tiny_dir):
    waves = [clip(0.8, seed=8), clip(0.3, seed=9)]
    exact = build_encoder(f"hf:{tiny_dir}", layer=2).encode(waves)
    fast = build_encoder(f"hf:{tiny_dir}", layer=2, dtype="bfloat16").encode(waves)
    for a, b in zip(exact, fast, strict=True):
        assert b.dtype == np.float32 and cosine_rows(a, b).min() > 0.99


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("mode", ["padded", "unpadded"])
def test_cuda_matches_cpu(tiny_dir, dtype, mode):
    waves = [clip(s, seed=i) for i, s in enumerate((0.2, 1.7, 0.9))]
    cpu = build_encoder(f"hf:{tiny_dir}", layer=2, mode=mode).encode(waves)
    gpu = build_encoder(f"hf:{tiny_dir}", layer=2, mode=mode, device="cuda", dtype=dtype)
    for a, b in zip(cpu, gpu.encode(waves), strict=True):
        assert b.shape == a.shape and cosine_rows(a, b).min() > (
            0.9999 if dtype == "float32" else 0.99
        )
