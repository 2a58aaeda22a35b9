"""WikiMatrix bitext reading and filtering, without Beam.

WikiMatrix ships one ``WikiMatrix.{l1}-{l2}.tsv.gz`` per language pair
(alphabetical order), each line ``score \\t l1 sentence \\t l2 sentence``,
sorted by descending margin score. Its authors recommend a threshold of
1.04 while their extraction script defaults to 1.05, so the threshold is
always explicit here.

Every line becomes exactly one :class:`BitextPair` or one :class:`Reject`;
exact duplicate pairs are detected by id (a hash of both sides) by the
caller, which can see all lines of a pair (the Beam job groups by id).

Example::

    cfg = BitextConfig(min_score=1.04)
    for item in read_wikimatrix("WikiMatrix.en-fr.tsv.gz", cfg): ...
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from tokenizer import io
from tokenizer.manifests.lines import iter_stream_lines, line_reject, raw_line_problem, text_problem
from tokenizer.records import Reason, Reject

_NAME = re.compile(r"WikiMatrix\.(?P<l1>[A-Za-z_\-]+?)-(?P<l2>[A-Za-z_\-]+)\.tsv(\.gz)?$")


@dataclass(frozen=True, kw_only=True)
class BitextConfig:
    """Filters applied to every line.

    ``max_length_ratio`` compares UTF-8 *byte* lengths of the two sides: a
    Chinese character is 3 bytes, so byte ratios stay comparable across
    scripts where character ratios do not (zh vs en differ ~3x in characters).
    ``langs``: keep only files whose two languages are both in this set.
    """

    min_score: float
    min_chars: int = 3
    max_chars: int = 1000
    max_length_ratio: float = 3.0
    langs: frozenset[str] | None = None
    max_line_bytes: int = 1 << 16

    def __post_init__(self) -> None:
        if not 0 < self.min_chars <= self.max_chars:
            raise ValueError(
                f"need 0 < min_chars <= max_chars, got {self.min_chars}, {self.max_chars}"
            )
        if self.max_length_ratio < 1:
            raise ValueError(f"max_length_ratio must be >= 1, got {self.max_length_ratio}")


@dataclass(frozen=True)
class BitextPair:
    id: str
    src_lang: str
    tgt_lang: str
    src_text: str
    tgt_text: str
    score: float
    source: str  # file:line

    def as_row(self) -> dict:
        return {
            "id": self.id,
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            "src_text": self.src_text,
            "tgt_text": self.tgt_text,
            "score": self.score,
            "source": self.source,
        }


def parse_pair(uri: str) -> tuple[str, str]:
    """``("en", "fr")`` from ``.../WikiMatrix.en-fr.tsv.gz``."""
    m = _NAME.search(io.basename(uri))
    if not m:
        raise ValueError(f"{uri}: not a WikiMatrix.{{l1}}-{{l2}}.tsv.gz file name")
    return m["l1"], m["l2"]


def select_files(uris: list[str], config: BitextConfig) -> list[str]:
    """The files whose language pair passes the language subset."""
    out = []
    for uri in uris:
        l1, l2 = parse_pair(uri)
        if config.langs is None or (l1 in config.langs and l2 in config.langs):
            out.append(uri)
    return out


def pair_id(l1: str, l2: str, src: str, tgt: str) -> str:
    """Content id: equal pairs get equal ids, which is how duplicates are found."""
    digest = hashlib.sha1(f"{src}\t{tgt}".encode()).hexdigest()[:16]
    return f"{l1}-{l2}/{digest}"


def filter_line(
    l1: str, l2: str, fields: list[str], where: str, config: BitextConfig
) -> BitextPair | tuple[str, str]:
    """A parsed pair, or ``(reason, detail)`` for the first filter it fails."""
    if len(fields) != 3:
        return Reason.MALFORMED_LINE, f"{len(fields)} tab-separated fields, expected 3"
    score_text, src, tgt = fields[0], fields[1].strip(), fields[2].strip()
    try:
        score = float(score_text)
    except ValueError:
        return Reason.MALFORMED_LINE, f"score {score_text[:20]!r} is not a number"
    if score != score:  # NaN
        return Reason.MALFORMED_LINE, "score is NaN"
    for side in (src, tgt):
        problem = text_problem(side)
        if problem:
            return Reason.BAD_TEXT, problem
    if score < config.min_score:
        return Reason.LOW_SCORE, f"score {score:.4f} < {config.min_score}"
    shortest, longest = sorted((len(src), len(tgt)))
    if shortest < config.min_chars or longest > config.max_chars:
        return (
            Reason.LENGTH,
            f"lengths {len(src)}/{len(tgt)} chars outside [{config.min_chars}, {config.max_chars}]",
        )
    b1, b2 = len(src.encode()), len(tgt.encode())
    if max(b1, b2) > config.max_length_ratio * min(b1, b2):
        return Reason.LENGTH_RATIO, f"byte lengths {b1}/{b2} ratio > {config.max_length_ratio}"
    if src.casefold() == tgt.casefold():
        return Reason.IDENTICAL_SIDES, "source and target are the same text"
    return BitextPair(pair_id(l1, l2, src, tgt), l1, l2, src, tgt, score, where)


def read_wikimatrix(uri: str, config: BitextConfig) -> Iterator[BitextPair | Reject]:
    """Every line of one WikiMatrix file as a pair or a reject.

    A corrupt gzip stream yields one ``bad_gzip`` reject for the rest of the
    file, after the lines that could be read.
    """
    l1, l2 = parse_pair(uri)
    lineno = 0
    try:
        with io.open_read(uri) as raw_file:
            stream = gzip.GzipFile(fileobj=raw_file) if uri.endswith(".gz") else raw_file
            for lineno, raw in iter_stream_lines(stream, config.max_line_bytes):
                line, reject = raw_line_problem(uri, lineno, raw, config.max_line_bytes)
                if reject:
                    yield reject
                    continue
                if not line.strip():
                    continue
                result = filter_line(l1, l2, line.split("\t"), f"{uri}:{lineno}", config)
                if isinstance(result, BitextPair):
                    yield result
                else:
                    yield line_reject(uri, lineno, *result)
    except FileNotFoundError as exc:
        yield Reject(id=uri, source=uri, stage="read", reason=Reason.MISSING_FILE, detail=str(exc))
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        yield Reject(
            id=f"{uri}:after-line-{lineno}",
            source=uri,
            stage="read",
            reason=Reason.BAD_GZIP,
            detail=f"unreadable after line {lineno}: {type(exc).__name__}: {exc}",
        )


def duplicate_reject(pair: BitextPair, first: BitextPair) -> Reject:
    return Reject(
        id=pair.id,
        source=pair.source,
        stage="dedup",
        reason=Reason.DUPLICATE_PAIR,
        detail=f"same pair as {first.source}",
    )


def keep_first(pairs: list[BitextPair]) -> tuple[BitextPair, list[Reject]]:
    """Among equal pairs keep the highest score, then the earliest line (deterministic)."""
    ordered = sorted(pairs, key=lambda p: (-p.score, _source_key(p.source)))
    return ordered[0], [duplicate_reject(p, ordered[0]) for p in ordered[1:]]


def _source_key(source: str) -> tuple[str, int]:
    path, _, line = source.rpartition(":")
    return path, int(line) if line.isdigit() else 0
