"""Hugging Face Parquet: encoded audio inside Parquet files, as the hub ships FLEURS and Common Voice.

``--input``: a Parquet file, a glob, or a folder (every ``*.parquet`` under
it), local or ``gs://``. The audio column holds the hub's ``Audio`` struct
``{bytes, path}`` (or plain binary): the bytes are decoded in memory (no
temporary file); a row without bytes reads the file its ``path`` names (the
path policy of every format, relative to ``--audio-root``, default the
Parquet file's folder). The hub's layouts need no flags:

- FLEURS: ``audio``, ``raw_transcription`` (else ``transcription``),
  ``lang_id`` (a ClassLabel whose names, in the file's ``huggingface``
  metadata, are FLEURS codes) or ``language``, ``id`` (the sentence id,
  shared by several recordings: it becomes ``sentence_id``, and the
  utterance id is ``{lang code}/{audio file stem}``, as the FLEURS reader's);
- Common Voice: ``audio``, ``sentence``, ``locale``, ``client_id`` (the
  speaker), ``path`` (id ``{locale}/{clip stem}``), ``sentence_id`` if present.

Other column names map with ``--columns audio=A,text=T,lang=L,id=I,speaker=S,
sentence_id=N``; without a language column, ``--lang``. The split is
``--split``, else the hub's file naming (``train-00000-of-00002.parquet``,
``.../validation/0000.parquet``; ``validation`` reads as ``dev``, the FLEURS
name), else ``train``.

Streaming: a file is read one row group at a time and only its text and id
columns (and the audio struct's ``path``); the bytes stay in the file until
the decode stage reads them, one pass per row group, a few rows at a time
(the examples carry a ``FILE#row_group=R&row=N&column=C`` reference,
:mod:`tokenizer.containers`).
Rejects name a row as ``FILE:N`` (N counts rows from 0, as pandas does).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datastore import storage
from datastore.records import FILE, PARQUET, AudioExample, Reason, Reject
from tokenizer.containers import is_arrow, open_arrow, parquet_ref
from tokenizer.manifests import ANY_INPUT, ManifestConfig, register_reader
from tokenizer.manifests.fields import lang_codes, lang_problem, stem
from tokenizer.manifests.lines import example_reject, line_reject, unwritable_field

TEXT = ("raw_transcription", "transcription", "sentence", "text")
LANG = ("locale", "lang_id", "language", "lang")
SPEAKER = ("client_id", "speaker_id", "speaker")
SPLITS = {"train": "train", "validation": "dev", "valid": "dev", "dev": "dev", "test": "test"}
_SHARD = re.compile(r"^(?P<split>[a-z]+)[-_.]")


@dataclass(frozen=True)
class Layout:
    """Which column plays which part in one file."""

    audio: str
    audio_struct: bool
    text: str
    corpus: str
    lang: str | None = None
    lang_names: tuple[str, ...] | None = None
    id: str | None = None
    path: str | None = None
    speaker: str | None = None
    sentence_id: str | None = None

    def columns(self) -> list[str]:
        """The columns the reader reads (never the audio bytes)."""
        wanted = [self.text, self.lang, self.id, self.path, self.speaker, self.sentence_id]
        if self.audio_struct:
            wanted.append(f"{self.audio}.path")
        return list(dict.fromkeys(c for c in wanted if c))


def split_of(uri: str, config: ManifestConfig) -> str:
    if config.split:
        return config.split
    name = storage.basename(uri).lower()
    m = _SHARD.match(name)
    if m and m["split"] in SPLITS:
        return SPLITS[m["split"]]
    return SPLITS.get(storage.basename(storage.dirname(uri)).lower(), "train")


@register_reader("hf-parquet")
class HfParquetReader:
    INPUT = ANY_INPUT
    HINT = (
        "hf-parquet expects Parquet files (a file, a glob or a folder) or a dat"
        "asets save_to_disk folder"
    )

    @staticmethod
    def sources(config: ManifestConfig) -> list[str]:
        inp = config.input
        if any(c in inp for c in "*?["):
            files = storage.glob(inp)
        elif storage.is_local(inp) and os.path.isdir(storage.local_path(inp)):
            files = storage.glob(storage.join(inp, "**", "*.parquet")) or [
                f  # a `datasets` save_to_disk folder: its Arrow files (not map() caches)
                for f in storage.glob(storage.join(inp, "**", "*.arrow"))
                if not storage.basename(f).startswith("cache-")
            ]
        else:
            files = [inp]
        return [f for f in files if config.wants_split(split_of(f, config))]

    @staticmethod
    def read(config: ManifestConfig, source: str) -> Iterator[AudioExample]:

        split = split_of(source, config)
        if not config.wants_split(split):
            return
        file_uri = (
            str(Path(storage.local_path(source)).resolve()) if storage.is_local(source) else source
        )
        with storage.open_read(source) as f:
            try:
                table = _TableFile(f, source)
                layout = detect(table.schema, dict(config.columns))
            except Exception as exc:  # not Parquet/Arrow, or no usable audio/text column
                yield _file_reject(source, f"{type(exc).__name__}: {exc}")
                return
            if layout.lang is None and not config.lang:
                yield _file_reject(source, "no language column: give --lang or --columns lang=C")
                return
            first = 0
            for rg, n, group in table.groups(layout):
                if isinstance(group, Exception):  # a damaged row group: each of its rows
                    detail = f"row group {rg} unreadable: {type(group).__name__}: {group}"[:500]
                    for row in range(n):
                        yield line_reject(source, first + row, Reason.MALFORMED_LINE, detail)
                    first += n
                    continue
                values, has_bytes = group
                for row in range(n):
                    cells = {name: column[row] for name, column in values.items()}
                    ref = parquet_ref(file_uri, rg, row, layout.audio) if has_bytes[row] else None
                    yield from _row(config, source, first + row, layout, cells, ref, split)
                first += n


class _TableFile:
    """A Parquet file's row groups, or an Arrow file's record batches (``datasets``'
    ``save_to_disk``): the columns the reader wants, and which rows hold bytes."""

    def __init__(self, f, source: str):
        import pyarrow.parquet as pq

        self.arrow = open_arrow(source, f) if is_arrow(source) else None
        self.parquet = None if self.arrow else pq.ParquetFile(f)
        self.schema = self.arrow.schema if self.arrow else self.parquet.schema_arrow

    def groups(self, layout: Layout):
        """``(index, rows, (values by column, has bytes per row) | the read error)``."""
        if self.arrow:
            for rg, batch in enumerate(self.arrow.iter_batches()):
                yield rg, batch.num_rows, _batch_values(batch, layout)
            return
        pf = self.parquet
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            try:
                table = pf.read_row_group(rg, columns=layout.columns())
                has_bytes = _has_bytes(pf, rg, n, layout)
            except Exception as exc:
                yield rg, n, exc
                continue
            yield rg, n, ({c: table.column(c).to_pylist() for c in table.column_names}, has_bytes)


def _batch_values(batch, layout: Layout):
    """An Arrow record batch's wanted columns (the audio struct's ``path`` only:
    the bytes stay in the file until decoding) and which rows hold bytes."""
    values = {}
    for name in layout.columns():
        if name == f"{layout.audio}.path":
            paths = batch.column(layout.audio).field("path").to_pylist()
            values[layout.audio] = [{"path": p} for p in paths]
        else:
            values[name] = batch.column(name).to_pylist()
    cells = batch.column(layout.audio)
    if layout.audio_struct:
        cells = cells.field("bytes")
    return values, cells.is_valid().to_pylist()


def detect(schema, flags: dict[str, str]) -> Layout:
    """The layout of a file from its columns (the hub's FLEURS / Common Voice
    names, or ``flags``); raises ``ValueError`` naming what is missing."""
    import pyarrow as pa

    names = set(schema.names)
    for key, column in flags.items():
        if column not in names:
            raise ValueError(f"--columns {key}={column}: no such column (has {sorted(names)})")

    def first(key: str, candidates) -> str | None:
        return flags.get(key) or next((c for c in candidates if c in names), None)

    audio = flags.get("audio") or ("audio" if "audio" in names else None)
    text = first("text", TEXT)
    if audio is None or text is None:
        raise ValueError(
            f"no audio and text columns (has {sorted(names)}); map them with --columns"
        )
    kind = schema.field(audio).type
    struct = pa.types.is_struct(kind)
    if struct and kind.get_field_index("bytes") < 0:
        raise ValueError(f"audio column {audio!r} is a struct without 'bytes'")
    if not struct and not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        raise ValueError(f"audio column {audio!r} is {kind}, not binary or {{bytes, path}}")
    labels = _class_labels(schema)
    lang = flags.get("lang") or next(
        (c for c in LANG if c in names and (c != "lang_id" or c in labels)), None
    )
    fleurs = text in ("raw_transcription", "transcription") and bool(
        {"lang_id", "num_samples", "language"} & names
    )
    common_voice = text == "sentence" and bool({"locale", "client_id"} & names)
    path = "path" if "path" in names and pa.types.is_string(schema.field("path").type) else None
    sentence = (
        "id" if fleurs and "id" in names else "sentence_id" if "sentence_id" in names else None
    )
    return Layout(
        audio=audio,
        audio_struct=struct,
        text=text,
        corpus="fleurs" if fleurs else "common_voice" if common_voice else "hf-parquet",
        lang=lang,
        lang_names=labels.get(lang),
        id=flags.get("id") or ("id" if "id" in names and not fleurs else None),
        path=path,
        speaker=first("speaker", SPEAKER),
        sentence_id=flags.get("sentence_id") or sentence,
    )


def _class_labels(schema) -> dict[str, tuple[str, ...]]:
    """ClassLabel names per column from the ``huggingface`` schema metadata."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        features = json.loads(raw)["info"]["features"] if raw else {}
    except (ValueError, KeyError, TypeError):
        return {}
    return {
        name: tuple(f["names"])
        for name, f in features.items()
        if isinstance(f, dict) and f.get("_type") == "ClassLabel" and f.get("names")
    }


