"""WikiMatrix bitext reading and filtering, without Beam.

WikiMatrix ships one ``WikiMatrix.{l1}-{l2}.tsv.gz`` per language pair
(alphabetical order), each line ``score \\t l1 sentence \\t l2 sentence``,
sorted by descending margin score. Its authors recommend a threshold of
1.04 while their extraction script defaults to 1.05, so the threshold is
always explicit here.

Every line becomes exactly one :class:`BitextPair` or one :class:`Reject`.
Exact duplicate pairs share an id (a 64-bit hash of both sides) and are
found by :func:`filter_language_pair`, which streams all files of one
language pair with memory bounded by the number of distinct pairs (24 bytes
each), not by the number of lines, and writes the shards itself.

Example::

    cfg = BitextConfig(min_score=1.04)
    for item in read_wikimatrix("WikiMatrix.en-fr.tsv.gz", cfg): ...
    summary = filter_language_pair(["WikiMatrix.en-fr.tsv.gz"], group=0, config=cfg,
                                   out_dir="out", write=shards.WriteConfig())
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import zlib
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from datastore import schema, shards, storage
from datastore.records import Reason, Reject
from datastore.settings import setting
from tokenizer.manifests.lines import (
    Gunzip,
    iter_stream_lines,
    line_reject,
    raw_line_problem,
    text_problem,
)

_NAME = re.compile(r"WikiMatrix\.(?P<l1>[A-Za-z_\-]+?)-(?P<l2>[A-Za-z_\-]+)\.tsv(\.gz)?$")


@dataclass(frozen=True, kw_only=True)
class BitextConfig:
    """Filters applied to every line.

    ``max_length_ratio`` compares UTF-8 *byte* lengths of the two sides: a
    Chinese character is 3 bytes, so byte ratios stay comparable across
    scripts where character ratios do not (zh vs en differ ~3x in characters).
    ``langs``: keep only files whose two languages are both in this set.
    """

    min_score: float = setting(help="margin score threshold")
    min_chars: int = setting(3, help="shortest side, characters")
    max_chars: int = setting(1000, help="longest side, characters")
    max_length_ratio: float = setting(
        3.0, help="max ratio of the two sides' UTF-8 byte lengths (bytes, so scripts compare)"
    )
    langs: frozenset[str] | None = setting(
        None, help="keep only files whose two languages are both listed"
    )
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
    m = _NAME.search(storage.basename(uri))
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


# A score is a plain decimal number, as WikiMatrix writes it ("1.0453"). Python's
# float() also takes "inf", "nan", "1_1" and non-ASCII digits: none is a margin score.
_FLOAT32_MAX = 3.4028234663852886e38  # the shards store scores as float32
_SCORE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_score(text: str) -> float | None:
    """The score of a line, or ``None`` unless it is a finite plain decimal number."""
    if not _SCORE.fullmatch(text):
        return None
    score = float(text)
    return score if math.isfinite(score) and abs(score) <= _FLOAT32_MAX else None


def filter_line(
    l1: str, l2: str, fields: list[str], where: str, config: BitextConfig
) -> BitextPair | tuple[str, str]:
    """A parsed pair, or ``(reason, detail)`` for the first filter it fails."""
    if len(fields) != 3:
        return Reason.MALFORMED_LINE, f"{len(fields)} tab-separated fields, expected 3"
    score_text, src, tgt = fields[0], fields[1].strip(), fields[2].strip()
    score = parse_score(score_text)
    if score is None:
        return Reason.MALFORMED_LINE, f"score {score_text[:20]!r} is not a finite decimal number"
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
    for _, item in read_numbered(uri, config):
        yield item


def read_numbered(uri: str, config: BitextConfig) -> Iterator[tuple[int, BitextPair | Reject]]:
    """:func:`read_wikimatrix` with the line number of each item (0: not a line)."""
    l1, l2 = parse_pair(uri)
    lineno = 0
    try:
        with storage.open_read(uri) as raw_file:
            stream = Gunzip(raw_file) if uri.endswith(".gz") else raw_file
            for lineno, raw in iter_stream_lines(stream, config.max_line_bytes):
                line, reject = raw_line_problem(uri, lineno, raw, config.max_line_bytes)
                if reject:
                    yield lineno, reject
                    continue
                if not line.strip():
                    continue
                result = filter_line(l1, l2, line.split("\t"), f"{uri}:{lineno}", config)
                if isinstance(result, BitextPair):
                    yield lineno, result
                else:
                    yield lineno, line_reject(uri, lineno, *result)
    except FileNotFoundError as exc:
        reject = Reject(
            id=uri, source=uri, stage="read", reason=Reason.MISSING_FILE, detail=str(exc)
        )
        yield 0, reject
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        yield (
            0,
            Reject(
                id=f"{uri}:after-line-{lineno}",
                source=uri,
                stage="read",
                reason=Reason.BAD_GZIP,
                detail=f"unreadable after line {lineno}: {type(exc).__name__}: {exc}",
            ),
        )


def reject_row(reject: Reject) -> dict:
    """``Reject.as_row`` without ``dataclasses.asdict``'s deep copy (a hot path here)."""
    return {
        "id": reject.id,
        "source": reject.source,
        "stage": reject.stage,
        "reason": reject.reason,
        "detail": reject.detail,
    }


