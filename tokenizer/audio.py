"""Audio decoding and validation: bytes from any URI -> 16 kHz mono float32.

Every failure maps to one reject reason code, so a job can route a bad file to
its rejects instead of dying on it. Decoding uses soundfile (libsndfile: WAV,
FLAC, OGG/Vorbis, OGG/Opus, MP3) and soxr for resampling. A :class:`Segment`
(an utterance inside a longer recording) is sought and only its frames are
read, from a file or from bytes already in memory (a tar member, a Parquet
cell: :func:`prepare_bytes`, no temporary file).

Example::

    from tokenizer.audio import load_waveform
    from tokenizer.audio_config import AudioConfig
    wave = load_waveform("gs://bucket/clips/a.mp3", AudioConfig(max_seconds=30))
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
from dataclasses import dataclass

import numpy as np

from datastore import storage
from datastore.records import FILE, AudioExample, Reason, Reject

# The config and the error live in tokenizer.audio_config, which the MP3 and
# container readers import too (they sit below this module).
from tokenizer.audio_config import (  # noqa: F401 (re-exported)
    TARGET_SAMPLE_RATE,
    AudioConfig,
    AudioError,
    decode_reject,
)


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


@dataclass(frozen=True)
class Segment:
    """The part of a recording to decode: from ``offset_s``, ``duration_s`` long
    (``None``: to the end); ``channel``: one channel (``None``: all, downmixed)."""

    offset_s: float = 0.0
    duration_s: float | None = None
    channel: int | None = None

    @classmethod
    def of(cls, example: AudioExample) -> Segment | None:
        if not example.is_segment and example.channel is None:
            return None
        return cls(example.offset_s or 0.0, example.duration_s, example.channel)

    @property
    def end_s(self) -> float | None:
        return None if self.duration_s is None else self.offset_s + self.duration_s


# A segment may end this far past its recording (manifests round times): it is
# cut at the end. Further out, the segment and the audio disagree: bad_segment.
SEGMENT_SLACK_S = 0.05


def _time(seconds: float) -> str:
    return f"{seconds:.3f}" if abs(seconds) < 1e9 else f"{seconds:.3g}"


def _bounds(segment: Segment, sr: int, total: int, name: str) -> tuple[int, int]:
    """``(start, stop)`` frames of a segment in a recording of ``total`` frames."""
    # Compared as floats first: a time of 1e308 s is past the end, not an overflow.
    if not segment.offset_s * sr < total:
        raise AudioError(
            Reason.BAD_SEGMENT,
            f"{name}: segment starts at {_time(segment.offset_s)} s, the audio ends at "
            f"{total / sr:.3f} s",
        )
    start = round(segment.offset_s * sr)
    if segment.duration_s is None:
        return start, total
    if not segment.duration_s * sr - (total - start) <= SEGMENT_SLACK_S * sr:
        raise AudioError(
            Reason.BAD_SEGMENT,
            f"{name}: segment ends at {_time(segment.end_s)} s, the audio ends at "
            f"{total / sr:.3f} s",
        )
    stop = start + max(1, round(segment.duration_s * sr))
    return start, min(stop, total)


def _read_segment(f, segment: Segment, config: AudioConfig, name: str) -> np.ndarray:
    """Seek to a segment in an open SoundFile and read only its frames."""
    sr = f.samplerate
    known = f.frames < UNKNOWN_LENGTH
    start, stop = _bounds(segment, sr, f.frames, name)
    bounded = known or segment.duration_s is not None  # else stop is "the end", unknown
    if bounded and (stop - start) / sr > config.max_seconds and not config.split_long:
        raise AudioError(
            Reason.TOO_LONG,
            f"{name}: segment of {(stop - start) / sr:.1f} s > max {config.max_seconds} s",
        )
    if start:
        f.seek(start)
    limit = config.max_decoded_frames(f.channels)
    wave = f.read(min(stop - start, limit + 1), dtype="float32", always_2d=True)
    _check_length(len(wave), sr, f.channels, config, name)
    if known and len(wave) < 0.98 * (stop - start):
        raise AudioError(
            Reason.DECODE_ERROR, f"{name}: truncated ({len(wave)} of {stop - start} frames)"
        )
    return wave


def decode(
    data: bytes, config: AudioConfig, name: str = "<bytes>", segment: Segment | None = None
) -> np.ndarray:
    """Decode encoded audio bytes (or a ``segment`` of them) to mono float32 at
    ``config.sample_rate``.

    Raises :class:`AudioError` (``decode_error``, ``empty_audio``,
    ``too_long``, ``non_finite``, ``bad_segment``) for unusable input. A
    WAV/FLAC/OGG header's length is exact and refuses an overlong file before
    decoding; an MP3's is an estimate unless a Xing/Info header exists, so MP3
    durations (too_long included) come from the decoded samples
    (:func:`tokenizer.mp3.decode_mp3`). A segment of a WAV/FLAC/OGG is sought
    and only its frames are read.
    """
    import soundfile as sf

    from tokenizer.wav import read_pcm16

    if not data:
        raise AudioError(Reason.EMPTY_AUDIO, f"{name}: 0-byte file")
    simple = read_pcm16(data) if segment is None else None
    if simple is not None:  # a complete 16-bit PCM WAV: libsndfile's samples, without it
        wave, sr = simple
        _check_length(len(wave), sr, wave.shape[1], config, name)
        return _finish(wave, sr, config, name, segment)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sr, declared, is_mp3 = f.samplerate, f.frames, f.format == "MP3"
            unknown = declared >= UNKNOWN_LENGTH  # "length unknown" (a FLAC written to a pipe)
            declared = 0 if unknown else declared
            if segment is not None and not is_mp3 and not unknown:
                wave = _read_segment(f, segment, config, name)
            elif unknown and not is_mp3:
                wave = _read_unknown_length(f, config, name)
                if segment is not None:
                    start, stop = _bounds(segment, sr, len(wave), name)
                    wave = wave[start:stop]
            elif not is_mp3:
                # Refuse overlong files before decoding them (cheap: header only).
                if declared > 0:
                    _check_length(declared, sr, f.channels, config, name)
                limit = config.max_decoded_frames(f.channels)
                wave = f.read(limit + 1, dtype="float32", always_2d=True)
                _check_length(len(wave), sr, f.channels, config, name)
        if is_mp3:
            wave, sr, declared = _mp3(data, config, name, segment)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile's errors are plain RuntimeErrors/LibsndfileError
        raise AudioError(Reason.DECODE_ERROR, f"{name}: {_error_text(exc)}") from None
    missing = _wav_data_shortfall(data)
    if missing:
        raise AudioError(
            Reason.DECODE_ERROR, f"{name}: truncated WAV ({missing} data bytes missing)"
        )
    # FLAC/OGG truncation fails in libsndfile; WAV is checked above; an MP3 is
    # checked against its Xing/Info/VBRI count only (declared is 0 without one).
    if segment is None and declared > 0 and len(wave) < 0.98 * declared:
        raise AudioError(
            Reason.DECODE_ERROR, f"{name}: truncated ({len(wave)} of {declared} frames)"
        )
    return _finish(wave, sr, config, name, segment)


# libsndfile's frame count for a stream whose length its header does not give.
UNKNOWN_LENGTH = 1 << 62


def _read_unknown_length(f, config: AudioConfig, name: str) -> np.ndarray:
    """All frames of a stream whose header gives no length, block by block,
    refused (``too_long``) once they pass what ``max_bytes`` holds.

    Why the flag: soundfile asks libsndfile for the position after every read
    of a seekable file, and libsndfile cannot tell it without a length ("psf_fseek()
    failed"); read as a stream, the frames come out exactly.
    """
    f._info.seekable = 0  # soundfile's own switch for streams: no tell/seek around reads
    blocks, n = [], 0
    while True:
        block = f.read(1 << 16, dtype="float32", always_2d=True)
        if not len(block):
            break
        blocks.append(block)
        n += len(block)
        _check_length(n, f.samplerate, f.channels, config, name)
    return np.concatenate(blocks) if blocks else np.zeros((0, f.channels), np.float32)


def _check_length(frames: int, sr: int, channels: int, config: AudioConfig, name: str) -> None:
    """Refuse (``too_long``) audio over ``max_seconds`` (without ``split_long``),
    or whose decoded samples would not fit in ``max_bytes``."""
    if frames / sr > config.max_seconds and not config.split_long:
        raise AudioError(
            Reason.TOO_LONG, f"{name}: {frames / sr:.1f} s > max {config.max_seconds} s"
        )
    if frames > config.max_decoded_frames(channels):
        raise AudioError(
            Reason.TOO_LONG,
            f"{name}: over {frames / sr:.0f} s decoded ({channels} channel(s)) would exceed "
            f"max_bytes {config.max_bytes} of samples",
        )


_OBJECT_AT = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def _error_text(exc: BaseException) -> str:
    """A decoder's error as a reject detail, without the memory addresses
    libsndfile's messages carry (``<_io.BytesIO object at 0x7f...>``): the same
    bad file gives the same reject row in every run."""
    return _OBJECT_AT.sub(r"<\1>", f"{type(exc).__name__}: {exc}")


def _mp3(data: bytes, config: AudioConfig, name: str, segment: Segment | None):
    """A whole MP3, or the frames of a segment of it (decoded from the start)."""
    from tokenizer.mp3 import decode_mp3

    cap = None if config.split_long else config.max_seconds
    held = config.max_bytes
    if segment is None:
        return decode_mp3(data, cap, name, max_decoded_bytes=held)
    if segment.duration_s is not None and cap is not None and segment.duration_s > cap:
        raise AudioError(
            Reason.TOO_LONG, f"{name}: segment of {segment.duration_s:.1f} s > max {cap} s"
        )
    wave, sr, declared = decode_mp3(
        data, cap, name, segment.offset_s, segment.end_s, max_decoded_bytes=held
    )
    start, stop = _bounds(segment, sr, len(wave), name)
    return wave[start:stop], sr, declared


def decode_file(f, config: AudioConfig, name: str, segment: Segment) -> np.ndarray:
    """A segment of an open, seekable audio file: only its frames are read, so
    many segments of one long recording cost what they hold, not the file each.
    An MP3 (no exact seek) is read whole, at most ``max_bytes``."""
    import soundfile as sf

    try:
        with sf.SoundFile(f) as snd:
            is_mp3 = snd.format == "MP3"
            if not is_mp3:
                sr = snd.samplerate
                wave = _read_segment(snd, segment, config, name)
    except AudioError:
        raise
    except Exception as exc:
        f.seek(0)
        if not f.read(1):
            raise AudioError(Reason.EMPTY_AUDIO, f"{name}: 0-byte file") from None
        raise AudioError(Reason.DECODE_ERROR, f"{name}: {_error_text(exc)}") from None
    if is_mp3:
        f.seek(0)
        data = storage.read_capped(f, config.max_bytes + 1)
        if len(data) > config.max_bytes:
            raise AudioError(Reason.TOO_LONG, f"{name}: more than max_bytes {config.max_bytes}")
        return decode(data, config, name, segment)
    return _finish(wave, sr, config, name, segment)


def _finish(
    wave: np.ndarray, sr: int, config: AudioConfig, name: str, segment: Segment | None
) -> np.ndarray:
    """Decoded frames x channels -> checked mono float32 at the target rate."""
    if wave.size == 0:
        raise AudioError(Reason.EMPTY_AUDIO, f"{name}: no samples")
    if not np.isfinite(wave).all():
        raise AudioError(Reason.NON_FINITE, f"{name}: NaN or inf samples")
    channel = None if segment is None else segment.channel
    if channel is not None and channel >= wave.shape[1]:
        raise AudioError(
            Reason.BAD_SEGMENT, f"{name}: channel {channel} of a {wave.shape[1]}-channel file"
        )
    if channel is not None:
        mono = wave[:, channel]
    else:
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


@contextlib.contextmanager
def _read_errors(uri: str, config: AudioConfig):
    """Reading failures as :class:`AudioError` with their reason codes."""
    try:
        yield
    except storage.NotAFileError as exc:
        raise AudioError(Reason.NOT_A_FILE, str(exc.args[0])) from None
    except storage.PathEscapeError as exc:  # swapped for a symlink after the path check
        raise AudioError(Reason.PATH_ESCAPE, str(exc)) from None
    except storage.FileTooLargeError:
        raise AudioError(
            Reason.TOO_LONG, f"{uri}: more than max_bytes {config.max_bytes} bytes"
        ) from None
    except FileNotFoundError:
        raise AudioError(Reason.MISSING_FILE, f"{uri}: no such file") from None
    except OSError as exc:
        raise AudioError(Reason.MISSING_FILE, f"{uri}: {exc}") from None
    except AudioError:
        raise
    except Exception as exc:  # remote filesystems raise their own "not found" types
        if not storage.exists(uri):
            raise AudioError(Reason.MISSING_FILE, f"{uri}: no such file") from None
        raise AudioError(Reason.MISSING_FILE, f"{uri}: {type(exc).__name__}: {exc}") from None


def read_audio_bytes(uri: str, config: AudioConfig, *, resolved: bool = False) -> bytes:
    """The encoded bytes of one audio file, at most ``max_bytes``; raises :class:`AudioError`.

    Only a regular file is audio: a FIFO, device, socket or directory is
    ``not_a_file`` at once (a FIFO would block the reader forever, ``/dev/zero``
    would never end); see :func:`datastore.storage.read_bounded` (``resolved``:
    ``uri`` is what the path policy resolved, and only that file may be read).
    """
    with _read_errors(uri, config):
        return storage.read_bounded(uri, config.max_bytes, resolved=resolved)


def load_waveform(
    uri: str, config: AudioConfig, segment: Segment | None = None, *, resolved: bool = False
) -> np.ndarray:
    """Read, decode and validate one file (or a segment of it); raises :class:`AudioError`.
    ``resolved``: see :func:`read_audio_bytes` (a manifest example's path)."""
    if segment is None:
        wave = decode(read_audio_bytes(uri, config, resolved=resolved), config, uri)
    else:
        with _read_errors(uri, config):
            f = storage.open_regular(uri, resolved=resolved)
        with f:
            wave = decode_file(f, config, uri, segment)
    validate(wave, config, uri)
    return wave


def split_windows(wave: np.ndarray, config: AudioConfig) -> list[np.ndarray]:
    """Cut a long waveform into windows of at most ``max_seconds`` (the last may be shorter)."""
    size = int(config.max_seconds * config.sample_rate)
    return [wave[i : i + size] for i in range(0, len(wave), size)] or [wave]


Prepared = list[tuple[AudioExample, np.ndarray]] | Reject


def prepare(example: AudioExample, config: AudioConfig) -> Prepared:
    """One manifest example -> its waveform(s), or a reject with a reason code.

    A file is read from its URI; a tar member, a Parquet cell or a command's
    output through :mod:`tokenizer.containers` (the speech jobs read tar and
    Parquet members in one pass per archive or row group instead, and hand the
    bytes to :func:`prepare_bytes`). See :func:`windows` for the list.
    """
    segment = Segment.of(example)
    try:
        if example.audio_kind == FILE:
            # The reader resolved a local path under the path policy: only it may be read.
            local = storage.is_local(example.uri)
            wave = load_waveform(example.uri, config, segment, resolved=local)
        else:
            from tokenizer import containers

            data = containers.read_single(example, config)
            wave = decode(data, config, example.uri, segment)
            validate(wave, config, example.uri)
    except AudioError as exc:
        return decode_reject(example, exc.reason, exc.detail)
    return windows(example, wave, config)


def prepare_bytes(example: AudioExample, data: bytes, config: AudioConfig) -> Prepared:
    """:func:`prepare` for audio whose encoded bytes are already read (a tar
    member, a Parquet cell): decoded without a temporary file."""
    try:
        wave = decode(data, config, example.uri, Segment.of(example))
        validate(wave, config, example.uri)
    except AudioError as exc:
        return decode_reject(example, exc.reason, exc.detail)
    return windows(example, wave, config)


def prepare_item(item, config: AudioConfig) -> Prepared:
    """What the speech jobs' decode pool runs: an example (read from its file or
    command), or ``(example, bytes | Reject)`` of a member read in a group pass.
    Never raises: a decoder bug on one file becomes that file's reject. Module
    level, so a process pool can pickle it (``functools.partial`` with ``config``)."""
    example = item[0] if isinstance(item, tuple) else item
    try:
        if isinstance(item, tuple):
            payload = item[1]
            if isinstance(payload, Reject):
                return payload
            return prepare_bytes(example, payload, config)
        return prepare(example, config)
    except Exception as exc:  # a decoder bug on one file must not end the job
        detail = f"{example.uri}: unexpected {type(exc).__name__}: {exc}"
        return Reject(
            id=example.id,
            source=example.uri,
            stage="decode",
            reason=Reason.DECODE_ERROR,
            detail=detail[:500],
        )


_WINDOW_SUFFIX = re.compile(r"#w[0-9]{3,}$")


def window_id(utt_id: str, index: int) -> str:
    """The id of window ``index`` of a split recording: ``<id>#w000``, ..."""
    return f"{utt_id}#w{index:03d}"


def is_window_id(utt_id: str) -> bool:
    """Whether an id has the form :func:`window_id` gives (reserved with ``split_long``)."""
    return _WINDOW_SUFFIX.search(utt_id) is not None


def windows(
    example: AudioExample, wave: np.ndarray, config: AudioConfig
) -> list[tuple[AudioExample, np.ndarray]]:
    """``[(example, wave)]``, or with ``split_long`` a long recording cut into
    windows whose ids get a ``#wNNN`` suffix (each keeps the recording's
    text) and whose ``offset_s``/``duration_s`` say where each lies."""
    sr = config.sample_rate
    if len(wave) <= config.max_seconds * sr:
        return [(example, wave)]
    base = example.offset_s or 0.0
    size = int(config.max_seconds * sr)
    return [
        (
            example.replace(
                id=window_id(example.id, i), offset_s=base + i * size / sr, duration_s=len(w) / sr
            ),
            w,
        )
        for i, w in enumerate(split_windows(wave, config))
        if len(w) >= config.min_seconds * sr
    ]
