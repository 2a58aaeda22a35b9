"""Audio decoding and validation: bytes from any URI -> 16 kHz mono float32.

Every failure maps to one reject reason code, so a job can route a bad file to
its rejects instead of dying on it. Decoding uses soundfile (libsndfile: WAV,
FLAC, OGG/Vorbis, OGG/Opus, MP3) and soxr for resampling.

Example::

    from tokenizer.audio import AudioConfig, load_waveform
    wave = load_waveform("gs://bucket/clips/a.mp3", AudioConfig(max_seconds=30))
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np

from datastore import storage
from datastore.records import AudioExample, Reason, Reject
from datastore.settings import setting

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
    ``max_bytes``: files larger than this are refused (``too_long``): at most
    ``max_bytes + 1`` bytes are ever read, whatever size a file reports, so one
    huge file (or a device) cannot exhaust a worker's memory.
    """

    sample_rate: int = TARGET_SAMPLE_RATE
    min_seconds: float = 0.1
    max_seconds: float = setting(30.0, help="reject audio longer than this")
    split_long: bool = setting(
        False,
        help="cut audio longer than --max-seconds into windows (ids <id>#w000, ...) "
        "instead of rejecting it as too_long",
    )
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


class _LengthHiddenMp3:
    """MP3 bytes as a file whose size libsndfile cannot turn into a frame count.

    Why: without a Xing/Info header, libsndfile (mpg123) estimates an MP3's
    length from the file size and the first frame's bitrate, and its reads stop
    at that estimate: a VBR clip, or a CBR one behind a large ID3 tag, came out
    cut short or as a 217 s "too_long" for 7.6 s of audio. This view reports a
    size ``_MP3_SIZE_FACTOR`` times the real one, so any estimate lies far
    beyond the real end and decoding runs to the end of the data; reads past
    the data return nothing (end of stream), except in the last ``tail`` bytes
    of the reported size, which show the real file's last bytes, where mpg123
    looks for an ID3v1 tag. Used only for MP3s without a Xing/Info/VBRI header
    (:func:`_has_length_header`): with one, mpg123 counts exactly, and the
    inflated size would only make it print a warning about the header's byte
    count.
    """

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0
        self.size = len(data) * _MP3_SIZE_FACTOR
        self.tail = min(len(data), 4096)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.pos, self.size)[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else n
        start = self.pos
        if start >= self.size - self.tail:  # the real file's last bytes
            start -= self.size - len(self.data)
        elif start >= len(self.data):  # the hole between: end of stream
            return b""
        out = self.data[start : start + n]
        self.pos += len(out)
        return out


_MP3_SIZE_FACTOR = 1024  # > 50x the largest frame-size ratio within one MP3 stream
_MP3_BLOCK = 1 << 16  # frames decoded per read


def _has_length_header(data: bytes) -> bool:
    """Whether the first MPEG frame (after any ID3v2 tag) is a Xing/Info or VBRI
    header, which gives mpg123 the exact frame count."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = int.from_bytes(bytes(b & 0x7F for b in data[6:10]), "big")
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    sync = start
    while True:  # the first frame sync: 11 set bits
        sync = data.find(b"\xff", sync, start + 65536)
        if sync < 0 or sync + 1 >= len(data):
            return False
        if data[sync + 1] & 0xE0 == 0xE0:
            break
        sync += 1
    mpeg1, mono = (data[sync + 1] >> 3) & 3 == 3, len(data) > sync + 3 and data[sync + 3] >> 6 == 3
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    at = sync + 4 + (0 if data[sync + 1] & 1 else 2) + side_info  # + CRC when protected
    return data[at : at + 4] in (b"Xing", b"Info") or data[sync + 36 : sync + 40] == b"VBRI"


def _decode_mp3(data: bytes, config: AudioConfig, name: str) -> tuple[np.ndarray, int, int]:
    """Decode a whole MP3: ``(frames x channels, sample rate, header frame count)``.

    The length is measured from the samples; decoding stops as soon as it
    passes ``max_seconds`` (unless ``split_long``), so a long file is refused
    without holding all of it. The frame count is that of a Xing/Info/VBRI
    header (the encoder's exact count, which a truncated file falls short of),
    else 0: libsndfile's own figure is then an estimate that decides nothing.
    """
    import soundfile as sf

    counted = _has_length_header(data)
    source = io.BytesIO(data) if counted else _LengthHiddenMp3(data)
    with sf.SoundFile(source) as f:
        sr, channels, declared = f.samplerate, f.channels, f.frames if counted else 0
        cap = None if config.split_long else config.max_seconds * sr
        if counted:
            # The header's count is exact: refuse or read the whole file in one
            # call (reading block by block past the end makes mpg123 print
            # "part2_3_length too large" for every clip).
            if cap is not None and declared > cap:
                raise AudioError(
                    Reason.TOO_LONG, f"{name}: {declared / sr:.1f} s > max {config.max_seconds} s"
                )
            return f.read(dtype="float32", always_2d=True), sr, declared
        blocks, n = [], 0
        while True:
            block = f.read(_MP3_BLOCK, dtype="float32", always_2d=True)
            if not len(block):
                break
            blocks.append(block)
            n += len(block)
            if cap is not None and n > cap:
                raise AudioError(
                    Reason.TOO_LONG,
                    f"{name}: over {n / sr:.1f} s decoded > max {config.max_seconds} s",
                )
    wave = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    return wave, sr, declared


def decode(data: bytes, config: AudioConfig, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded audio bytes to mono float32 at ``config.sample_rate``.

    Raises :class:`AudioError` (``decode_error``, ``empty_audio``,
    ``too_long``, ``non_finite``) for unusable input. A WAV/FLAC/OGG header's
    length is exact and refuses an overlong file before decoding; an MP3's is
    an estimate unless a Xing/Info header exists, so MP3 durations (too_long
    included) come from the decoded samples (:func:`_decode_mp3`).
    """
    import soundfile as sf

    if not data:
        raise AudioError(Reason.EMPTY_AUDIO, f"{name}: 0-byte file")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sr, declared, mp3 = f.samplerate, f.frames, f.format == "MP3"
            # Refuse overlong files before decoding them (cheap: header only).
            too_long = declared > 0 and declared / sr > config.max_seconds
            if too_long and not (config.split_long or mp3):
                raise AudioError(
                    Reason.TOO_LONG, f"{name}: {declared / sr:.1f} s > max {config.max_seconds} s"
                )
            wave = None if mp3 else f.read(dtype="float32", always_2d=True)
        if mp3:
            wave, sr, declared = _decode_mp3(data, config, name)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile's errors are plain RuntimeErrors/LibsndfileError
        raise AudioError(Reason.DECODE_ERROR, f"{name}: {type(exc).__name__}: {exc}") from None
    missing = _wav_data_shortfall(data)
    if missing:
        raise AudioError(
            Reason.DECODE_ERROR, f"{name}: truncated WAV ({missing} data bytes missing)"
        )
    # FLAC/OGG truncation fails in libsndfile; WAV is checked above; an MP3 is
    # checked against its Xing/Info/VBRI count only (declared is 0 without one).
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


def read_audio_bytes(uri: str, config: AudioConfig) -> bytes:
    """The encoded bytes of one audio file, at most ``max_bytes``; raises :class:`AudioError`.

    Only a regular file is audio: a FIFO, device, socket or directory is
    ``not_a_file`` at once (a FIFO would block the reader forever, ``/dev/zero``
    would never end); see :func:`datastore.storage.read_bounded`.
    """
    try:
        return storage.read_bounded(uri, config.max_bytes)
    except storage.NotAFileError as exc:
        raise AudioError(Reason.NOT_A_FILE, str(exc.args[0])) from None
    except storage.FileTooLargeError:
        raise AudioError(
            Reason.TOO_LONG, f"{uri}: more than max_bytes {config.max_bytes} bytes"
        ) from None
    except FileNotFoundError:
        raise AudioError(Reason.MISSING_FILE, f"{uri}: no such file") from None
    except OSError as exc:
        raise AudioError(Reason.MISSING_FILE, f"{uri}: {exc}") from None
    except Exception as exc:  # remote filesystems raise their own "not found" types
        if not storage.exists(uri):
            raise AudioError(Reason.MISSING_FILE, f"{uri}: no such file") from None
        raise AudioError(Reason.MISSING_FILE, f"{uri}: {type(exc).__name__}: {exc}") from None


def load_waveform(uri: str, config: AudioConfig) -> np.ndarray:
    """Read, decode and validate one file; raises :class:`AudioError`."""
    data = read_audio_bytes(uri, config)
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
