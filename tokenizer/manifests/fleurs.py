"""FLEURS data dirs: ``{lang}/{split}.tsv`` + ``{lang}/audio/{split}/*.wav``.

The audio may also stay in the per-split archives FLEURS is published as,
``{lang}/audio/{split}.tar.gz`` (members ``{split}/NAME.wav``): when the
extracted folder is absent (on ``gs://``, where folders are prefixes: when
the archive exists) the rows name members of the archive, which the speech
jobs read in place in one sequential pass (:mod:`tokenizer.containers`),
never extracted to disk. A row whose member the archive lacks is then a
``missing_file`` reject of the decode stage.

The TSV has no header and 7 tab-separated columns: sentence id, audio file
name, raw transcription, normalised transcription, character-spaced
transcription, number of samples, gender (an 8th trailing column is
tolerated). FLEURS records most sentences several times, so the sentence id
repeats on rows with different file names: those are distinct utterances.
The utterance id is ``{lang}/{file stem}``; ``sentence_id`` keeps the TSV id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from datastore import storage
from datastore.records import FILE, TAR, AudioExample, Reason
from tokenizer.containers import tar_ref
from tokenizer.manifests import FOLDER, ManifestConfig, register_reader
from tokenizer.manifests.lines import example_reject, iter_lines, line_reject, raw_line_problem

SPLITS = ("train", "dev", "test")
MIN_COLUMNS, MAX_COLUMNS = 7, 8


@register_reader("fleurs")
class FleursReader:
    INPUT = FOLDER
    HINT = (
        "fleurs expects the data folder holding {lang}/{split}.tsv, and --langs"
        "/--splits keep only what they name"
    )

    @staticmethod
    def sources(config: ManifestConfig) -> list[str]:
        from tokenizer import languages

        out = []
        for tsv in storage.glob(storage.join(config.input, "*", "*.tsv")):
            code, split = (
                storage.basename(storage.dirname(tsv)),
                storage.basename(tsv)[: -len(".tsv")],
            )
            wanted_split = split in (config.splits or SPLITS)
            if wanted_split and config.wants_lang(code, languages.from_fleurs(code)):
                out.append(tsv)
        return out

    @staticmethod
    def read(config: ManifestConfig, source: str) -> Iterator[AudioExample]:
        from tokenizer import languages

        lang_dir = storage.dirname(source)
        code, split = storage.basename(lang_dir), storage.basename(source)[: -len(".tsv")]
        short = languages.from_fleurs(code)
        audio_dir = storage.join(lang_dir, "audio", split)
        archive = _archive(lang_dir, split, audio_dir, config)
        for lineno, raw in iter_lines(source, config.max_line_bytes):
            line, reject = raw_line_problem(source, lineno, raw, config.max_line_bytes)
            if reject:
                yield reject
                continue
            if not line.strip():
                continue
            cols = line.split("\t")
            if not MIN_COLUMNS <= len(cols) <= MAX_COLUMNS:
                yield line_reject(
                    source, lineno, Reason.MALFORMED_LINE, f"{len(cols)} columns, expected 7"
                )
                continue
            sentence_id, file_name, raw_text, norm_text = (c.strip() for c in cols[:4])
            if not file_name or not sentence_id:
                yield line_reject(source, lineno, Reason.MALFORMED_LINE, "empty id or file name")
                continue
            stem = file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            utt_id = f"{code}/{stem}"
            try:
                uri, kind = _audio_uri(config, audio_dir, archive, file_name)
            except storage.PathEscapeError as exc:
                yield line_reject(source, lineno, Reason.PATH_ESCAPE, str(exc), id=utt_id)
                continue
            example = AudioExample(
                audio_kind=kind,
                id=utt_id,
                uri=uri,
                text=raw_text or norm_text,
                lang=short,
                split=split,
                corpus="fleurs",
                source_lang=code,
                sentence_id=sentence_id,
                speaker=None,
            )
            yield example_reject(example, source, lineno) or example


def _archive(lang_dir: str, split: str, audio_dir: str, config: ManifestConfig):
    """The split's published archive when the rows must be read from it, else
    ``None``; an archive outside ``--confine-audio-to`` comes back as the
    :class:`~datastore.storage.PathEscapeError` every row then gets."""
    archive = storage.join(lang_dir, "audio", f"{split}.tar.gz")
    if storage.is_local(lang_dir):
        wanted = not os.path.isdir(storage.local_path(audio_dir)) and storage.exists(archive)
    else:
        wanted = storage.exists(archive)
    if not wanted:
        return None
    try:
        return config.resolve_audio(lang_dir, f"audio/{split}.tar.gz")
    except storage.PathEscapeError as exc:
        return exc


def _audio_uri(config: ManifestConfig, audio_dir: str, archive, file_name: str):
    """``(uri, audio_kind)`` of a row's audio: a file, or a member of the archive.
    Absolute paths and URIs name files in either case (the path policy)."""
    if (
        archive is None
        or not storage.is_local(file_name)
        or os.path.isabs(storage.local_path(file_name))
    ):
        return config.resolve_audio(audio_dir, file_name), FILE
    if isinstance(archive, storage.PathEscapeError):
        raise archive
    member = "/".join(storage.relative_parts(file_name, audio_dir))
    return tar_ref(archive, member), TAR
