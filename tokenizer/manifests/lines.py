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
from typing import BinaryIO, NamedTuple

from datastore import storage
from datastore.records import AudioExample, Reason, Reject

_CHUNK = 1 << 20
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # category Cc, except tab
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark: Windows tools write it at the start of a file


class LineSpan(NamedTuple):
    """Whole lines of a file: bytes ``[start, end)``, the first of them numbered ``first_line``.

    Why: a Beam job reads a manifest's parts in parallel (one worker per span)
    while every line keeps the number it has in the whole file, so a reject
    names ``manifest.jsonl:123456`` however the file was cut.
    """

    start: int
    end: int
    first_line: int


def plan_spans(uri: str, target_bytes: int) -> list[LineSpan]:
    """Cut a plain (uncompressed) file into spans of about ``target_bytes``,
    each ending at a line end; one pass over the file, counting lines.

    A file of at most ``target_bytes`` is one span. Example::

        plan_spans("m.jsonl", 4 << 20)  # [LineSpan(0, 4194390, 1), LineSpan(4194390, ...), ...]
    """
    spans: list[LineSpan] = []
    start, first_line, lines, offset = 0, 1, 0, 0
    cut = target_bytes  # the next span ends at the first line end at or after this offset
    with storage.open_read(uri) as f:
        while chunk := f.read(_CHUNK):
            i = 0
            while True:
                nl = chunk.find(b"\n", max(i, cut - 1 - offset))
                if nl < 0:
                    lines += chunk.count(b"\n", i)
                    break
                lines += chunk.count(b"\n", i, nl + 1)
                end = offset + nl + 1
                spans.append(LineSpan(start, end, first_line))
                start, first_line, cut, i = end, lines + 1, end + target_bytes, nl + 1
            offset += len(chunk)
    if start < offset or not spans:
        spans.append(LineSpan(start, offset, first_line))
    return spans


def iter_lines(
    uri: str, max_line_bytes: int, span: LineSpan | None = None
) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, raw_bytes)`` for each line of a file (or of one ``span``), 1-based.

    A line longer than ``max_line_bytes`` yields ``None`` instead of its bytes
    (and is never held whole in memory), so one pathological line cannot
    exhaust a worker. A UTF-8 byte-order mark opening line 1 is dropped: it is
    not part of the text (a BOM left on a TSV header renames its first column,
    on a first FLEURS row it becomes part of the sentence id, and it makes a
    first JSONL line invalid JSON).
    """
    with storage.open_read(uri) as f:
        if span is None:
            yield from iter_stream_lines(f, max_line_bytes)
            return
        f.seek(span.start)
        window = _Window(f, span.end - span.start)
        yield from iter_stream_lines(window, max_line_bytes, first_line=span.first_line)


class _Window:
    """The next ``size`` bytes of a stream, as a stream."""

    def __init__(self, f: BinaryIO, size: int):
        self._f, self._left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n) if n else b""
        self._left -= len(data)
        return data


def iter_stream_lines(
    f: BinaryIO, max_line_bytes: int, first_line: int = 1
) -> Iterator[tuple[int, bytes | None]]:
    """:func:`iter_lines` over an open binary stream, read in 1 MB chunks;
    the stream's first line is numbered ``first_line``."""
    lineno, buf, overflow = first_line - 1, bytearray(), False
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


class Gunzip:
    """A gzip stream (one member or several) decoded as far as its bytes allow.

    Why not :class:`gzip.GzipFile`: on a truncated or corrupt stream it raises
    from the ``read`` that hits the damage, losing everything that read had
    decoded (a 1 MB read: thousands of good lines). This returns every byte
    that decodes, and raises (``EOFError`` for a cut stream, ``zlib.error`` for
    damage) only once nothing decoded is left, so a reader keeps every whole
    line before the damage. Decoded data is produced 1 MB at a time whatever
    the compression ratio.
    """

    _IN, _OUT = 1 << 16, 1 << 20

    def __init__(self, raw: BinaryIO):
        import zlib

        self._zlib = zlib
        self._raw = raw
        self._d = zlib.decompressobj(wbits=31)
        self._buf = bytearray()
        self._pending = b""  # compressed bytes not yet given to a decoder
        self._started = self._done = False
        self._error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and not self._done:
            self._fill()
        if not self._buf and self._error is not None:
            raise self._error
        take = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:take])
        del self._buf[:take]
        return out

    def _fill(self) -> None:
        data = self._d.unconsumed_tail or self._pending or self._raw.read(self._IN)
        self._pending = b""
        if not data:
            self._done = True
            if self._started and not self._d.eof:
                self._error = EOFError("compressed stream ended before the end-of-stream marker")
            return
        if self._d.eof:  # the previous member ended: a new one starts
            self._d = self._zlib.decompressobj(wbits=31)
        try:
            self._buf += self._d.decompress(data, self._OUT)
        except self._zlib.error as exc:
            self._done, self._error = True, exc
            return
        self._started = True
        if self._d.eof:
            self._pending = self._d.unused_data


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


# Bidirectional formatting characters: they reorder how an id displays, so two
# different ids can look the same (and one can look like another).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def id_problem(utt_id: str) -> str | None:
    """Why an utterance id is unusable (None when fine): empty, a control
    character (NUL, newline: ids end up in file names, logs and TSVs) or a
    bidirectional formatting mark."""
    if not utt_id:
        return "empty id"
    bad = next((c for c in utt_id if unicodedata.category(c) == "Cc" or c in _BIDI), None)
    if bad is not None:
        return f"id {utt_id!r} holds {bad!r} (control or bidirectional formatting character)"
    return None


def example_reject(example: AudioExample, source: str, lineno: int) -> Reject | None:
    """The reject for an example a reader built, or ``None``.

    Every string field must be writable as UTF-8 (checked first, so the
    reject itself can be written: its id falls back to the line when the id
    is the bad field; ``bad_text``), the id must pass :func:`id_problem`
    (``malformed_line``) and the transcript :func:`text_problem` (``bad_text``).
    """
    problem = unwritable_field(dataclasses.asdict(example))
    if problem:
        reject_id = None if unwritable(example.id) else example.id
        return line_reject(source, lineno, Reason.BAD_TEXT, problem, id=reject_id)
    problem = id_problem(example.id)
    if problem:
        return line_reject(source, lineno, Reason.MALFORMED_LINE, problem)
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
