"""NeMo ASR manifests: one JSON object per line (plain or ``.gz``).

Required keys: ``audio_filepath``, ``text``. Optional: ``offset`` and
``duration`` (seconds; with ``offset`` the line is a segment of the file and
only ``[offset, offset + duration)`` is tokenized, to the end without
``duration``; without ``offset`` the whole file is, as NeMo writes
``duration`` = the file's length there), ``lang`` or Canary's ``source_lang``
(``--lang`` only for lines naming none), Canary's ``target_lang``,
``taskname`` and ``answer`` (the transcript of an ``asr`` task, else a
translation: the row's ``translation`` and ``tgt_lang``), ``id``
(else derived from the path and the segment: ``clips/a``, ``clips/a@2.000`` or
``clips/a@2.000+1.500``, exact times: segments sharing an offset stay apart;
an absolute path under the manifest's folder counts from that folder, so ids
do not change with where the corpus sits),
``speaker``. NeMo manifests name no split: ``--split`` (default ``train``).
Relative paths resolve against ``--audio-root`` (default: the manifest's
folder, as NeMo resolves them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from datastore import storage
from datastore.records import AudioExample, Reason
from tokenizer.manifests import FILE, ManifestConfig, register_reader
from tokenizer.manifests.fields import (
    json_objects,
    lang_codes,
    lang_problem,
    number,
    path_id,
    segment_problem,
)
from tokenizer.manifests.lines import LineSpan, example_reject, line_reject, unwritable_field

STRINGS = (
    "audio_filepath", "lang", "id", "speaker", "source_lang", "target_lang", "taskname", "answer",
)  # fmt: skip
# Canary-style tasks whose ``answer`` is the transcript (else it is a translation).
TRANSCRIBE_TASKS = ("asr", "transcribe")


@register_reader("nemo")
class NemoReader:
    INPUT = FILE
    HINT = "nemo expects one JSON object per line with audio_filepath and text"

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
        split = config.default_split
        if not config.wants_split(split):
            return
        for lineno, obj, reject in json_objects(source, config.max_line_bytes, span):
            if reject:
                yield reject
            if obj is None:
                continue

            def bad(reason: str, detail: str, utt_id: str | None = None, lineno: int = lineno):
                return line_reject(source, lineno, reason, detail, id=utt_id)

            problem = _structure_problem(obj)
            if problem:
                yield bad(Reason.MALFORMED_LINE, problem)
                continue
            problem = unwritable_field({k: obj.get(k) for k in (*STRINGS, "text")})
            if problem:
                yield bad(Reason.BAD_TEXT, problem)
                continue
            text, translation, target = _texts(obj)
            offset, duration = number(obj.get("offset")), number(obj.get("duration"))
            path = obj["audio_filepath"]
            utt_id = obj.get("id") or path_id(
                _relative_to(path, root), offset, duration if offset is not None else None
            )
            own = obj.get("lang") or obj.get("source_lang")  # Canary manifests: source_lang
            short, code = lang_codes(own) if own else (config.lang, None)  # --lang: only if none
            problem = lang_problem(short)
            if problem:
                yield bad(Reason.MALFORMED_LINE, problem, utt_id)
                continue
            if not config.wants_lang(short, code):
                continue
            if not isinstance(text, str):
                yield bad(Reason.BAD_TEXT, "missing or non-string text (or asr answer)", utt_id)
                continue
            if offset is None:
                duration = None  # the file's own length; the decoded length decides
            problem = segment_problem(offset, duration)
            if problem:
                yield bad(Reason.BAD_SEGMENT, problem, utt_id)
                continue
            try:
                uri = config.resolve_audio(root, path)
            except storage.PathEscapeError as exc:
                yield bad(Reason.PATH_ESCAPE, str(exc), utt_id)
                continue
            example = AudioExample(
                id=utt_id,
                uri=uri,
                text=text,
                lang=short,
                split=split,
                corpus="nemo",
                source_lang=code,
                speaker=obj.get("speaker"),
                translation=translation,
                tgt_lang=target,
                offset_s=offset,
                duration_s=duration,
            )
            yield example_reject(example, source, lineno) or example


def _relative_to(path: str, root: str) -> str:
    """An absolute path under the manifest's folder (or ``--audio-root``) as a
    relative one, so a clip's id does not depend on where the corpus sits
    (NeMo's own tools write absolute paths); other paths as written."""
    if not (os.path.isabs(path) and storage.is_local(root)):
        return path
    folder = os.path.abspath(storage.local_path(root))
    inside = os.path.commonpath([folder, os.path.abspath(path)]) == folder
    return os.path.relpath(path, folder).replace(os.sep, "/") if inside else path


def _texts(obj: dict) -> tuple[str | None, str | None, str | None]:
    """``(transcript, translation, target language)`` of a line: ``text``, and a
    Canary-style ``answer``, which is the transcript for an ``asr`` task (or
    when ``target_lang`` is the source's) and a translation into
    ``target_lang`` otherwise."""
    text, answer = obj.get("text"), obj.get("answer")
    source, target = obj.get("source_lang") or obj.get("lang"), obj.get("target_lang")
    if not isinstance(answer, str):
        return text, None, None
    task = (obj.get("taskname") or "").lower()
    if task in TRANSCRIBE_TASKS or (target and target == source) or not target:
        return (text if isinstance(text, str) else answer), None, None
    return text, answer, lang_codes(target)[0]


def _structure_problem(obj: dict) -> str | None:
    path = obj.get("audio_filepath")
    if not isinstance(path, str) or not path.strip():
        return "missing, empty or non-string audio_filepath"
    bad = [k for k in STRINGS[1:] if obj.get(k) is not None and not isinstance(obj[k], str)]
    if bad:
        return f"{', '.join(bad)} must be strings"
    if obj.get("id") == "":
        return "empty id"
    try:
        number(obj.get("offset")), number(obj.get("duration"))
    except ValueError as exc:
        return f"offset/duration: {exc}"
    return None
