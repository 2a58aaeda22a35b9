"""CoVoST 2: ``covost_v2.{src}_{tgt}.tsv`` joined with Common Voice.

The CoVoST TSV (``path``, ``translation``, ``split``; our synthetic corpus
and some releases add ``sentence`` and ``client_id``) is joined on ``path``
with the Common Voice ``validated.tsv`` under ``--audio-root`` (speaker,
transcript, optional ``sentence_id``); audio lives in ``--audio-root/clips``.
Both files are read the way the CoVoST scripts read them: tab separated,
no quoting, backslash escapes, no NA filtering. ``train_covost`` counts as
``train``.

Memory: the join keeps ``path -> (client_id, sentence, sentence_id)`` of
``validated.tsv`` in memory (about 200 bytes per clip); the CoVoST rows
themselves stream.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

from datastore import storage
from datastore.records import AudioExample, Reason
from tokenizer.manifests import FILE, ManifestConfig, register_reader
from tokenizer.manifests.lines import example_reject, iter_lines, line_reject, raw_line_problem

_NAME = re.compile(r"covost_v2\.(?P<src>[^_]+)_(?P<tgt>[^_.]+)\.tsv$")
SPLIT_ALIASES = {"train_covost": "train"}


def parse_name(uri: str) -> tuple[str, str]:
    """``("fr", "en")`` from ``.../covost_v2.fr_en.tsv``."""
    m = _NAME.search(storage.basename(uri))
    if not m:
        raise ValueError(f"{uri}: not a covost_v2.{{src}}_{{tgt}}.tsv file name")
    return m["src"], m["tgt"]


def _fields(line: str) -> list[str]:
    return next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\"))


def _rows(uri: str, max_bytes: int):
    """``(lineno, dict | None, reject | None)`` per data line of a headed TSV."""
    header = None
    for lineno, raw in iter_lines(uri, max_bytes):
        line, reject = raw_line_problem(uri, lineno, raw, max_bytes)
        if reject:
            yield lineno, None, reject
            continue
        if not line.strip():
            continue
        cols = _fields(line)
        if header is None:
            header = cols
            continue
        if len(cols) != len(header):
            detail = f"{len(cols)} columns, header has {len(header)}"
            yield lineno, None, line_reject(uri, lineno, Reason.MALFORMED_LINE, detail)
            continue
        yield lineno, dict(zip(header, cols, strict=True)), None


def load_validated(uri: str, max_bytes: int) -> dict[str, tuple[str, str, str | None]]:
    """``path -> (client_id, sentence, sentence_id)`` from Common Voice's validated.tsv."""
    out = {}
    for _, row, _reject in _rows(uri, max_bytes):
        if row and row.get("path"):
            out[row["path"]] = (
                row.get("client_id", ""),
                row.get("sentence", ""),
                row.get("sentence_id"),
            )
    return out


@register_reader("covost")
class CovostReader:
    INPUT = FILE
    HINT = "covost expects a covost_v2.{src}_{tgt}.tsv; --langs/--splits may exclude it"

    @staticmethod
    def sources(config: ManifestConfig) -> list[str]:
        from tokenizer import languages

        if not config.audio_root:
            raise ValueError("covost needs --audio-root (the Common Voice language folder)")
        src, _ = parse_name(config.input)
        if not config.wants_lang(src, languages.from_covost(src)):
            return []
        return [config.input]

    @staticmethod
    def read(config: ManifestConfig, source: str) -> Iterator[AudioExample]:
        from tokenizer import languages

        src, tgt = parse_name(source)
        validated = load_validated(
            storage.join(config.audio_root, "validated.tsv"), config.max_line_bytes
        )
        clips = storage.join(config.audio_root, "clips")
        for lineno, row, reject in _rows(source, config.max_line_bytes):
            if reject:
                yield reject
                continue
            path = row.get("path", "").strip()
            split = SPLIT_ALIASES.get(row.get("split", ""), row.get("split", ""))
            if not path or not split:
                yield line_reject(source, lineno, Reason.MALFORMED_LINE, "empty path or split")
                continue
            if not config.wants_split(split):
                continue
            utt_id = f"{src}/{path.rsplit('/', 1)[-1].rsplit('.', 1)[0]}"
            try:
                uri = config.resolve_audio(clips, path)
            except storage.PathEscapeError as exc:
                yield line_reject(source, lineno, Reason.PATH_ESCAPE, str(exc), id=utt_id)
                continue
            if path not in validated:
                detail = f"{path} is not in validated.tsv"
                yield line_reject(source, lineno, Reason.MISSING_FILE, detail, id=utt_id)
                continue
            client_id, cv_sentence, sentence_id = validated[path]
            translation = row.get("translation") or None
            example = AudioExample(
                id=utt_id,
                uri=uri,
                text=row.get("sentence") or cv_sentence,
                lang=languages.from_covost(src),
                split=split,
                corpus="covost",
                source_lang=src,
                sentence_id=sentence_id or None,
                speaker=row.get("client_id") or client_id or None,
                translation=translation,
                tgt_lang=tgt if translation else None,
            )
            yield example_reject(example, source, lineno) or example
