"""Streaming line reading and text checks shared by the manifest readers.

Every reader (and the bitext job) reads lines through :func:`iter_lines` /
:func:`iter_stream_lines` and checks text with :func:`text_problem` and
:func:`example_reject`, so a rule added here holds for every format.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from datastore import storage
from datastore.records import AudioExample, Reason, Reject

_CHUNK = 1 << 20
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # category Cc, except tab
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark: Windows tools write it at the start of a file


def iter_lines(uri: str, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, raw_bytes)`` for each line of a file, 1-based.

    A line longer than ``max_line_bytes`` yields ``None`` instead of its bytes
    (and is never held whole in memory), so one pathological line cannot
    exhaust a worker. A UTF-8 byte-order mark opening line 1 is dropped: it is
    not part of the text (a BOM left on a TSV header renames its first column,
    on a first FLEURS row it becomes part of the sentence id, and it makes a
    first JSONL line invalid JSON).
    """
    with storage.open_read(uri) as f:
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
            yield lineno, None if overflow else _without_bom(lineno, buf)
            buf, overflow, start = bytearray(), False, nl + 1
    if buf or overflow:
        yield lineno + 1, None if overflow else _without_bom(lineno + 1, buf)


def _without_bom(lineno: int, buf: bytearray) -> bytes:
    return bytes(buf[len(BOM) :]) if lineno == 1 and buf.startswith(BOM) else bytes(buf)


def decode_line(raw: bytes) -> str:
    """UTF-8 text of a line without its line ending; raises ``UnicodeDecodeError``."""
    return raw.decode("utf-8").rstrip("\r")


def text_problem(text: str | None) -> str | None:
    """Why a transcript (or a bitext side) is unusable, or ``None`` when it is fine."""
    if text is None or not text.strip():
        return "empty transcript"
    why = unwritable(text)
    if why:
        return f"transcript cannot be written as UTF-8: {why}"
    bad = _CONTROL.search(text)
    if bad:
        return f"control character {bad.group()!r} in transcript"
    if "\ufffd" in text:
        return "replacement character in transcript (mis-decoded text)"
    if not any(visible(c) for c in text):
        return "no visible character in transcript"
    return None


# Characters of a letter or symbol category that still render as nothing: the
# Hangul fillers and the Braille blank. Combining marks (M*: accents, the
# combining grapheme joiner, variation selectors) show only on a base letter.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me", "Mc"})


def visible(c: str) -> bool:
    """Whether a character shows on its own: not a control or format character
    (zero-width space/joiners, word joiner, BOM, soft hyphen), a separator, a
    combining mark or a blank filler. Zero-width joiners inside a word (Persian,
    Hindi, emoji sequences) are fine: the letters around them are visible.
    Unassigned and private-use code points count as visible (a newer Unicode
    version or a font may draw them)."""
    return unicodedata.category(c) not in _INVISIBLE_CATEGORIES and c not in _BLANK


def unwritable(value: str) -> str | None:
    """Why ``value`` cannot be encoded as UTF-8, or ``None``.

    JSON's ``"\\ud800"`` escape decodes to a lone surrogate: a valid Python
    string that no UTF-8 writer (Parquet, JSON out, a log line) accepts, so it
    must be refused where it is read, not where the first writer crashes.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"U+{ord(value[exc.start]):04X} at character {exc.start} ({exc.reason})"
    return None


def unwritable_field(fields: Mapping[str, object]) -> str | None:
    """``"<name> cannot be written as UTF-8: ..."`` for the first such string value."""
    for name, value in fields.items():
        if isinstance(value, str):
            why = unwritable(value)
            if why:
                return f"{name} cannot be written as UTF-8: {why}"
    return None


def example_reject(example: AudioExample, source: str, lineno: int) -> Reject | None:
    """The ``bad_text`` reject for an example a reader built, or ``None``.

    Every string field must be writable as UTF-8 (checked first, so the
    reject itself can be written: its id falls back to the line when the id
    is the bad field) and the transcript must pass :func:`text_problem`.
    """
    problem = unwritable_field(dataclasses.asdict(example))
    if problem:
        reject_id = None if unwritable(example.id) else example.id
        return line_reject(source, lineno, Reason.BAD_TEXT, problem, id=reject_id)
    problem = text_problem(example.text)
    if problem:
        return line_reject(source, lineno, Reason.BAD_TEXT, problem, id=example.id)
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