def _has_bytes(pf, rg: int, n: int, layout: Layout) -> list[bool]:
    """Which rows of a row group hold audio bytes: from the column statistics
    when they settle it (all or none), else from the bytes column itself."""
    leaf = f"{layout.audio}.bytes" if layout.audio_struct else layout.audio
    meta = pf.metadata.row_group(rg)
    for i in range(meta.num_columns):
        column = meta.column(i)
        if column.path_in_schema == leaf and column.statistics is not None:
            nulls = column.statistics.null_count
            if column.statistics.has_null_count and nulls in (0, n):
                return [nulls == 0] * n
    cells = pf.read_row_group(rg, columns=[leaf]).column(0).combine_chunks()
    if layout.audio_struct:
        cells = cells.field("bytes")
    return cells.is_valid().to_pylist()


def _file_reject(source: str, detail: str) -> Reject:
    return Reject(
        id=source, source=source, stage="read", reason=Reason.MALFORMED_LINE, detail=detail[:500]
    )


def _row(config, source, row, layout: Layout, cells: dict, ref: str | None, split: str):
    def bad(reason: str, detail: str, utt_id: str | None = None):
        return line_reject(source, row, reason, detail, id=utt_id)

    strings = {k: v for k, v in cells.items() if isinstance(v, str)}
    problem = unwritable_field(strings)
    if problem:
        return [bad(Reason.BAD_TEXT, problem)]
    value = cells.get(layout.lang) if layout.lang else None
    if isinstance(value, int) and layout.lang_names and 0 <= value < len(layout.lang_names):
        value = layout.lang_names[value]
    short, code = lang_codes(value) if isinstance(value, str) and value else (config.lang, None)
    problem = lang_problem(short)
    if problem:
        return [bad(Reason.MALFORMED_LINE, problem)]
    if not config.wants_lang(short, code):
        return []
    audio = cells.get(layout.audio) if layout.audio_struct else None
    path = (audio or {}).get("path") or cells.get(layout.path)
    if layout.id:
        utt_id = None if cells.get(layout.id) is None else str(cells[layout.id])
    else:
        utt_id = f"{code or short}/{stem(path) if path else f'{stem(source)}-{row}'}"
    if not utt_id:
        return [bad(Reason.MALFORMED_LINE, f"empty {layout.id}")]
    if ref is not None:
        uri, kind = ref, PARQUET
    elif path:
        try:
            uri, kind = (
                config.resolve_audio(config.audio_root or storage.dirname(source), path),
                FILE,
            )
        except storage.PathEscapeError as exc:
            return [bad(Reason.PATH_ESCAPE, str(exc), utt_id)]
    else:
        return [bad(Reason.MISSING_FILE, "no audio bytes and no path in this row", utt_id)]
    sentence_id = cells.get(layout.sentence_id) if layout.sentence_id else None
    speaker = cells.get(layout.speaker) if layout.speaker else None
    text = cells.get(layout.text)
    example = AudioExample(
        id=utt_id,
        uri=uri,
        text=text if isinstance(text, str) else "",
        lang=short,
        split=split,
        corpus=layout.corpus,
        source_lang=code,
        sentence_id=None if sentence_id is None else str(sentence_id),
        speaker=None if speaker is None else str(speaker),
        audio_kind=kind,
    )
    return [example_reject(example, source, row) or example]
