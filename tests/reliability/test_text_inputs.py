"""Text that breaks jobs, and selections jobs ignored, through the real CLI.

Every manifest of the text catalogue opens with a UTF-8 byte-order mark, holds
invisible transcripts (zero-width, format and space characters only), legitimate
zero-width joiners between letters, rows of other languages and splits, and (JSONL)
lone surrogates in every string field. The tokenize job selects ``--langs fr
--splits test``: each layout must accept exactly the good rows (first row
included, FLEURS sentence ids without the BOM), reject each bad one as ``bad_text``
at read time, and not count the rows outside the selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corpora.bitext import BitextConfig, BitextPair, filter_line, read_wikimatrix
from datastore.records import AudioExample, Reason, Reject
from kmeans import Codebook
from tests.reliability.catalogue import (
    BAD_SCORES,
    BOM,
    INVISIBLE_TEXTS,
    SURROGATE_FIELDS,
    TEXT_LANG,
    TEXT_SPLIT,
    ZWJ_TEXTS,
    build_bitext_catalogue,
    build_bitext_text_catalogue,
    build_text_catalogue,
)
from tests.reliability.helpers import (
    assert_index_reconciles,
    assert_no_traceback,
    assert_rejects_match,
    read_index,
    read_rows,
    speechtok,
)
from tokenizer.manifests import ManifestConfig, read_manifest

K = 8


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return build_text_catalogue(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def codebook(tmp_path_factory):
    """A k=8 codebook for the mfcc encoder (39 dims): the job, not the tokens, is under test."""
    x = np.random.default_rng(0).standard_normal((K, 39)).astype(np.float32)
    folder = tmp_path_factory.mktemp("cb") / "cb"
    Codebook(x).with_metadata(encoder="mfcc", layer=0, mode=None, frame_rate=50.0).save(str(folder))
    return folder


def test_text_catalogue_covers_every_case(catalogue):
    for name, layout in catalogue.items():
        cases = {e.case for e in layout.rejected}
        assert cases >= set(INVISIBLE_TEXTS), name
        assert {t for t, _, _ in layout.accepted.values()} >= set(ZWJ_TEXTS.values()), name
        assert layout.left_out >= 2, name
        first = layout.manifest if name != "fleurs" else f"{layout.manifest}/fr_fr/test.tsv"
        assert Path(first).read_text(encoding="utf-8")[0] == BOM, name
    jsonl = {e.case for e in catalogue["jsonl"].rejected}
    assert jsonl >= {f"surrogate_{f}" for f in SURROGATE_FIELDS}


@pytest.mark.parametrize("name", ["jsonl", "fleurs", "covost"])
def test_tokenize_text_cases(catalogue, codebook, tmp_path, name):
    layout = catalogue[name]
    out = tmp_path / "out"
    proc = speechtok(
        "tokenize", *layout.cli_args(), "--langs", TEXT_LANG, "--splits", TEXT_SPLIT,
        "--encoder", "mfcc", "--codebook", codebook, "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_traceback(proc)
    # Rows outside --langs/--splits are not input: counts cover the selection only.
    assert_index_reconciles(out, layout.n_records, len(layout.accepted), layout.rejected)
    rejects = read_rows(out, "rejects")
    assert_rejects_match(rejects, layout.rejected)
    assert {r["stage"] for r in rejects} == {"read"}
    rows = {r["id"]: r for r in read_rows(out, "tokens")}
    assert set(rows) == set(layout.accepted)
    for utt_id, (text, sentence_id, speaker) in layout.accepted.items():
        row = rows[utt_id]
        assert (row["text"], row["sentence_id"], row["speaker"]) == (text, sentence_id, speaker)
        assert (row["lang"], row["split"]) == (TEXT_LANG, TEXT_SPLIT)
        assert BOM not in row["id"] + (row["sentence_id"] or "")


def _read(layout, **kw) -> tuple[dict[str, AudioExample], dict[str, Reject]]:
    """Examples by id and rejects by source line, straight from the reader."""
    config = ManifestConfig(
        format=layout.format, input=layout.manifest, audio_root=layout.audio_root, **kw
    )
    items = list(read_manifest(config))
    examples = {i.id: i for i in items if isinstance(i, AudioExample)}
    rejects = {i.source: i for i in items if isinstance(i, Reject)}
    assert len(examples) + len(rejects) == len(items)
    return examples, rejects


@pytest.mark.parametrize("name", ["jsonl", "fleurs", "covost"])
def test_bom_is_stripped(catalogue, name):
    """Each file opens with a BOM: the first record reads as if it had none."""
    layout = catalogue[name]
    examples, _ = _read(layout, langs=(TEXT_LANG,), splits=(TEXT_SPLIT,))
    first = next(i for i in layout.accepted if i.endswith("bom_first"))
    text, sentence_id, speaker = layout.accepted[first]
    got = examples[first]
    assert (got.text, got.sentence_id, got.speaker) == (text, sentence_id, speaker)
    assert all(BOM not in (e.id + (e.sentence_id or "")) for e in examples.values())


@pytest.mark.parametrize("name", ["jsonl", "fleurs", "covost"])
def test_invisible_text_is_bad_text(catalogue, name):
    """Only zero-width/format/space characters: ``bad_text``; joiners between letters: fine."""
    layout = catalogue[name]
    examples, rejects = _read(layout, langs=(TEXT_LANG,), splits=(TEXT_SPLIT,))
    for exp in layout.rejected:
        if exp.case in INVISIBLE_TEXTS:
            got = rejects[exp.source]
            assert (got.reason, got.detail) == (
                Reason.BAD_TEXT,
                "no visible character in transcript",
            )
    assert {e.text for e in examples.values()} >= set(ZWJ_TEXTS.values())


def test_unwritable_text_is_bad_text_at_read(catalogue):
    """A lone surrogate in any string field: a ``bad_text`` reject naming the field,
    itself writable as UTF-8 (its id falls back to the line when the id is bad)."""
    layout = catalogue["jsonl"]
    _, rejects = _read(layout, langs=(TEXT_LANG,), splits=(TEXT_SPLIT,))
    for exp in layout.rejected:
        if exp.case.startswith("surrogate_"):
            got = rejects[exp.source]
            field_name = exp.case.removeprefix("surrogate_")
            assert got.reason == Reason.BAD_TEXT
            assert got.detail.startswith(f"{field_name} cannot be written as UTF-8: U+D800")
            for value in got.as_row().values():
                value.encode("utf-8")
            expected_id = exp.source if field_name == "id" else f"surrogate_{field_name}"
            assert got.id == expected_id


def _selected(layout, **kw) -> list[str]:
    config = ManifestConfig(
        format=layout.format, input=layout.manifest, audio_root=layout.audio_root, **kw
    )
    return sorted(i.id for i in read_manifest(config) if isinstance(i, AudioExample))


@pytest.mark.parametrize("name", ["jsonl", "fleurs", "covost"])
def test_langs_accept_short_and_corpus_codes(catalogue, name):
    """``fr``, ``fr_fr`` (FLEURS) and ``fr`` (Common Voice) name the same language
    in every reader; ``de`` selects none of the French rows."""
    layout = catalogue[name]
    want = sorted(layout.accepted)
    for langs in (("fr",), ("fr_fr",), ("cmn_hans_cn", "FR")):
        assert _selected(layout, langs=langs, splits=("test",)) == want, langs
    assert not set(_selected(layout, langs=("de",))) & set(want)
    assert not set(_selected(layout, splits=("train", "dev"))) & set(want)


def test_jsonl_lang_and_split_selection_counts(catalogue):
    """JSONL lines of another language or split are skipped, not rejected."""
    layout = catalogue["jsonl"]
    config = ManifestConfig(format="jsonl", input=layout.manifest, langs=("de",))
    items = list(read_manifest(config))
    assert [(type(i).__name__, i.id) for i in items] == [
        ("AudioExample", "de_good"),
        ("Reject", "de_invisible"),
    ]
    assert items[1].reason == Reason.BAD_TEXT
    config = ManifestConfig(format="jsonl", input=layout.manifest, splits=("train",))
    assert [i.id for i in read_manifest(config)] == ["train_good"]


@pytest.mark.parametrize("score", BAD_SCORES)
def test_bitext_score_must_be_a_finite_decimal(score):
    cfg = BitextConfig(min_score=1.04)
    got = filter_line("en", "fr", [score, "The house.", "La maison."], "f:1", cfg)
    assert isinstance(got, tuple) and got[0] == Reason.MALFORMED_LINE, got
    for fine in ("1.2", "2.", "+1.25", "1.5e0", "15E-1"):
        assert not isinstance(
            filter_line("en", "fr", [fine, "The house.", "La maison."], "f:1", cfg), tuple
        )


def test_bitext_bom_is_stripped(tmp_path):
    cat = build_bitext_text_catalogue(tmp_path / "wm")
    cfg = BitextConfig(min_score=1.04)
    for path in sorted(Path(cat.glob).parent.glob("WikiMatrix.*")):
        first = next(iter(read_wikimatrix(str(path), cfg)))
        assert isinstance(first, BitextPair) and first.source.endswith(":1"), first


def test_bitext_text_cases(tmp_path):
    cat = build_bitext_text_catalogue(tmp_path / "wm")
    out = tmp_path / "out"
    proc = speechtok("bitext", "--input", cat.glob, "--min-score", "1.04", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_traceback(proc)
    assert_index_reconciles(out, cat.n_records, len(cat.accepted), cat.rejected)
    assert_rejects_match(read_rows(out, "rejects"), cat.rejected)
    rows = read_rows(out, "bitext")
    assert {(r["src_lang"], r["tgt_lang"], r["src_text"]) for r in rows} == cat.accepted
    assert all(np.isfinite(r["score"]) for r in rows)


def test_bitext_rerun_replaces_earlier_output(tmp_path):
    """A second run into the same --out leaves only its own shards (all listed)."""
    first = build_bitext_catalogue(tmp_path / "a")
    out = tmp_path / "out"
    proc = speechtok("bitext", "--input", first.glob, "--min-score", "1.04", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_index(out)["counts"]["accepted"] == len(first.accepted)
    second = build_bitext_text_catalogue(tmp_path / "b")
    proc = speechtok("bitext", "--input", second.glob, "--min-score", "1.04", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Listed shards == shards on disk, and the counts are the second input's alone.
    assert_index_reconciles(out, second.n_records, len(second.accepted), second.rejected)
    assert_rejects_match(read_rows(out, "rejects"), second.rejected)
    rows = read_rows(out, "bitext")
    assert {(r["src_lang"], r["tgt_lang"], r["src_text"]) for r in rows} == second.accepted
