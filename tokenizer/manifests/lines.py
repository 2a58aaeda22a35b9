"""Streaming line reading and text checks shared by the manifest readers."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import BinaryIO

from tokenizer import io
from tokenizer.records import Reason, Reject

_CHUNK = 1 << 20


def iter_lines(uri: str, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, raw_bytes)`` for each line of a file, 1-based.

    A line longer than ``max_line_bytes`` yields ``None`` instead of its bytes
    (and is never held whole in memory), so one pathological line cannot
    exhaust a worker.
    """
    with io.open_read(uri) as f:
        yield from iter_stream_lines(f, max_line_bytes)


def iter_stream_lines(f: BinaryIO, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """:func:`iter_lines` over an open binary stream, read in 1 MB chunks."""
    lineno, buf, overflow = 0, bytearray(), False
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            piece = chunk[start:] if nl < 0 else chunk[start:nl]
            if not overflow:
                buf += piece
                if len(buf) > max_line_bytes:
                    overflow, buf = True, bytearray()
            if nl < 0:
                break
            lineno += 1
            yield lineno, None if overflow else bytes(buf)
            buf, overflow, start = bytearray(), False, nl + 1
    if buf or overflow:
        yield lineno + 1, None if overflow else bytes(buf)


def decode_line(raw: bytes) -> str:
    """UTF-8 text of a line without its line ending; raises ``UnicodeDecodeError``."""
    return raw.decode("utf-8").rstrip("\r")


def text_problem(text: str | None) -> str | None:
    """Why a transcript is unusable, or ``None`` when it is fine."""
    if text is None or not text.strip():
        return "empty transcript"
    bad = [c for c in text if unicodedata.category(c) == "Cc" and c not in "\t"]
    if bad:
        return f"control character {bad[0]!r} in transcript"
    if "\ufffd" in text:
        return "replacement character in transcript (mis-decoded text)"
    return None


def line_reject(
    source: str, lineno: int, reason: str, detail: str, id: str | None = None
) -> Reject:
    where = f"{source}:{lineno}"
    return Reject(id=id or where, source=where, stage="read", reason=reason, detail=detail)


def raw_line_problem(source: str, lineno: int, raw: bytes | None, max_bytes: int):
    """Decode a raw line, or return the reject for it (too long / not UTF-8)."""
    if raw is None:
        return None, line_reject(
            source, lineno, Reason.MALFORMED_LINE, f"line longer than {max_bytes} bytes"
        )
    try:
        return decode_line(raw), None
    except UnicodeDecodeError as exc:
        return None, line_reject(
            source, lineno, Reason.NON_UTF8, f"not UTF-8: {exc.reason} at byte {exc.start}"
        )
