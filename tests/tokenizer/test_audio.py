import io as stdio

import numpy as np
import pytest
import soundfile as sf

from datastore.records import AudioExample, Reason, Reject
from tests.conftest import sine
from tokenizer import audio, mp3
from tokenizer.audio import AudioError
from tokenizer.audio_config import AudioConfig

CFG = AudioConfig()


def encode(wave, sr, fmt, subtype=None):
    buf = stdio.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("sr", "channels", "fmt", "subtype"),
    [
        (16000, 1, "WAV", "PCM_16"),
        (48000, 2, "WAV", "PCM_16"),
        (22050, 1, "WAV", "PCM_U8"),
        (44100, 1, "FLAC", "PCM_24"),
        (48000, 1, "OGG", "OPUS"),
        (44100, 2, "MP3", "MPEG_LAYER_III"),
    ],
)
def test_decode_converts_to_16k_mono(sr, channels, fmt, subtype):
    wave = sine(1.0, sr=sr, freq=300.0)
    if channels == 2:
        wave = np.stack([wave, wave], axis=1)
    out = audio.decode(encode(wave, sr, fmt, subtype), CFG)
    assert out.dtype == np.float32 and out.ndim == 1
    # Codecs may pad a few ms (MP3 encoder delay); the length is ~1 s at 16 kHz.
    assert abs(len(out) - 16000) < 0.06 * 16000
    # The 300 Hz tone survives resampling: its FFT peak sits at 300 Hz.
    spectrum = np.abs(np.fft.rfft(out[:16000] if len(out) >= 16000 else out))
    peak_hz = np.argmax(spectrum) * 16000 / (2 * (len(spectrum) - 1))
    assert abs(peak_hz - 300) < 5


def test_resampled_sine_matches_reference():
    out = audio.decode(encode(sine(1.0, sr=48000, freq=440.0), 48000, "WAV", "FLOAT"), CFG)
    ref = sine(1.0, sr=16000, freq=440.0)
    # Away from the edges (filter transients) the resampled signal is the 16 kHz sine.
    assert np.max(np.abs(out[800:-800] - ref[800:-800])) < 1e-3


def reason_of(data, cfg=CFG):
    with pytest.raises(AudioError) as exc:
        audio.decode(data, cfg)
    return exc.value.reason


