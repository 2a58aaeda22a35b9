"""MP3 decoding whose length comes from the decoded samples.

libsndfile (mpg123) trusts an MP3's header for its length, which without a
Xing/Info/VBRI header is only an estimate (see :class:`_LengthHiddenMp3`):
this module decodes block by block and measures, except where such a header
gives the exact count (then one read). Used by
:func:`tokenizer.audio.decode` for every MP3.
"""

from __future__ import annotations

import io

import numpy as np

from datastore.records import Reason


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


def decode_mp3(
    data: bytes,
    max_seconds: float | None,
    name: str,
    start_s: float = 0.0,
    stop_s=None,
    max_decoded_bytes: int | None = None,
) -> tuple[np.ndarray, int, int]:
    """Decode an MP3 up to a point: ``(frames x channels, sample rate, header frame count)``.

    The length is measured from the samples. Decoding stops once ``stop_s``
    seconds are decoded (a segment's end: nothing after it is needed), and
    raises ``AudioError(too_long)`` as soon as more than ``max_seconds`` lie
    beyond ``start_s`` (``None``: no cap), so a long file is refused without
    holding all of it. A segment's start is decoded, not sought: mpg123 seeks
    exactly only by decoding from the start anyway. ``max_decoded_bytes``
    bounds the float32 samples held (``too_long`` past it). The frame count is that
    of a Xing/Info/VBRI header (the encoder's exact count, which a truncated
    file falls short of), else 0: libsndfile's own figure is then an estimate
    that decides nothing.
    """
    import soundfile as sf

    from tokenizer.audio_config import AudioError

    counted = _has_length_header(data)
    source = io.BytesIO(data) if counted else _LengthHiddenMp3(data)
    with sf.SoundFile(source) as f:
        sr, channels, declared = f.samplerate, f.channels, f.frames if counted else 0
        cap = None if max_seconds is None else (start_s + max_seconds) * sr
        # A stop past any real audio (1e308 s) is decoding to the end; the caller's
        # bounds then call the segment what it is.
        stop = None if stop_s is None or not stop_s * sr < 1 << 62 else round(stop_s * sr)
        held_cap = None if max_decoded_bytes is None else max_decoded_bytes // (4 * channels)

        def too_much(frames: int) -> AudioError:
            return AudioError(
                Reason.TOO_LONG,
                f"{name}: over {frames / sr:.0f} s decoded would exceed max_bytes "
                f"{max_decoded_bytes} of samples",
            )

        if counted:
            # The header's count is exact: refuse, or read what is needed in one
            # call (reading block by block past the end makes mpg123 print
            # "part2_3_length too large" for every clip).
            if cap is not None and stop is None and declared > cap:
                raise AudioError(
                    Reason.TOO_LONG,
                    f"{name}: {declared / sr - start_s:.1f} s > max {max_seconds} s",
                )
            want = declared if stop is None else min(stop, declared)
            if held_cap is not None and want > held_cap:
                raise too_much(want)
            return f.read(want, dtype="float32", always_2d=True), sr, declared
        blocks, n = [], 0
        while stop is None or n < stop:
            block = f.read(_MP3_BLOCK, dtype="float32", always_2d=True)
            if not len(block):
                break
            blocks.append(block)
            n += len(block)
            if held_cap is not None and n > held_cap:
                raise too_much(n)
            if cap is not None and n > cap and stop is None:
                raise AudioError(
                    Reason.TOO_LONG,
                    f"{name}: over {n / sr - start_s:.1f} s decoded > max {max_seconds} s",
                )
    wave = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    return wave, sr, declared
