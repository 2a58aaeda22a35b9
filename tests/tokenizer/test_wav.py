"""The numpy WAV reader gives libsndfile's samples exactly, and declines
(None) whatever it does not handle, which then goes to libsndfile."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenizer import audio
from tokenizer.audio_config import AudioConfig
from tokenizer.wav import read_pcm16


def wav_bytes(x: np.ndarray, sr: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@settings(max_examples=60, deadline=None)
@given(
    channels=st.integers(1, 4),
    frames=st.integers(1, 3000),
    sr=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
    fmt=st.sampled_from(["WAV", "WAVEX"]),
    seed=st.integers(0, 2**16),
)
def test_pcm16_samples_equal_libsndfiles(channels, frames, sr, fmt, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, (frames, channels)).astype(np.float32)
    data = wav_bytes(x, sr, fmt)
    wave, rate = read_pcm16(data)
    ref, ref_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert rate == ref_rate and wave.dtype == np.float32 and np.array_equal(wave, ref)


@pytest.mark.parametrize("subtype", ["PCM_24", "PCM_32", "FLOAT", "PCM_U8", "ULAW"])
def test_other_sample_formats_are_declined(subtype):
    assert read_pcm16(wav_bytes(np.zeros((100, 1), np.float32), 16000, "WAV", subtype)) is None


def test_incomplete_or_odd_files_are_declined():
    data = wav_bytes(np.full((400, 2), 0.25, np.float32), 16000)
    assert read_pcm16(data[:-2]) is None  # a truncated data chunk: libsndfile's checks apply
    streaming = data[:40] + struct.pack("<I", 0xFFFFFFFF) + data[44:]
    assert read_pcm16(streaming) is None
    assert read_pcm16(b"RF64" + data[4:]) is None
    assert read_pcm16(b"not a wav file at all") is None


def test_chunks_before_the_data_are_skipped():
    x = np.linspace(-0.5, 0.5, 801, dtype=np.float32)[:, None]
    data = wav_bytes(x, 16000)
    fmt_end = 12 + 8 + struct.unpack_from("<I", data, 16)[0]
    odd = b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk and its pad byte
    patched = data[:fmt_end] + odd + data[fmt_end:]
    patched = patched[:4] + struct.pack("<I", len(patched) - 8) + patched[8:]
    wave, _ = read_pcm16(patched)
    assert np.array_equal(wave, sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0])


def test_decode_gives_the_same_waveform_and_refusals_either_way(monkeypatch):
    config = AudioConfig(max_seconds=1.0)
    x = np.random.default_rng(0).uniform(-1, 1, (22050 // 2, 2)).astype(np.float32)
    data = wav_bytes(x, 22050)
    fast = audio.decode(data, config, "a.wav")
    monkeypatch.setattr("tokenizer.wav.read_pcm16", lambda data: None)  # libsndfile only
    assert np.array_equal(fast, audio.decode(data, config, "a.wav"))
    long = wav_bytes(np.zeros((16000 * 2, 1), np.float32), 16000)
    with pytest.raises(audio.AudioError, match=r"a.wav: 2.0 s > max 1.0 s") as slow:
        audio.decode(long, config, "a.wav")
    monkeypatch.undo()
    with pytest.raises(audio.AudioError) as quick:
        audio.decode(long, config, "a.wav")
    assert (quick.value.reason, quick.value.detail) == (slow.value.reason, slow.value.detail)