def test_bad_bytes_get_reason_codes():
    wav = encode(sine(1.0), 16000, "WAV", "PCM_16")
    flac = encode(sine(1.0), 16000, "FLAC", "PCM_16")
    mp3 = encode(sine(3.0, sr=44100), 44100, "MP3", "MPEG_LAYER_III")
    assert reason_of(b"") == Reason.EMPTY_AUDIO
    assert reason_of(np.random.default_rng(0).bytes(4000)) == Reason.DECODE_ERROR
    assert reason_of(wav[: len(wav) // 2]) == Reason.DECODE_ERROR
    assert reason_of(flac[: len(flac) // 2]) == Reason.DECODE_ERROR
    assert reason_of(mp3[: len(mp3) // 2]) == Reason.DECODE_ERROR
    nan = sine(1.0)
    nan[100] = np.nan
    assert reason_of(encode(nan, 16000, "WAV", "FLOAT")) == Reason.NON_FINITE
    inf = sine(1.0)
    inf[5] = np.inf
    assert reason_of(encode(inf, 16000, "WAV", "DOUBLE")) == Reason.NON_FINITE
    assert reason_of(encode(sine(0.0), 16000, "WAV", "PCM_16")) == Reason.EMPTY_AUDIO
    assert (
        reason_of(encode(sine(3.0), 16000, "WAV", "PCM_16"), AudioConfig(max_seconds=2))
        == Reason.TOO_LONG
    )


@pytest.mark.parametrize(
    ("wave", "reason"),
    [
        (np.zeros(16000, np.float32), Reason.SILENT),
        (sine(0.05), Reason.TOO_SHORT),
        (sine(31.0), Reason.TOO_LONG),
        (np.array([], np.float32), Reason.EMPTY_AUDIO),
    ],
)
def test_validate_reasons(wave, reason):
    with pytest.raises(AudioError) as exc:
        audio.validate(wave, CFG)
    assert exc.value.reason == reason


def test_prepare_routes_missing_file_to_reject(tmp_path, make_wav):
    good = AudioExample(
        id="a", uri=make_wav("a.wav", 1.0), text="x", lang="fr", split="test", corpus="c"
    )
    out = audio.prepare(good, CFG)
    assert len(out) == 1 and out[0][0] == good and len(out[0][1]) == 16000
    missing = good.replace(id="b", uri=str(tmp_path / "nope.wav"))
    rej = audio.prepare(missing, CFG)
    assert isinstance(rej, Reject) and rej.reason == Reason.MISSING_FILE and rej.id == "b"


def test_split_long_windows(make_wav):
    cfg = AudioConfig(max_seconds=2.0, split_long=True)
    ex = AudioExample(
        id="long", uri=make_wav("l.wav", 5.0), text="x", lang="fr", split="test", corpus="c"
    )
    out = audio.prepare(ex, cfg)
    assert [e.id for e, _ in out] == ["long#w000", "long#w001", "long#w002"]
    assert sum(len(w) for _, w in out) == 5 * 16000


def test_oversized_file_refused_before_reading(make_wav):
    ex = AudioExample(
        id="a", uri=make_wav("a.wav", 1.0), text="x", lang="fr", split="test", corpus="c"
    )
    rej = audio.prepare(ex, AudioConfig(max_bytes=1000))
    assert isinstance(rej, Reject) and rej.reason == Reason.TOO_LONG


def test_config_validation():
    with pytest.raises(ValueError):
        AudioConfig(min_seconds=5, max_seconds=2)


def _strip_first_frame(data: bytes) -> bytes:
    """Drop the Xing/Info frame: the frame after which libsndfile must estimate."""
    assert mp3._has_length_header(data)
    bitrates = {3: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]}
    version = (data[1] >> 3) & 3
    rate = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000)}[version][(data[2] >> 2) & 3]
    kbps = bitrates.get(version, [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160])
    per_kbps = 144000 if version == 3 else 72000
    n = per_kbps * kbps[data[2] >> 4] // rate + ((data[2] >> 1) & 1)
    stripped = data[n:]
    assert not mp3._has_length_header(stripped)
    return stripped


@pytest.mark.parametrize(("sr", "channels"), [(44100, 1), (44100, 2), (16000, 1), (22050, 2)])
def test_mp3_length_comes_from_the_samples(sr, channels):
    """Without a Xing/Info header libsndfile's length is an estimate (2.1 s for 7.6 s of
    VBR audio, 38 s behind a large ID3 tag); the decoded samples decide."""
    wave = sine(7.6, sr, 330.0)
    wave = np.stack([wave] * channels, 1) if channels > 1 else wave
    data = encode(wave, sr, "MP3", "MPEG_LAYER_III")
    exact = audio.decode(data, CFG)
    assert len(exact) / 16000 == pytest.approx(7.6, abs=1e-3)  # the header's exact count
    id3 = b"ID3\x03\x00\x00" + bytes([0, 36, 0, 0]) + bytes(36 << 14)  # 576 kB of tag
    for variant in (_strip_first_frame(data), id3 + _strip_first_frame(data)):
        for config in (CFG, AudioConfig(split_long=True)):
            assert len(audio.decode(variant, config)) / 16000 == pytest.approx(7.6, rel=0.02)


def test_long_mp3_without_header_is_too_long_and_windowed():
    data = _strip_first_frame(encode(sine(33.0, 44100, 330.0), 44100, "MP3", "MPEG_LAYER_III"))
    with pytest.raises(AudioError) as err:
        audio.decode(data, CFG)
    assert err.value.reason == Reason.TOO_LONG and "decoded" in err.value.detail
    assert len(audio.decode(data, AudioConfig(split_long=True))) / 16000 == pytest.approx(
        33.0, rel=0.02
    )


def test_truncated_mp3_with_header_is_a_decode_error():
    data = encode(sine(3.0, 44100, 330.0), 44100, "MP3", "MPEG_LAYER_III")
    with pytest.raises(AudioError) as err:
        audio.decode(data[: len(data) // 2], CFG)
    assert err.value.reason == Reason.DECODE_ERROR and "truncated" in err.value.detail
