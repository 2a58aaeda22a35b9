"""FLEURS data dirs: ``{lang}/{split}.tsv`` + ``{lang}/audio/{split}/*.wav``.

The TSV has no header and 7 tab-separated columns: sentence id, audio file
name, raw transcription, normalised transcription, character-spaced
transcription, number of samples, gender (an 8th trailing column is
tolerated). FLEURS records most sentences several times, so the sentence id
repeats on rows with different file names: those are distinct utterances.
The utterance id is ``{lang}/{file stem}``; ``sentence_id`` keeps the TSV id.
"""

from __future__ import annotations

from collections.abc import Iterator

from datastore import storage
from datastore.records import AudioExample, Reason
from tokenizer.manifests import ManifestConfig, register_reader
from tokenizer.manifests.lines import example_reject, iter_lines, line_reject, raw_line_problem

SPLITS = ("train", "dev", "test")
MIN_COLUMNS, MAX_COLUMNS = 7, 8


@register_reader("fleurs")
class FleursReader:
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
                uri = storage.resolve_under(audio_dir, file_name)
            except storage.PathEscapeError as exc:
                yield line_reject(source, lineno, Reason.PATH_ESCAPE, str(exc), id=utt_id)
                continue
            example = AudioExample(
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
