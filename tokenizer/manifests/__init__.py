"""Manifest readers: FLEURS, CoVoST 2 (+ Common Voice), JSONL, NeMo, lhotse,
Hugging Face Parquet and Kaldi -> AudioExample.

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

from tokenizer.records import AudioExample, Reason, Reject

Item = AudioExample | Reject


@dataclass(frozen=True, kw_only=True)
class ManifestConfig:
    """Which manifest to read and what to keep.

    ``langs`` accepts short codes (``fr``) or corpus codes (``fr_fr``,
    ``zh-CN``). ``audio_root``: CoVoST's Common Voice language folder
    (required there); for JSONL, NeMo, lhotse, Kaldi and Parquet the root
    relative audio paths resolve against (default: the manifest's folder, a
    Kaldi data dir).

    Every reader resolves audio paths with :meth:`resolve_audio`, the one path
    policy (:func:`tokenizer.io.resolve_under`): relative paths stay under
    their root, absolute paths and URIs are taken as written, symlinks are
    followed; ``confine_audio_to`` refuses whatever does not resolve under it.

    ``lang``: the language of records whose format or line has none (NeMo,
    lhotse, Kaldi, Parquet). ``split``: the split of formats without one
    (default ``train``; Parquet files named like the hub's, ``train-*`` or
    ``.../validation/...``, name their own). ``allow_commands``: run the shell
    commands a Kaldi ``wav.scp`` or a lhotse recording may name as audio
    (refused by default: a manifest should not run code). ``columns``: Parquet
    column names, ``(("text", "sentence"), ...)``, for layouts other than the
    hub's FLEURS and Common Voice.

    ``langs`` and ``splits`` choose which part of a corpus is the job's
    input, as choosing files would: a record outside them is not an input
    record (neither accepted nor rejected, not counted), so a codebook fitted
    with ``splits=("train",)`` never sees a test row and the counts reconcile
    over what was selected. FLEURS and CoVoST select whole files this way
    (plus CoVoST's per-row split); JSONL selects line by line.
    """

    format: str
    input: str
    audio_root: str | None = None
    langs: tuple[str, ...] | None = None
    splits: tuple[str, ...] | None = None
    lang: str | None = None
    split: str | None = None
    confine_audio_to: str | None = None
    allow_commands: bool = False
    columns: tuple[tuple[str, str], ...] = ()
    max_line_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.format not in _READERS:
            raise ValueError(f"unknown manifest format {self.format!r}; known: {sorted(_READERS)}")
        if not self.input:
            raise ValueError("input must be a path or URI")
        if self.max_line_bytes < 1024:
            raise ValueError("max_line_bytes must be at least 1024")
        for flag, value in (("--lang", self.lang), ("--split", self.split)):
            if value is not None and (not value.strip() or any(c in value for c in "/= \t")):
                raise ValueError(f"{flag} {value!r}: must be a plain code (it names a folder)")
        if self.split is not None and self.format in OWN_SPLITS:
            raise ValueError(
                f"--split: {self.format} records carry their own split (--splits selects)"
            )
        if self.allow_commands and self.confine_audio_to:
            raise ValueError("--allow-commands cannot be confined: a command reads what it likes")
        if self.columns and self.format != "hf-parquet":
            raise ValueError("--columns applies to --format hf-parquet only")
        unknown = sorted({k for k, _ in self.columns} - set(COLUMN_KEYS))
        if unknown:
            raise ValueError(f"--columns: unknown keys {unknown}; known: {', '.join(COLUMN_KEYS)}")

    def resolve_audio(self, root: str, path: str) -> str:
        """The path or URI a manifest's audio ``path`` names, as it will be opened
        (raises :class:`tokenizer.io.PathEscapeError`); see the class docstring."""
        from tokenizer import io

        return io.resolve_under(root, path, confine=self.confine_audio_to)

    @property
    def default_split(self) -> str:
        return self.split or "train"

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


# Formats whose records name their split (``--split`` does not apply).
OWN_SPLITS = ("fleurs", "covost", "jsonl")
# What ``columns`` may map (hf-parquet).
COLUMN_KEYS = ("audio", "text", "lang", "id", "speaker", "sentence_id")


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

    With ``dedup`` a repeated id becomes a ``duplicate_id`` reject (the first
    occurrence wins); this keeps one set of ids in memory, which a Beam job
    replaces by a grouping step.
    """
    items = (item for src in list_sources(config) for item in read_source(config, src))
    return dedup_ids(items) if dedup else items


def dedup_ids(items: Iterable[Item]) -> Iterator[Item]:
    seen: set[str] = set()
    for item in items:
        if isinstance(item, AudioExample):
            if item.id in seen:
                yield duplicate_reject(item)
                continue
            seen.add(item.id)
        yield item


def duplicate_reject(example: AudioExample) -> Reject:
    return Reject(
        id=example.id,
        source=example.uri,
        stage="read",
        reason=Reason.DUPLICATE_ID,
        detail=f"id {example.id!r} already seen",
    )


# Register the built-in readers (imported for their decorators).
from tokenizer.manifests import (  # noqa: E402,F401
    covost,
    fleurs,
    hf_parquet,
    jsonl,
    kaldi,
    lhotse,
    nemo,
)
