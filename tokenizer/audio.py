"""Audio decoding and validation: bytes from any URI -> 16 kHz mono float32.

Every failure maps to one reject reason code, so a job can route a bad file to
its rejects instead of dying on it. Decoding uses soundfile (libsndfile: WAV,
FLAC, OGG/Vorbis, OGG/Opus, MP3) and soxr for resampling.

Example::

    from tokenizer.audio import AudioConfig, load_waveform
    wave = load_waveform("gs://bucket/clips/a.mp3", AudioConfig(max_seconds=30))
"""

from __future__ import annotations

import io as _stdio
import struct
from dataclasses import dataclass

import numpy as np

from tokenizer import io
from tokenizer.records import AudioExample, Reason, Reject

TARGET_SAMPLE_RATE = 16000


class AudioError(Exception):
    """A file that cannot become a usable waveform; ``reason`` is a reject code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class AudioConfig:
    """How audio is decoded and what counts as usable.

    ``max_seconds``: longer files are rejected (``too_long``), or cut into
    windows of at most that length when ``split_long`` is set.
    ``silence_peak``: a clip whose absolute peak stays below this is ``silent``.
    ``max_bytes``: files larger than this are refused before being read, so one
    huge file cannot exhaust a worker's memory.
    """

    sample_rate: int = TARGET_SAMPLE_RATE
    min_seconds: float = 0.1
    max_seconds: float = 30.0
    split_long: bool = False
    silence_peak: float = 1e-4
    max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if not 0 <= self.min_seconds < self.max_seconds:
            raise ValueError(
                f"need 0 <= min_seconds < max_seconds, got {self.min_seconds}, {self.max_seconds}"
            )
        if self.silence_peak < 0 or self.max_bytes <= 0:
            raise ValueError("silence_peak must be >= 0 and max_bytes > 0")


def _wav_data_shortfall(data: bytes) -> int:
    """Bytes missing from a RIFF/WAVE file's data chunk (0 when complete or not a WAV).

    libsndfile silently trims a truncated WAV to what is there, so the header's
    declared data size is compared with the bytes actually present.
    """
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return 0
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                return 0
            return max(0, size - (len(data) - pos - 8))
        pos += 8 + size + (size & 1)
    return 0


def decode(data: bytes, config: AudioConfig, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded audio bytes to mono float32 at ``config.sample_rate``.

    Raises :class:`AudioError` (``decode_error``, ``empty_audio``,
    ``too_long``, ``non_finite``) for unusable input.
    """
    import soundfile as sf

    if not data:
        raise AudioError(Reason.EMPTY_AUDIO, f"{name}: 0-byte file")
    try:
        with sf.SoundFile(_stdio.BytesIO(data)) as f:
            sr, declared = f.samplerate, f.frames
            # Refuse overlong files before decoding them (cheap: header only).
            if declared > 0 and not config.split_long and declared / sr > config.max_seconds:
                raise AudioError(
                    Reason.TOO_LONG, f"{name}: {declared / sr:.1f} s > max {config.max_seconds} s"
                )
            wave = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile's errors are plain RuntimeErrors/LibsndfileError
        raise AudioError(Reason.DECODE_ERROR, f"{name}: {type(exc).__name__}: {exc}") from None
    missing = _wav_data_shortfall(data)
    if missing:
        raise AudioError(
            Reason.DECODE_ERROR, f"{name}: truncated WAV ({missing} data bytes missing)"
        )
    # MP3 declares its length in a Xing/Info header (exact) or estimates it from
    # the bitrate, hence the tolerance; FLAC/OGG truncation fails in libsndfile.
    if declared > 0 and len(wave) < 0.98 * declared:
        raise AudioError(
            Reason.DECODE_ERROR, f"{name}: truncated ({len(wave)} of {declared} frames)"
        )
    if wave.size == 0:
        raise AudioError(Reason.EMPTY_AUDIO, f"{name}: no samples")
    if not np.isfinite(wave).all():
        raise AudioError(Reason.NON_FINITE, f"{name}: NaN or inf samples")
    mono = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if sr != config.sample_rate:
        import soxr

        mono = soxr.resample(mono, sr, config.sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def validate(wave: np.ndarray, config: AudioConfig, name: str = "<audio>") -> None:
    """Check a decoded waveform; raise :class:`AudioError` naming the problem."""
    seconds = len(wave) / config.sample_rate
    if len(wave) == 0:
        raise AudioError(Reason.EMPTY_AUDIO, f"{name}: no samples")
    if not np.isfinite(wave).all():
        raise AudioError(Reason.NON_FINITE, f"{name}: NaN or inf samples")
    if seconds < config.min_seconds:
        raise AudioError(Reason.TOO_SHORT, f"{name}: {seconds:.3f} s < min {config.min_seconds} s")
    if seconds > config.max_seconds and not config.split_long:
        raise AudioError(Reason.TOO_LONG, f"{name}: {seconds:.1f} s > max {config.max_seconds} s")
    peak = float(np.abs(wave).max())
    if peak < config.silence_peak:
        raise AudioError(Reason.SILENT, f"{name}: peak {peak:.2e} below {config.silence_peak:.0e}")


def load_waveform(uri: str, config: AudioConfig) -> np.ndarray:
    """Read, decode and validate one file; raises :class:`AudioError`."""
    try:
        nbytes = io.size(uri)
    except FileNotFoundError:
        raise AudioError(Reason.MISSING_FILE, f"{uri}: no such file") from None
    except OSError as exc:
        raise AudioError(Reason.MISSING_FILE, f"{uri}: {exc}") from None
    except Exception as exc:  # remote filesystems raise their own "not found" types
        if not io.exists(uri):
            raise AudioError(Reason.MISSING_FILE, f"{uri}: no such file") from None
        raise AudioError(Reason.MISSING_FILE, f"{uri}: {type(exc).__name__}: {exc}") from None
    if nbytes > config.max_bytes:
        raise AudioError(Reason.TOO_LONG, f"{uri}: {nbytes} bytes > max_bytes {config.max_bytes}")
    try:
        data = io.read_bytes(uri)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise AudioError(Reason.MISSING_FILE, f"{uri}: {exc}") from None
    wave = decode(data, config, uri)
    validate(wave, config, uri)
    return wave


def split_windows(wave: np.ndarray, config: AudioConfig) -> list[np.ndarray]:
    """Cut a long waveform into windows of at most ``max_seconds`` (the last may be shorter)."""
    size = int(config.max_seconds * config.sample_rate)
    return [wave[i : i + size] for i in range(0, len(wave), size)] or [wave]


def prepare(
    example: AudioExample, config: AudioConfig
) -> list[tuple[AudioExample, np.ndarray]] | Reject:
    """One manifest example -> its waveform(s), or a reject with a reason code.

    With ``split_long`` a long recording becomes several windows whose ids get
    a ``#wNNN`` suffix (each keeps the recording's text); otherwise the list
    holds exactly one item.
    """
    try:
        wave = load_waveform(example.uri, config)
    except AudioError as exc:
        return Reject(
            id=example.id, source=example.uri, stage="decode", reason=exc.reason, detail=exc.detail
        )
    if len(wave) <= config.max_seconds * config.sample_rate:
        return [(example, wave)]
    windows = split_windows(wave, config)
    return [
        (example.replace(id=f"{example.id}#w{i:03d}"), w)
        for i, w in enumerate(windows)
        if len(w) >= config.min_seconds * config.sample_rate
    ]
