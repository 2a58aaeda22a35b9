"""The generic JSONL manifest: one object per line.

Required keys: ``id``, ``audio``, ``text``, ``lang``, ``split``; optional:
``translation``, ``tgt_lang``, ``sentence_id``, ``speaker``, ``corpus``
(default ``jsonl``), ``source_lang``. ``audio`` follows the path policy of
every format (:meth:`~tokenizer.manifests.ManifestConfig.resolve_audio`): a
relative path resolves against ``--audio-root`` (default: the manifest's
folder) and may not climb out of it with ``..``; an absolute path or a URI
(``gs://...``) is taken as written; symlinks are followed. ``--langs`` / ``--splits`` select lines by ``lang`` (or
``source_lang``) and ``split``; a line they leave out is not read as input
(see :class:`~tokenizer.manifests.ManifestConfig`).
"""

from __future__ import annotations

from collections.abc import Iterator

from datastore import storage
from datastore.records import AudioExample, Reason
from tokenizer.manifests import FILE, ManifestConfig, register_reader
from tokenizer.manifests.fields import clean_lang, json_object, lang_problem
from tokenizer.manifests.lines import (
    LineSpan,
    example_reject,
    iter_lines,
    line_reject,
    unwritable,
    unwritable_field,
)

# Structural keys (a bad one is a malformed line); a bad "text" is bad_text.
REQUIRED = ("id", "audio", "lang", "split")
OPTIONAL = ("translation", "tgt_lang", "sentence_id", "speaker", "corpus", "source_lang")


@register_reader("jsonl")
class JsonlReader:
    INPUT = FILE
    HINT = "jsonl expects one JSON object per line"

    @staticmethod
    def sources(config: ManifestConfig) -> list[str]:
        return [config.input]

    @staticmethod
    def splittable(config: ManifestConfig, source: str) -> bool:
        return not source.endswith(".gz")

    @staticmethod
    def read(
        config: ManifestConfig, source: str, span: LineSpan | None = None
    ) -> Iterator[AudioExample]:
        root = config.audio_root or storage.dirname(source)
        for lineno, raw in iter_lines(source, config.max_line_bytes, span):
            obj, reject = json_object(source, lineno, raw, config.max_line_bytes)
            if reject:
                yield reject
            if obj is None:
                continue
            problem = _structure_problem(obj)
            if problem:
                obj_id = obj.get("id") if isinstance(obj.get("id"), str) else None
                obj_id = None if obj_id and unwritable(obj_id) else obj_id
                yield line_reject(source, lineno, Reason.MALFORMED_LINE, problem, id=obj_id or None)
                continue
            lang = clean_lang(obj["lang"])
            problem = lang_problem(lang)
            if problem:
                yield line_reject(
                    source, lineno, Reason.MALFORMED_LINE, problem, id=_safe(obj["id"])
                )
                continue
            if not (
                config.wants_split(obj["split"]) and config.wants_lang(lang, obj.get("source_lang"))
            ):
                continue
            # Before any reject names the id or the path: a reject must be writable too.
            problem = unwritable_field({k: obj.get(k) for k in ("text", *REQUIRED, *OPTIONAL)})
            if problem:
                obj_id = None if unwritable(obj["id"]) else obj["id"]
                yield line_reject(source, lineno, Reason.BAD_TEXT, problem, id=obj_id)
                continue
            extras = {k: obj.get(k) for k in OPTIONAL}
            try:
                uri = config.resolve_audio(root, obj["audio"])
            except storage.PathEscapeError as exc:
                yield line_reject(source, lineno, Reason.PATH_ESCAPE, str(exc), id=obj["id"])
                continue
            text = obj.get("text")
            if not isinstance(text, str):
                yield line_reject(
                    source, lineno, Reason.BAD_TEXT, "missing or non-string text", id=obj["id"]
                )
                continue
            example = AudioExample(
                id=obj["id"],
                uri=uri,
                text=text,
                lang=lang,
                split=obj["split"],
                corpus=extras["corpus"] or "jsonl",
                source_lang=extras["source_lang"],
                sentence_id=extras["sentence_id"],
                speaker=extras["speaker"],
                translation=extras["translation"],
                tgt_lang=extras["tgt_lang"],
            )
            yield example_reject(example, source, lineno) or example


def _safe(utt_id: str) -> str | None:
    """An id a reject can carry (None when it cannot be written as UTF-8)."""
    return None if unwritable(utt_id) else utt_id


def _structure_problem(obj: dict) -> str | None:
    missing = [k for k in REQUIRED if not isinstance(obj.get(k), str) or not obj[k].strip()]
    if missing:
        return f"missing, empty or non-string keys: {', '.join(missing)}"
    if any(obj.get(k) is not None and not isinstance(obj[k], str) for k in OPTIONAL):
        return f"optional keys ({', '.join(OPTIONAL)}) must be strings"
    if any(c in obj[k] for k in ("lang", "split") for c in "/="):
        return "lang and split must not contain '/' or '=' (they name output folders)"
    return None
