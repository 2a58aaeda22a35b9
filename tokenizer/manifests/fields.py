"""Field checks shared by the NeMo, lhotse, Kaldi and Parquet readers.

JSON lines of a plain or gzipped file (:func:`json_objects`), languages as
manifests write them (:func:`lang_codes`), segment times
(:func:`segment_problem`) and ids derived from paths (:func:`path_id`).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator

from datastore import storage
from datastore.records import Reason, Reject
from tokenizer.manifests.lines import (
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
    hid cannot be counted). A blank line yields ``(n, None, None)``."""
    import gzip

    if span is not None:
        for lineno, line_bytes in iter_lines(source, max_line_bytes, span):
            yield lineno, *_json_object(source, lineno, line_bytes, max_line_bytes)
        return
    lineno = 0
    with storage.open_read(source) as raw:
        stream = gzip.GzipFile(fileobj=raw) if source.endswith(".gz") else raw
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
            yield lineno, *_json_object(source, lineno, line_bytes, max_line_bytes)


def _json_object(source: str, lineno: int, line_bytes, max_line_bytes: int):
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
    if not isinstance(obj, dict):
        return None, line_reject(source, lineno, Reason.MALFORMED_LINE, "not a JSON object")
    return obj, None


def lang_codes(value: str) -> tuple[str, str | None]:
    """``(short code, corpus code or None)`` of a language as a manifest writes
    it: a short code (``fr``), a FLEURS code (``fr_fr``), a Common Voice code
    (``zh-CN``) or an English name (``French``, as lhotse recipes and the hub's
    FLEURS ``language`` column write it)."""
    from tokenizer import languages

    text = value.strip()
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


def lang_problem(code: str | None) -> str | None:
    if not code or not code.strip():
        return "no language (give --lang for records without one)"
    if any(c in code for c in "/=") or any(c.isspace() for c in code):
        return f"language {code!r} must not contain '/', '=' or spaces (it names a folder)"
    return None


def number(value) -> float | None:
    """A JSON number as a finite float; ``None`` when absent; raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    out = float(value)
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


def path_id(path: str, offset: float | None = None) -> str:
    """A deterministic id from an audio path (as written, extension dropped) and
    a segment's offset: ``clips/a`` or ``clips/a@2.000``."""
    head, _, tail = path.rpartition("/")
    stem = tail.rsplit(".", 1)[0] if "." in tail.lstrip(".") else tail
    base = f"{head}/{stem}" if head else stem
    return base if offset is None else f"{base}@{offset:.3f}"


def stem(path: str) -> str:
    """A file name without folders and extension."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
