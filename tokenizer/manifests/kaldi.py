"""Kaldi data dirs: ``wav.scp`` + ``text``, optional ``segments``, ``utt2spk``, ``utt2lang``.

``text`` lines (``UTT transcript words``) are the records. Without
``segments`` an utterance is a whole recording of ``wav.scp`` (same id);
with it, ``UTT REC START END`` names the part of recording REC to decode
(``END`` ``-1``: to its end). ``wav.scp`` maps ``REC path`` (the path policy
of every format: relative paths resolve against ``--audio-root``, default
the data dir) or ``REC command args |``, a shell pipe producing the audio,
run only with ``--allow-commands`` (else a ``shell_command`` reject).
``utt2spk`` gives speakers, ``utt2lang`` languages (else ``--lang``, which a
data dir without ``utt2lang`` needs); the split comes from ``--split``
(default ``train``). The lookup files (``wav.scp``, ``segments``,
``utt2spk``, ``utt2lang``) are held in memory (about 150 bytes per line);
``text`` streams. A lookup line that cannot be parsed makes the utterances
needing it rejects that name the line.
"""

from __future__ import annotations

from collections.abc import Iterator

from datastore import storage
from datastore.records import COMMAND, FILE, AudioExample, Reason
from tokenizer.manifests import FOLDER, ManifestConfig, register_reader
from tokenizer.manifests.fields import lang_codes, lang_problem
from tokenizer.manifests.lines import example_reject, iter_lines, line_reject, raw_line_problem

REQUIRED = ("wav.scp", "text")


@register_reader("kaldi")
class KaldiReader:
    INPUT = FOLDER
    HINT = "kaldi expects a data dir holding wav.scp and text"

    @staticmethod
    def sources(config: ManifestConfig) -> list[str]:
        for name in REQUIRED:
            if not storage.exists(storage.join(config.input, name)):
                raise ValueError(f"kaldi data dir {config.input}: no {name}")
        if not config.lang and not storage.exists(storage.join(config.input, "utt2lang")):
            raise ValueError("kaldi data dirs name no language: give --lang (or add utt2lang)")
        return [config.input]

    @staticmethod
    def read(config: ManifestConfig, source: str) -> Iterator[AudioExample]:
        split = config.default_split
        if not config.wants_split(split):
            return
        wavs = _table(storage.join(source, "wav.scp"), config, 1)
        segments = _table(storage.join(source, "segments"), config, 3)
        speakers = _table(storage.join(source, "utt2spk"), config, 1)
        langs = _table(storage.join(source, "utt2lang"), config, 1)
        text = storage.join(source, "text")
        root = config.audio_root or source
        for lineno, raw in iter_lines(text, config.max_line_bytes):
            line, reject = raw_line_problem(text, lineno, raw, config.max_line_bytes)
            if reject:
                yield reject
                continue
            if not line.strip():
                continue
            utt, transcript = (*line.split(None, 1), "")[:2]
            short, code = _language(langs.get(utt), config)
            problem = lang_problem(short)
            if problem:
                yield line_reject(text, lineno, Reason.MALFORMED_LINE, problem, id=utt)
                continue
            if not config.wants_lang(short, code):
                continue
            try:
                rec, offset, duration = _span(utt, segments)
                kind, uri = _audio(config, root, rec, wavs)
            except _Refused as exc:
                yield line_reject(text, lineno, exc.reason, exc.detail, id=utt)
                continue
            speaker = speakers.get(utt)
            example = AudioExample(
                id=utt,
                uri=uri,
                text=transcript.strip(),
                lang=short,
                split=split,
                corpus="kaldi",
                source_lang=code,
                speaker=speaker[0] if isinstance(speaker, tuple) else None,
                audio_kind=kind,
                offset_s=offset,
                duration_s=duration,
            )
            yield example_reject(example, text, lineno) or example


class _Refused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _table(uri: str, config: ManifestConfig, n_values: int) -> dict[str, tuple | str]:
    """``key -> values`` of a Kaldi table file (absent: empty). ``n_values == 1``
    keeps the whole rest of the line; a line with fewer fields maps its key to
    ``"file:line: why"``; a later line for the same key wins, as in Kaldi."""
    out: dict[str, tuple | str] = {}
    if not storage.exists(uri):
        return out
    for lineno, raw in iter_lines(uri, config.max_line_bytes):
        line, reject = raw_line_problem(uri, lineno, raw, config.max_line_bytes)
        if reject or not line.strip():
            continue
        key, rest = (*line.split(None, 1), "")[:2]
        values = (rest.strip(),) if n_values == 1 else tuple(rest.split())
        if not values[0] or len(values) != n_values:
            out[key] = f"{uri}:{lineno}: expected {n_values + 1} fields"
        else:
            out[key] = values
    return out


def _language(entry, config: ManifestConfig) -> tuple[str | None, str | None]:
    if isinstance(entry, tuple):
        return lang_codes(entry[0])
    return config.lang, None


def _span(utt: str, segments: dict) -> tuple[str, float | None, float | None]:
    """``(recording id, offset, duration)``: the whole recording ``utt`` without segments."""
    if not segments:
        return utt, None, None
    entry = segments.get(utt)
    if entry is None:
        raise _Refused(Reason.MALFORMED_LINE, f"utterance {utt!r} has no line in segments")
    if isinstance(entry, str):
        raise _Refused(Reason.MALFORMED_LINE, entry)
    rec, start, end = entry
    try:
        offset, stop = float(start), float(end)
    except ValueError:
        raise _Refused(
            Reason.MALFORMED_LINE, f"segments: {start!r} {end!r} are not times"
        ) from None
    if not (0 <= offset < float("inf")) or (stop != -1 and not offset < stop < float("inf")):
        raise _Refused(Reason.BAD_SEGMENT, f"segments: start {start}, end {end}")
    return rec, offset, None if stop == -1 else stop - offset


def _audio(config: ManifestConfig, root: str, rec: str, wavs: dict) -> tuple[str, str]:
    entry = wavs.get(rec)
    if entry is None:
        raise _Refused(Reason.MISSING_FILE, f"recording {rec!r} is not in wav.scp")
    if isinstance(entry, str):
        raise _Refused(Reason.MALFORMED_LINE, entry)
    value = entry[0]
    if value.endswith("|"):
        if not config.allow_commands:
            detail = f"wav.scp runs a shell command for {rec!r} ({value[:200]!r}); "
            raise _Refused(Reason.SHELL_COMMAND, detail + "pass --allow-commands to run it")
        return COMMAND, value[:-1].strip()
    try:
        return FILE, config.resolve_audio(root, value)
    except storage.PathEscapeError as exc:
        raise _Refused(Reason.PATH_ESCAPE, str(exc)) from None
