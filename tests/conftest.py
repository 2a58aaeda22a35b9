"""Shared test fixtures: tiny synthetic audio written with soundfile, so unit
tests need no corpus, and the ``gpu`` marker's clean skip without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a core dependency
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def sine(seconds: float, sr: int = 16000, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * sr), dtype=np.float64) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, sr: int = 16000, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(round(seconds * sr))).astype(np.float32)


@pytest.fixture
def make_wav(tmp_path):
    """Write a WAV and return its path: ``make_wav("a.wav", seconds=1.0, kind="sine")``."""

    def _make(
        name: str,
        seconds: float = 1.0,
        sr: int = 16000,
        kind: str = "sine",
        channels: int = 1,
        subtype: str = "PCM_16",
        freq: float = 220.0,
        seed: int = 0,
    ) -> str:
        wave = sine(seconds, sr, freq) if kind == "sine" else noise(seconds, sr, seed=seed)
        if channels > 1:
            wave = np.stack([wave] * channels, axis=1)
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wave, sr, subtype=subtype)
        return str(path)

    return _make


@pytest.fixture
def waveforms():
    """A few 16 kHz clips of different lengths and content."""
    return [
        sine(0.5, freq=220.0),
        sine(1.3, freq=440.0),
        noise(0.8, seed=1),
        sine(2.0, freq=330.0) + noise(2.0, amp=0.02, seed=2),
    ]


# A tiny mini-FLEURS (real UDHR text, real espeak speech) built once per test
# session, and an mfcc codebook fitted on it through the real job.
MINI_LANGS = ("fr", "de", "sw")


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory):
    from corpora.synth.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("mini")
    synthesize_corpus(
        SynthConfig(out=str(out), langs=MINI_LANGS, per_lang=5, voices=2, seed=0, workers=1)
    )
    return out


@pytest.fixture(scope="session")
def mfcc_codebook(mini_corpus, tmp_path_factory):
    from pipelines.fit_codebook import run
    from pipelines.job_configs import FitCodebookJobConfig
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    out = tmp_path_factory.mktemp("cb") / "mfcc-k16"
    config = FitCodebookJobConfig(
        manifest=ManifestConfig(format="fleurs", input=str(mini_corpus / "fleurs")),
        encoder=EncoderConfig(name="mfcc"),
        k=16,
        out=str(out),
        sample_frames=5000,
        save_sample=True,
    )
    run(config)
    return out
