"""Field checks shared by the NeMo, lhotse, Kaldi and Parquet readers.

JSON lines of a plain or gzipped file (:func:`json_objects`), languages as
manifests write them (:func:`lang_codes`), segment times
(:func:`segment_problem`) and ids derived from paths (:func:`path_id`).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import zlib
from collections.abc import Iterator

from datastore import storage
from datastore.records import Reason, Reject
from tokenizer.manifests.lines import (
    Gunzip,
    LineSpan,
    iter_lines,
    iter_stream_lines,
    line_reject,
    raw_line_problem,
)


def json_objects(
    source: str, max_line_bytes: int, span: LineSpan | None = None
) -> Iterator[tuple[int, dict | None, Reject | None]]:
    """``(line number, object, None)`` per JSON object line of ``source`` (gzipped
    when its name ends in ``.gz``; only a plain file is read by ``span``),
    ``(line number, None, reject)`` per bad line; blank lines are skipped. A
    corrupt gzip stream ends the file with one ``bad_gzip`` reject (the lines it
    hid cannot be counted; every whole line before it is read). A blank line
    yields ``(n, None, None)``."""
    if span is not None:
        for lineno, line_bytes in iter_lines(source, max_line_bytes, span):
            yield lineno, *json_object(source, lineno, line_bytes, max_line_bytes)
        return
    lineno = 0
    with storage.open_read(source) as raw:
        stream = Gunzip(raw) if source.endswith(".gz") else raw
        lines = iter_stream_lines(stream, max_line_bytes)
        while True:
            try:
                lineno, line_bytes = next(lines, (None, None))
            except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                if not source.endswith(".gz"):
                    raise
                detail = f"corrupt gzip after line {lineno}: {type(exc).__name__}: {exc}"
                yield lineno + 1, None, line_reject(source, lineno + 1, Reason.BAD_GZIP, detail)
                return
            if lineno is None:
                return
            yield lineno, *json_object(source, lineno, line_bytes, max_line_bytes)


def json_object(source: str, lineno: int, line_bytes, max_line_bytes: int):
    """``(object, None)`` for a line holding a JSON object, ``(None, reject)``
    for any other line, ``(None, None)`` for a blank one. Never raises on what a
    line holds: an integer of 5,000 digits (Python's int limit) or a 3,000-deep
    nesting (the parser's recursion) is a ``malformed_line`` like bad syntax."""
    line, reject = raw_line_problem(source, lineno, line_bytes, max_line_bytes)
    if reject:
        return None, reject
    if not line.strip():
        return None, None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON: {exc.msg}"
        return None, line_reject(source, lineno, Reason.MALFORMED_LINE, detail)
    except (ValueError, RecursionError) as exc:  # int digits limit, nesting depth
        detail = f"unreadable JSON: {type(exc).__name__}: {exc}"[:300]
        return None, line_reject(source, lineno, Reason.MALFORMED_LINE, detail)
    if not isinstance(obj, dict):
        return None, line_reject(source, lineno, Reason.MALFORMED_LINE, "not a JSON object")
    return obj, None


def lang_codes(value: str) -> tuple[str, str | None]:
    """``(short code, corpus code or None)`` of a language as a manifest writes
    it: a short code (``fr``), a FLEURS code (``fr_fr``), a Common Voice code
    (``zh-CN``) or an English name (``French``, as lhotse recipes and the hub's
    FLEURS ``language`` column write it). Unicode compatibility forms are
    folded first (NFKC: a full-width ``ｆｒ`` is ``fr``); :func:`lang_problem`
    then refuses what is still not a code."""
    from tokenizer import languages

    text = unicodedata.normalize("NFKC", value).strip()
    by_name = _names().get(text.lower())
    if by_name:
        return by_name, None
    short = languages.from_fleurs(text) if "_" in text else languages.from_covost(text)
    return short, (None if text == short else text)


_NAMES: dict[str, str] = {}


def _names() -> dict[str, str]:
    if not _NAMES:
        from tokenizer import languages

        _NAMES.update({lang.name.lower(): lang.short for lang in languages.LANGUAGES})
    return _NAMES


# A language code: ASCII letters, then optional subtags (``fr``, ``zh-cn``, ``sr_latn``).
_LANG_CODE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


def lang_problem(code: str | None) -> str | None:
    """Why a language code cannot name a ``lang=`` folder (None: it can).

    Only ASCII letters, digits, ``-`` and ``_``: a zero-width space, a
    look-alike Cyrillic letter or a space would make a folder that reads like
    ``lang=fr`` and that ``--langs fr`` never selects."""
    if not code or not code.strip():
        return "no language (give --lang for records without one)"
    if not _LANG_CODE.fullmatch(code):
        return f"language {code!r} is not a language code (ASCII letters, digits, - and _)"
    return None


def clean_lang(value: str) -> str:
    """A short language code as a row stores it: NFKC-folded, trimmed, lower case."""
    return unicodedata.normalize("NFKC", value).strip().lower()


def number(value) -> float | None:
    """A JSON number as a finite float; ``None`` when absent; raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{str(value)[:40]!r} is not a number")
    try:
        out = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise ValueError(f"{str(value)[:40]}... is out of range") from None
    if not math.isfinite(out):
        raise ValueError(f"{value!r} is not finite")
    return out


def segment_problem(offset: float | None, duration: float | None) -> str | None:
    """Why segment times cannot be used (``None`` when they can)."""
    if offset is not None and offset < 0:
        return f"negative offset {offset}"
    if duration is not None and duration <= 0:
        return f"duration {duration} is not positive"
    return None


def path_id(path: str, offset: float | None = None, duration: float | None = None) -> str:
    """A deterministic id from an audio path (as written, extension dropped)
    and a segment's times: ``clips/a``, ``clips/a@2.560`` or
    ``clips/a@2.560+1.250``. Times keep their exact value (``seconds_text``),
    and a segment's duration is part of its id: segments that share a start
    (a NeMo manifest may cut one offset several ways) stay distinct."""
    head, _, tail = path.rpartition("/")
    stem = tail.rsplit(".", 1)[0] if "." in tail.lstrip(".") else tail
    base = f"{head}/{stem}" if head else stem
    if offset is None:
        return base
    span = "" if duration is None else f"+{seconds_text(duration)}"
    return f"{base}@{seconds_text(offset)}{span}"


def seconds_text(value: float) -> str:
    """Seconds as an id writes them: three decimals when that is exact
    (``2.560``), else the float's shortest exact form (``2.5601``)."""
    short = f"{value:.3f}"
    return short if float(short) == value else repr(float(value))


def stem(path: str) -> str:
    """A file name without folders and extension."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
