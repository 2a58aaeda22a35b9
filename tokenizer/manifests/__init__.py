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
from typing import NamedTuple

from datastore import storage
from datastore.records import AudioExample, Reason, Reject
from datastore.settings import setting
from tokenizer.manifests.lines import LineSpan, plan_spans

Item = AudioExample | Reject


def _column_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """``"text=sentence, lang=locale"`` -> ``(("text", "sentence"), ("lang", "locale"))``."""
    pairs = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        key, sep, column = item.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise ValueError(f"--columns {text!r}: expected KEY=COLUMN,... (e.g. text=sentence)")
        pairs.append((key.strip(), column.strip()))
    return tuple(pairs)


@dataclass(frozen=True, kw_only=True)
class ManifestConfig:
    """Which manifest to read and what to keep.

    ``langs`` accepts short codes (``fr``) or corpus codes (``fr_fr``,
    ``zh-CN``). ``audio_root``: CoVoST's Common Voice language folder
    (required there); for JSONL, NeMo, lhotse, Kaldi and Parquet the root
    relative audio paths resolve against (default: the manifest's folder, a
    Kaldi data dir).

    Every reader resolves audio paths with :meth:`resolve_audio`, the one path
    policy (:func:`datastore.storage.resolve_under`): relative paths stay under
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

    format: str = setting(help="manifest format of --input", choices=lambda: available_formats())
    input: str = setting(
        help="fleurs: data dir ({lang}/{split}.tsv); covost: covost_v2.{src}_{tgt}.tsv; "
        "jsonl, nemo: manifest file; lhotse: cuts.jsonl(.gz) or a *supervisions*.jsonl(.gz) "
        "beside its *recordings* file; hf-parquet: Parquet file, glob or folder; kaldi: data "
        "dir (wav.scp, text); local paths or gs:// (see docs/formats.md)"
    )
    audio_root: str | None = setting(
        None,
        help="covost: Common Voice language root holding validated.tsv and clips/; other "
        "formats: the folder relative audio paths resolve against (default: the manifest's)",
    )
    langs: tuple[str, ...] | None = setting(
        None, help="comma-separated language codes to keep (default: all)"
    )
    splits: tuple[str, ...] | None = setting(
        None, help="comma-separated splits to read (default: all; fit-codebook: train)"
    )
    lang: str | None = setting(
        None,
        help="language code of records whose format or line names none (nemo, lhotse, "
        "hf-parquet, kaldi)",
    )
    split: str | None = setting(
        None,
        help="split of formats that name none (nemo, lhotse, hf-parquet, kaldi; default: train; "
        "hf-parquet otherwise reads it from hub file names)",
    )
    confine_audio_to: str | None = setting(
        None,
        metavar="ROOT",
        help="refuse (path_escape) any audio that does not resolve under ROOT: absolute paths, "
        "URIs and symlinks leading elsewhere included",
    )
    allow_commands: bool = setting(
        False,
        help="run the shell commands a Kaldi wav.scp ('cmd |') or a lhotse recording names as "
        "audio (default: each is a shell_command reject)",
    )
    # The CLI hands over its text ("text=sentence,lang=locale"); parsed below.
    columns: tuple[tuple[str, str], ...] = setting(
        (),
        parse=str,
        metavar="KEY=COL,...",
        help="hf-parquet column names when not the hub's FLEURS/Common Voice ones; keys: "
        "audio, text, lang, id, speaker, sentence_id",
    )
    max_line_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.format not in _READERS:
            raise ValueError(f"unknown manifest format {self.format!r}; known: {sorted(_READERS)}")
        if not self.input:
            raise ValueError("input must be a path or URI")
        if self.max_line_bytes < 1024:
            raise ValueError("max_line_bytes must be at least 1024")
        if self.lang is not None:
            from tokenizer.manifests.fields import clean_lang, lang_problem

            object.__setattr__(self, "lang", clean_lang(self.lang))
            if lang_problem(self.lang):
                raise ValueError(f"--lang {self.lang!r}: {lang_problem(self.lang)}")
        if self.split is not None and (
            not self.split.strip() or any(c in self.split for c in "/= \t")
        ):
            raise ValueError(f"--split {self.split!r}: must be a plain code (it names a folder)")
        if self.lang is not None and self.format in OWN_LANGS:
            raise ValueError(
                f"--lang: {self.format} records carry their own language (--langs selects)"
            )
        if self.split is not None and self.format in OWN_SPLITS:
            raise ValueError(
                f"--split: {self.format} records carry their own split (--splits selects)"
            )
        if isinstance(self.columns, str):
            object.__setattr__(self, "columns", _column_pairs(self.columns))
        if self.allow_commands and self.confine_audio_to:
            raise ValueError("--allow-commands cannot be confined: a command reads what it likes")
        if self.columns and self.format != "hf-parquet":
            raise ValueError("--columns applies to --format hf-parquet only")
        unknown = sorted({k for k, _ in self.columns} - set(COLUMN_KEYS))
        if unknown:
            raise ValueError(f"--columns: unknown keys {unknown}; known: {', '.join(COLUMN_KEYS)}")

    def resolve_audio(self, root: str, path: str) -> str:
        """The path or URI a manifest's audio ``path`` names, as it will be opened
        (raises :class:`datastore.storage.PathEscapeError`); see the class docstring."""
        return storage.resolve_under(root, path, confine=self.confine_audio_to)

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
# Formats whose every record names its language (--lang would be ignored).
OWN_LANGS = ("fleurs", "covost", "jsonl")
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


# What --input names for a format: a file, a folder, either, or also a glob.
FILE, FOLDER, FILE_OR_FOLDER, ANY_INPUT = "file", "folder", "file or folder", "file, folder or glob"


@dataclass(frozen=True)
class Reader:
    sources: Callable[[ManifestConfig], list[str]]
    read: Callable[..., Iterator[Item]]
    splittable: Callable[[ManifestConfig, str], bool]
    input: str = FILE  # what --input names (checked before the job starts)
    hint: str = ""  # said when the input gave no records


def _never(config: ManifestConfig, source: str) -> bool:
    return False


_READERS: dict[str, Reader] = {}


def register_reader(name: str):
    """Class decorator registering a reader with ``sources`` and ``read`` static methods.

    A reader whose sources are plain files of one record per line may also
    define ``splittable(config, source) -> bool``; for a source it accepts,
    ``read(config, source, span=LineSpan)`` reads only that span's lines (see
    :func:`plan_parts`). Class attributes: ``INPUT`` (what ``--input`` names:
    :data:`FILE` by default, :data:`FOLDER`, :data:`FILE_OR_FOLDER`,
    :data:`ANY_INPUT`) and ``HINT`` (what the input should be, said when it
    gave no records).
    """

    def wrap(cls):
        _READERS[name] = Reader(
            sources=cls.sources,
            read=cls.read,
            splittable=getattr(cls, "splittable", _never),
            input=getattr(cls, "INPUT", FILE),
            hint=getattr(cls, "HINT", ""),
        )
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


# Why 4 MB: ~20,000 JSONL lines, a few seconds of reading; a 2 M-line manifest
# gives ~100 parts, enough to keep a cluster's workers busy from one file.
PART_BYTES = 4 << 20
# Why a floor on the count: parallelism comes from the parts, so a manifest of
# 20,000 lines in one 4 MB part would be read, decoded and encoded by one
# worker while the others wait (on Flink with --parallelism 2 it was). Smaller
# manifests are cut into MIN_PARTS parts of at least MIN_PART_BYTES (~600
# JSONL lines: a part's fixed cost stays small next to its rows).
MIN_PARTS = 16
MIN_PART_BYTES = 128 << 10


class SourcePart(NamedTuple):
    """What one worker reads: a whole source, or one span of its lines."""

    source: str
    span: LineSpan | None = None


def plan_parts(config: ManifestConfig, part_bytes: int | None = None) -> list[SourcePart]:
    """The manifest's sources, large line-per-record files cut into spans of
    about ``part_bytes`` (default :data:`PART_BYTES`, smaller when that gives
    fewer than :data:`MIN_PARTS` parts; :func:`~tokenizer.manifests.lines.plan_spans`:
    one pass over each such file, counting lines), in a deterministic order.
    Reading every part gives what reading every source gives, line numbers
    included."""
    reader = _READERS[config.format]
    sources = reader.sources(config)
    splittable = {s: storage.size(s) for s in sources if reader.splittable(config, s)}
    if part_bytes is None:
        even_share = sum(splittable.values()) // max(1, MIN_PARTS - len(sources) + len(splittable))
        part_bytes = min(PART_BYTES, max(MIN_PART_BYTES, even_share))
    parts: list[SourcePart] = []
    for source in sources:
        if splittable.get(source, 0) > part_bytes:
            parts += [SourcePart(source, span) for span in plan_spans(source, part_bytes)]
        else:
            parts.append(SourcePart(source))
    return parts


def read_part(config: ManifestConfig, part: SourcePart) -> Iterator[Item]:
    reader = _READERS[config.format]
    if part.span is None:
        return reader.read(config, part.source)
    return reader.read(config, part.source, span=part.span)


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


# Every module of this package is imported: readers register themselves.
from datastore.discover import import_modules  # noqa: E402

import_modules(__name__)