def duplicate_row(pair: BitextPair, first_source: str) -> dict:
    """The reject row of a repeated pair (built directly: one per duplicate line)."""
    return {
        "id": pair.id,
        "source": pair.source,
        "stage": "dedup",
        "reason": Reason.DUPLICATE_PAIR,
        "detail": f"same pair as {first_source}",
    }


def pair_key(pair: BitextPair) -> int:
    """The 64-bit key duplicates are found by: the hash in the pair's id."""
    return int(pair.id.rsplit("/", 1)[1], 16)


# -- one language pair, streamed ------------------------------------------------
LINE_BITS = 40  # a location packs (file position << LINE_BITS) | line number
LINE_MASK = (1 << LINE_BITS) - 1


class BestPerKey:
    """The best ``(score, location)`` per 64-bit pair key, in sorted numpy arrays.

    Why: deduplicating by holding lines, or whole pairs per key, grows with the
    input (1 M short lines took 1.8 GB that way); this holds 24 bytes per
    distinct pair, plus the last ``buffer`` additions (24 bytes each), folded
    in when the buffer is full (a fold briefly needs about 3x the table).
    Best: the highest score, then the smallest location (earliest file, then
    line), as a sort over all occurrences would pick.
    """

    SMALL = 1 << 16  # up to this many distinct pairs, look-ups use a dict (~7 MB at most)

    def __init__(self, buffer: int = 1 << 18):
        self.buffer = buffer
        self.keys = np.empty(0, np.uint64)
        self.scores = np.empty(0, np.float64)
        self.locs = np.empty(0, np.uint64)
        self._small: dict[int, int] | None = None
        self._new()

    def _new(self) -> None:
        self._keys, self._scores, self._locs = array("Q"), array("d"), array("Q")

    def add(self, key: int, score: float, loc: int) -> None:
        self._keys.append(key)
        self._scores.append(score)
        self._locs.append(loc)
        if len(self._keys) >= self.buffer:
            self.fold()

    def fold(self) -> None:
        if not self._keys:
            return
        keys = np.concatenate([self.keys, np.frombuffer(self._keys, np.uint64)])
        scores = np.concatenate([self.scores, np.frombuffer(self._scores, np.float64)])
        locs = np.concatenate([self.locs, np.frombuffer(self._locs, np.uint64)])
        self._new()
        order = np.lexsort((locs, -scores, keys))
        keys, scores, locs = keys[order], scores[order], locs[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        self.keys, self.scores, self.locs = keys[first], scores[first], locs[first]
        small = len(self.keys) <= self.SMALL
        self._small = (
            dict(zip(self.keys.tolist(), self.locs.tolist(), strict=True)) if small else None
        )

    def best(self, key: int) -> int | None:
        """The best location of ``key`` (call :meth:`fold` after the last add)."""
        if self._small is not None:
            return self._small.get(key)
        i = int(np.searchsorted(self.keys, np.uint64(key)))
        if i < len(self.keys) and int(self.keys[i]) == key:
            return int(self.locs[i])
        return None


class ShardWriter:
    """Rows of one shard kind, written as ``rel_dir/name(i)`` each time
    ``rows_per_shard`` rows have arrived. Memory holds one shard, as Arrow
    record batches of ``BATCH`` rows (about half the size of Python strings)."""

    BATCH = 4096

    def __init__(self, out_dir: str, kind: str, rel_dir: str, name, config: shards.WriteConfig):
        self.out_dir, self.rel_dir, self.name, self.config = out_dir, rel_dir, name, config
        self.kind = kind
        self.table_schema, _ = shards.KINDS[kind]
        self.infos: list[shards.ShardInfo] = []
        self.rows = 0
        self._batches: list[pa.RecordBatch] = []
        self._pending = 0  # rows in the current shard
        self._clear()

    def _clear(self) -> None:
        self.columns: dict[str, list] = {n: [] for n in self.table_schema.names}

    def add(self, row: dict) -> None:
        for name, column in self.columns.items():
            column.append(row[name])
        self.rows += 1
        self._pending += 1
        if self._pending >= self.config.rows_per_shard:
            self.flush()
        elif len(self.columns["id"]) >= self.BATCH:
            self._batch()

    def _batch(self) -> None:
        if self.columns["id"]:
            batch = pa.RecordBatch.from_pydict(self.columns, schema=self.table_schema)
            self._batches.append(batch)
            self._clear()

    def flush(self) -> None:
        """Write the rows received since the last shard as one shard (none: nothing)."""
        self._batch()
        if not self._batches:
            return
        table = pa.Table.from_batches(self._batches, schema=self.table_schema)
        self._batches, self._pending = [], 0
        rel = f"{self.rel_dir}/{self.name(len(self.infos))}"
        self.infos.append(
            shards.write_rows(
                table, out_dir=self.out_dir, kind=self.kind, rel=rel, config=self.config
            )
        )


def filter_language_pair(
    files: list[str],
    *,
    group: int,
    config: BitextConfig,
    out_dir: str,
    write: shards.WriteConfig,
    fold_every: int = 1 << 18,
) -> dict:
    """Filter, deduplicate and write every line of the files of one language pair.

    Pass 1 reads the files (sorted URIs) and keeps the best location of each
    distinct pair (:class:`BestPerKey`); pass 2 reads them again and writes
    each line as it comes: the best occurrence of a pair as a bitext row, its
    other occurrences as ``duplicate_pair`` rejects, any other line as its
    reject. Memory: 24 bytes per distinct pair plus one shard of rows per
    kind, whatever the number of lines; the price is reading each file twice.
    Shards: ``bitext/src_lang=A/tgt_lang=B/part-{i:05d}.parquet`` and
    ``rejects/part-{group:05d}-{i:05d}.parquet`` (``group`` numbers the
    language pairs of a job, so reject shard names never collide).

    Returns ``{"input", "accepted", "rejected", "reasons", "shards"}``.
    """
    l1, l2 = parse_pair(files[0])
    if any(parse_pair(f) != (l1, l2) for f in files):
        raise ValueError(f"files of several language pairs in one group: {files}")
    best = BestPerKey(buffer=fold_every)
    records = []
    for pos, uri in enumerate(files):
        n = 0
        for lineno, item in read_numbered(uri, config):
            n += 1
            if isinstance(item, BitextPair):
                best.add(pair_key(item), item.score, pos << LINE_BITS | lineno)
        records.append(n)
    best.fold()
    part = shards.partition_dir(schema.BITEXT_DIR, {"src_lang": l1, "tgt_lang": l2})
    pairs = ShardWriter(out_dir, schema.BITEXT_DIR, part, schema.shard_name, write)
    rejects = ShardWriter(
        out_dir,
        schema.REJECTS_DIR,
        schema.REJECTS_DIR,
        lambda i: f"part-{group:05d}-{i:05d}.parquet",
        write,
    )
    reasons: Counter[str] = Counter()
    for pos, uri in enumerate(files):
        n = 0
        for lineno, item in read_numbered(uri, config):
            n += 1
            if isinstance(item, BitextPair):
                first = best.best(pair_key(item))
                if first == pos << LINE_BITS | lineno:
                    pairs.add(item.as_row())
                    continue
                if first is None:
                    raise RuntimeError(f"{uri} changed while the job read it (new pair at {n})")
                reasons[Reason.DUPLICATE_PAIR] += 1
                rejects.add(duplicate_row(item, f"{files[first >> LINE_BITS]}:{first & LINE_MASK}"))
                continue
            reasons[item.reason] += 1
            rejects.add(reject_row(item))
        if n != records[pos]:
            raise RuntimeError(
                f"{uri} changed while the job read it: {records[pos]}, then {n} records"
            )
    pairs.flush()
    rejects.flush()
    return {
        "input": sum(records),
        "accepted": pairs.rows,
        "rejected": rejects.rows,
        "reasons": dict(reasons),
        "shards": [dataclasses.asdict(i) for i in (*pairs.infos, *rejects.infos)],
    }
