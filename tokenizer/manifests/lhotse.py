"""lhotse manifests: a CutSet, or a RecordingSet + SupervisionSet pair (JSONL, plain or ``.gz``).

lhotse's JSON schema is read directly (the ``lhotse`` package is not needed
and not a dependency): a CutSet line is a ``MonoCut``/``MultiCut`` object
with ``start`` (seconds into its recording), ``recording`` (``id``,
``sources``: ``[{"type", "channels", "source"}]``, ``sampling_rate``,
``duration``, optional ``transforms``) and ``supervisions`` (``id``,
``start`` relative to the cut, ``duration``, ``channel``, ``text``,
``language``, ``speaker``). A SupervisionSet line is one supervision with
``recording_id`` and ``start`` relative to the recording; its RecordingSet
is the file of the same name with ``supervisions`` replaced by
``recordings`` (lhotse recipes' naming), held in memory as
``id -> recording`` (a few hundred bytes per recording).

One utterance per supervision, decoded as the segment it covers: offset
``cut.start + sup.start`` (pairs: ``sup.start``) for ``sup.duration``; a
multi-channel source gives the supervision's channel. Ids are the
supervision ids; ``language`` may be a name (``English``) or a code (else
``--lang``); lhotse names no split (``--split``, default ``train``).
Sources: ``file`` (path policy as every format: relative to
``--audio-root``, default the manifest's folder), ``url`` (a URI, taken as
written), ``command`` (a shell command: a ``shell_command`` reject unless
``--allow-commands``); ``memory`` sources, MixedCuts and audio transforms
other than ``Resample`` are refused as ``malformed_line``.

lhotse Shar (``CutSet.to_shar``): ``--input`` a Shar folder, whose
``cuts.NNNNNN.jsonl.gz`` shards are read in order; a cut's ``shar`` source is
the member ``CUT_ID.EXT`` of ``recording.NNNNNN.tar`` beside it (the cut's own
audio: lhotse writes the cut with ``start`` 0), read in one pass per archive
as every tar member is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from datastore import storage
from datastore.records import COMMAND, FILE, TAR, AudioExample, Reason
from tokenizer.containers import ANY_AUDIO, tar_ref
from tokenizer.manifests import FILE_OR_FOLDER, ManifestConfig, register_reader
from tokenizer.manifests.fields import json_objects, lang_codes, lang_problem, number
from tokenizer.manifests.lines import (
    LineSpan,
    example_reject,
    line_reject,
    unwritable,
    unwritable_field,
)

CUT_TYPES = ("MonoCut", "MultiCut")
PAIR_MARK = "supervisions"
SHAR_CUTS = re.compile(r"^cuts\.(?P<shard>\d+)\.jsonl(\.gz)?$")


class Refused(Exception):
    """A record that cannot become an utterance: ``reason`` and a detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def recordings_file(supervisions: str) -> str:
    """The RecordingSet beside a SupervisionSet (``x_supervisions_y`` -> ``x_recordings_y``)."""
    folder, name = storage.dirname(supervisions), storage.basename(supervisions)
    head, _, tail = name.rpartition(PAIR_MARK)
    return storage.join(folder, f"{head}recordings{tail}")


@register_reader("lhotse")
class LhotseReader:
    INPUT = FILE_OR_FOLDER
    HINT = "lhotse expects a CutSet or SupervisionSet JSONL(.gz), or a Shar folder"

    @staticmethod
    def sources(config: ManifestConfig) -> list[str]:
        if storage.is_local(config.input) and os.path.isdir(storage.local_path(config.input)):
            shards = [f for f in storage.glob(storage.join(config.input, "cuts.*.jsonl*"))
                      if SHAR_CUTS.match(storage.basename(f))]  # fmt: skip
            if not shards:
                raise ValueError(f"lhotse: {config.input} is a folder without Shar cuts.*.jsonl.gz")
            return sorted(shards)
        if PAIR_MARK in storage.basename(config.input):
            recordings = recordings_file(config.input)
            if not storage.exists(recordings):
                raise ValueError(f"lhotse SupervisionSet {config.input}: no {recordings} beside it")
        return [config.input]

    @staticmethod
    def splittable(config: ManifestConfig, source: str) -> bool:
        """A plain CutSet file (a SupervisionSet loads its RecordingSet per part)."""
        return not source.endswith(".gz") and PAIR_MARK not in storage.basename(source)

    @staticmethod
    def read(
        config: ManifestConfig, source: str, span: LineSpan | None = None
    ) -> Iterator[AudioExample]:
        if not config.wants_split(config.default_split):
            return
        recordings, archive = None, shar_archive(source)
        if PAIR_MARK in storage.basename(source):
            recordings = _load_recordings(recordings_file(source), config.max_line_bytes)
        for lineno, obj, reject in json_objects(source, config.max_line_bytes, span):
            if reject:
                yield reject
            if obj is None:
                continue
            try:
                pairs = _pair(obj, recordings) if recordings is not None else _cut(obj, archive)
                items = [
                    item
                    for sup, recording, offset in pairs
                    for item in _utterance(config, source, lineno, sup, recording, offset)
                ]
            except Refused as exc:
                items = [line_reject(source, lineno, exc.reason, exc.detail, id=_id(obj))]
            except (TypeError, AttributeError, ValueError) as exc:  # a value of another shape
                detail = f"not lhotse's schema: {type(exc).__name__}: {exc}"[:500]
                items = [line_reject(source, lineno, Reason.MALFORMED_LINE, detail, id=_id(obj))]
            yield from items


