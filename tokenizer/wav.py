"""The common WAV (RIFF, 16-bit PCM, complete) decoded with numpy alone.

Why: libsndfile reads in-memory bytes through Python callbacks, which cost
more than the decoding of a short clip (most of a decode thread's time on
sub-second clips). This reads the same samples libsndfile would (int16 scaled
by 1/32768, exact in float32) for the one layout it accepts, and answers
``None`` for anything else (other sample formats, RF64, streaming or
truncated data chunks, odd headers), which then goes to libsndfile as before.

Example::

    decoded = read_pcm16(data)     # (float32 [frames, channels], sample rate) or None
"""

from __future__ import annotations

import struct

import numpy as np

PCM, EXTENSIBLE = 1, 0xFFFE
_PCM_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_SCALE = np.float32(1.0 / 32768.0)


def read_pcm16(data: bytes) -> tuple[np.ndarray, int] | None:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    fmt, pos = None, 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            fmt = _format(data[body : body + size])
            if fmt is None:
                return None
        elif chunk == b"data":
            if fmt is None or size in (0, 0xFFFFFFFF) or body + size > len(data):
                return None
            channels, rate = fmt
            if size % (2 * channels):
                return None
            samples = np.frombuffer(data, "<i2", size // 2, body).reshape(-1, channels)
            return samples.astype(np.float32) * _SCALE, rate
        pos = body + size + (size & 1)
    return None


def _format(body: bytes) -> tuple[int, int] | None:
    """``(channels, sample rate)`` of a 16-bit PCM ``fmt `` chunk, else None."""
    if len(body) < 16:
        return None
    tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == EXTENSIBLE:
        if len(body) < 40 or body[26:40] != _PCM_GUID_TAIL or body[24:26] != b"\x01\x00":
            return None
    elif tag != PCM:
        return None
    if bits != 16 or channels < 1 or rate < 1 or align != 2 * channels:
        return None
    return channels, rate
