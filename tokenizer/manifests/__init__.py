"""Manifest readers: FLEURS, CoVoST 2 (+ Common Voice) and JSONL -> AudioExample.

A reader is registered by name with :func:`register_reader` and splits its
input into *sources* (e.g. one FLEURS ``{lang}/{split}.tsv`` each) so a Beam
job can read sources in parallel; reading a source streams it line by line
and yields an :class:`AudioExample` per good line and a :class:`Reject` per
bad one, never raising on bad input.

Example::

    from tokenizer.manifests import ManifestConfig, read_manifest
    cfg = ManifestConfig(format="fleurs", input="mini/fleurs", langs=("fr", "sw"))
    for item in read_manifest(cfg):
        ...  # AudioExample or Reject
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from datastore.records import AudioExample, Reason, Reject
from datastore.settings import setting

Item = AudioExample | Reject


@dataclass(frozen=True, kw_only=True)
class ManifestConfig:
    """Which manifest to read and what to keep.

    ``langs`` accepts short codes (``fr``) or corpus codes (``fr_fr``,
    ``zh-CN``). ``audio_root``: CoVoST's Common Voice language folder
    (required there); for JSONL the root relative audio paths resolve against
    and must stay under (default: the manifest's folder).

    ``langs`` and ``splits`` choose which part of a corpus is the job's
    input, as choosing files would: a record outside them is not an input
    record (neither accepted nor rejected, not counted), so a codebook fitted
    with ``splits=("train",)`` never sees a test row and the counts reconcile
    over what was selected. FLEURS and CoVoST select whole files this way
    (plus CoVoST's per-row split); JSONL selects line by line.
    """

    format: str = setting(help="manifest format of --input", choices=lambda: available_formats())
    input: str = setting(
        help="fleurs: data dir ({lang}/{split}.tsv); covost: covost_v2.{src}_{tgt}.tsv; "
        "jsonl: manifest file (local path or gs://)"
    )
    audio_root: str | None = setting(
        None, help="covost: Common Voice language root holding validated.tsv and clips/"
    )
    langs: tuple[str, ...] | None = setting(
        None, help="comma-separated language codes to keep (default: all)"
    )
    splits: tuple[str, ...] | None = setting(
        None, help="comma-separated splits to read (default: all)"
    )
    max_line_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.format not in _READERS:
            raise ValueError(f"unknown manifest format {self.format!r}; known: {sorted(_READERS)}")
        if not self.input:
            raise ValueError("input must be a path or URI")
        if self.max_line_bytes < 1024:
            raise ValueError("max_line_bytes must be at least 1024")

    def wants_lang(self, *codes: str | None) -> bool:
        """Whether a record in a language known by ``codes`` (its short and/or
        corpus code) passes ``langs``. Codes compare by short code, so ``fr``,
        ``fr_fr`` (FLEURS) and ``fr`` (Common Voice) select the same records,
        and so do ``zh``, ``cmn_hans_cn`` and ``zh-CN``."""
        if self.langs is None:
            return True
        return not _short_codes(tuple(c for c in codes if c)).isdisjoint(_short_codes(self.langs))

    def wants_split(self, split: str) -> bool:
        return self.splits is None or split in self.splits


@functools.lru_cache(maxsize=4096)
def _short_codes(codes: tuple[str, ...]) -> frozenset[str]:
    """Each code as written, lower-cased, and as a FLEURS and a Common Voice code."""
    from tokenizer import languages

    out = set()
    for code in codes:
        out.update((code.strip().lower(), languages.from_fleurs(code), languages.from_covost(code)))
    return frozenset(out)


@dataclass(frozen=True)
class Reader:
    sources: Callable[[ManifestConfig], list[str]]
    read: Callable[[ManifestConfig, str], Iterator[Item]]


_READERS: dict[str, Reader] = {}


def register_reader(name: str):
    """Class decorator registering a reader with ``sources`` and ``read`` static methods."""

    def wrap(cls):
        _READERS[name] = Reader(sources=cls.sources, read=cls.read)
        return cls

    return wrap


def reader(name: str) -> Reader:
    return _READERS[name]


def available_formats() -> list[str]:
    return sorted(_READERS)


def list_sources(config: ManifestConfig) -> list[str]:
    """The independently readable parts of a manifest (sorted, deterministic)."""
    return _READERS[config.format].sources(config)


def read_source(config: ManifestConfig, source: str) -> Iterator[Item]:
    return _READERS[config.format].read(config, source)


def read_manifest(config: ManifestConfig, *, dedup: bool = True) -> Iterator[Item]:
    """Every example of a manifest, in a deterministic order.

    With ``dedup`` every example of a repeated id but one becomes a
    ``duplicate_id`` reject (:func:`pick_one_per_id`'s rule, the same as the
    Beam jobs' grouping step); this holds the examples in memory, which a Beam
    job replaces by that grouping step.
    """
    items = (item for src in list_sources(config) for item in read_source(config, src))
    return dedup_ids(items) if dedup else items


def pick_one_per_id(examples: Iterable[AudioExample]) -> tuple[AudioExample, list[AudioExample]]:
    """The one rule for examples that share an id: the one with the smallest
    ``(uri, text)`` is kept, the others are duplicates. It depends only on the
    examples, not on the order they were read in, so a plain loop and a Beam
    job (whose grouping has no order) keep the same one."""
    ordered = sorted(examples, key=lambda e: (e.uri, e.text))
    return ordered[0], ordered[1:]


def dedup_ids(items: Iterable[Item]) -> Iterator[Item]:
    """Items in input order, one example per id (:func:`pick_one_per_id`, at
    the place of the id's first occurrence), each duplicate a reject after it."""
    items = list(items)
    by_id: dict[str, list[AudioExample]] = {}
    for item in items:
        if isinstance(item, AudioExample):
            by_id.setdefault(item.id, []).append(item)
    for item in items:
        if not isinstance(item, AudioExample):
            yield item
        elif item.id in by_id:
            kept, duplicates = pick_one_per_id(by_id.pop(item.id))
            yield kept
            yield from (duplicate_reject(d) for d in duplicates)


def duplicate_reject(example: AudioExample) -> Reject:
    return Reject(
        id=example.id,
        source=example.uri,
        stage="read",
        reason=Reason.DUPLICATE_ID,
        detail=f"id {example.id!r} already seen",
    )


# Register the built-in readers (imported for their decorators).
from tokenizer.manifests import covost, fleurs, jsonl  # noqa: E402,F401