def _id(obj: dict) -> str | None:
    value = obj.get("id")
    return value if isinstance(value, str) and value and not unwritable(value) else None


def _load_recordings(uri: str, max_line_bytes: int) -> dict[str | None, dict | str]:
    """``id -> recording object``; a bad line with a readable id maps to why it
    is bad, and a corrupt gzip stream to ``None -> why`` (the recordings it hid
    are then unknown for that reason)."""
    out: dict[str | None, dict | str] = {}
    for lineno, obj, reject in json_objects(uri, max_line_bytes):
        if reject is not None and reject.reason == Reason.BAD_GZIP:
            out[None] = f"{reject.source}: {reject.detail}"
        if obj is None:
            continue
        rec_id = obj.get("id")
        if isinstance(rec_id, str):
            problem = None if isinstance(obj.get("sources"), list) else "no sources list"
            out[rec_id] = f"{uri}:{lineno}: {problem}" if problem else obj
    return out


def shar_archive(cuts: str) -> str | None:
    """The ``recording`` tar of a Shar cuts shard (``cuts.000003.jsonl.gz`` ->
    ``recording.000003.tar``), None for other files."""
    found = SHAR_CUTS.match(storage.basename(cuts))
    if not found:
        return None
    return storage.join(storage.dirname(cuts), f"recording.{found['shard']}.tar")


def _cut(obj: dict, archive: str | None = None):
    kind = obj.get("type", "MonoCut")
    if kind not in CUT_TYPES:
        raise Refused(Reason.MALFORMED_LINE, f"cut type {kind!r} is not supported ({CUT_TYPES})")
    recording = obj.get("recording")
    if not isinstance(recording, dict):
        raise Refused(Reason.MALFORMED_LINE, "cut without a recording")
    try:
        start = number(obj.get("start")) or 0.0
    except ValueError as exc:
        raise Refused(Reason.MALFORMED_LINE, f"cut start: {exc}") from None
    sups = obj.get("supervisions")
    if not isinstance(sups, list) or not all(isinstance(s, dict) for s in sups):
        raise Refused(Reason.MALFORMED_LINE, "supervisions must be a list of objects")
    if not sups:
        raise Refused(Reason.BAD_TEXT, "cut without a supervision: no transcript")
    channel = obj.get("channel")
    if archive is not None:  # Shar: the cut's audio is a member of the shard's archive
        recording = {**recording, "_shar": (archive, _id(obj))}
    return [({"channel": channel, **sup}, recording, start) for sup in sups]


def _pair(sup: dict, recordings: dict):
    rec_id = sup.get("recording_id")
    if not isinstance(rec_id, str):
        raise Refused(Reason.MALFORMED_LINE, "supervision without a recording_id")
    recording = recordings.get(rec_id)
    if recording is None:
        detail = f"recording {rec_id!r} is not in the RecordingSet"
        if None in recordings:
            detail += f" (which is corrupt: {recordings[None]})"
        raise Refused(Reason.MISSING_FILE, detail)
    if isinstance(recording, str):
        raise Refused(Reason.MALFORMED_LINE, f"recording {rec_id!r}: {recording}")
    return [(sup, recording, 0.0)]


def _utterance(config, source, lineno, sup, recording, cut_start):
    """The example (or reject) of one supervision."""
    sup_id = sup.get("id")
    if not isinstance(sup_id, str) or not sup_id:
        yield line_reject(source, lineno, Reason.MALFORMED_LINE, "supervision without an id")
        return
    fields = {k: sup.get(k) for k in ("id", "text", "language", "speaker")}
    problem = unwritable_field(fields)
    if problem:
        yield line_reject(source, lineno, Reason.BAD_TEXT, problem)
        return
    try:
        short, code = _language(sup, config)
        if not config.wants_lang(short, code):
            return
        offset, duration, channel = _span(sup, recording, cut_start)
        kind, uri, file_channel = _audio(config, source, recording, channel)
    except Refused as exc:
        yield line_reject(source, lineno, exc.reason, exc.detail, id=sup_id)
        return
    text = sup.get("text")
    example = AudioExample(
        id=sup_id,
        uri=uri,
        text=text if isinstance(text, str) else "",
        lang=short,
        split=config.default_split,
        corpus="lhotse",
        source_lang=code,
        speaker=sup.get("speaker") if isinstance(sup.get("speaker"), str) else None,
        audio_kind=kind,
        offset_s=offset,
        duration_s=duration,
        channel=file_channel,
    )
    yield example_reject(example, source, lineno) or example


def _language(sup: dict, config: ManifestConfig) -> tuple[str, str | None]:
    value = sup.get("language")
    short, code = lang_codes(value) if isinstance(value, str) and value else (config.lang, None)
    problem = lang_problem(short)
    if problem:
        raise Refused(Reason.MALFORMED_LINE, problem)
    return short, code


def _span(sup: dict, recording: dict, cut_start: float):
    """``(offset, duration, channel)`` of a supervision in its recording."""
    try:
        start, duration = number(sup.get("start")), number(sup.get("duration"))
        rec_duration = number(recording.get("duration"))
    except ValueError as exc:
        raise Refused(Reason.MALFORMED_LINE, f"start/duration: {exc}") from None
    if start is None or duration is None:
        raise Refused(Reason.MALFORMED_LINE, "supervision without start and duration")
    offset = cut_start + start
    if offset < 0 or duration <= 0:
        raise Refused(Reason.BAD_SEGMENT, f"segment at {offset} s for {duration} s")
    if rec_duration is not None and offset + duration > rec_duration + 0.05:
        detail = f"segment ends at {offset + duration:.3f} s, the recording lasts {rec_duration} s"
        raise Refused(Reason.BAD_SEGMENT, detail)
    channel = sup.get("channel")
    if isinstance(channel, list):
        channel = channel[0] if len(channel) == 1 else None
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)):
        raise Refused(Reason.MALFORMED_LINE, f"channel {channel!r} is not an integer")
    return offset, duration, channel


def _audio(config: ManifestConfig, manifest: str, recording: dict, channel: int | None):
    """``(audio_kind, uri, channel within the file)`` of a recording's channel."""
    for transform in recording.get("transforms") or []:
        name = transform.get("name") if isinstance(transform, dict) else transform
        if name != "Resample":  # resampling is what decoding does anyway
            raise Refused(Reason.MALFORMED_LINE, f"recording transform {name!r} is not applied")
    sources = [s for s in recording.get("sources") or [] if isinstance(s, dict)]
    chosen = [s for s in sources if channel is None or channel in (s.get("channels") or [])]
    if not chosen:
        raise Refused(Reason.MALFORMED_LINE, f"no audio source holds channel {channel}")
    src = chosen[0] if channel is not None or len(sources) == 1 else None
    if src is None:
        raise Refused(Reason.MALFORMED_LINE, "several sources and no channel to choose one")
    kind, where, channels = src.get("type"), src.get("source"), src.get("channels") or []
    in_file = channels.index(channel) if channel is not None and len(channels) > 1 else None
    if kind == "shar":
        archive, cut_id = recording.get("_shar") or (None, None)
        if archive is None or not cut_id:
            raise Refused(Reason.MALFORMED_LINE, "a shar source outside a Shar folder's cuts")
        return TAR, tar_ref(archive, f"{cut_id}.{ANY_AUDIO}"), in_file
    if not isinstance(where, str) or not where:
        raise Refused(Reason.MALFORMED_LINE, f"{kind} source without a source string")
    if kind == "command":
        if not config.allow_commands:
            detail = f"recording audio comes from a shell command ({where[:200]!r}); "
            raise Refused(Reason.SHELL_COMMAND, detail + "pass --allow-commands to run it")
        return COMMAND, where, in_file
    if kind not in ("file", "url"):
        raise Refused(Reason.MALFORMED_LINE, f"audio source type {kind!r} is not supported")
    root = config.audio_root or storage.dirname(manifest)
    try:
        return FILE, config.resolve_audio(root, where), in_file
    except storage.PathEscapeError as exc:
        raise Refused(Reason.PATH_ESCAPE, str(exc)) from None
