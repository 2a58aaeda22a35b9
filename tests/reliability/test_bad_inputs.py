"""Every job over the bad-input catalogue, run as a user runs it (``speechtok`` in
a subprocess): exit status 0, every good record in the shards, every bad one in
the rejects with its exact reason, counts reconciled, no traceback printed."""

from __future__ import annotations

import math

import pytest

from kmeans import Codebook
from tests.reliability.catalogue import (
    COVOST_TGT,
    build_bitext_catalogue,
    build_speech_catalogue,
)
from tests.reliability.helpers import (
    assert_index_reconciles,
    assert_no_traceback,
    assert_rejects_match,
    read_rows,
    speechtok,
)

K = 8
ISSUE_KINDS = {  # the bad inputs issue 10 names, as catalogue case names
    "zero_bytes",
    "truncated_wav",
    "truncated_flac",
    "truncated_mp3",
    "random_bytes",
    "nan_float",
    "inf_double",
    "ten_minutes",
    "silent",
    "missing",
    "too_few_columns",
    "too_many_columns",
    "non_utf8",
    "empty_transcript",
    "duplicate_id",
    "dotdot_escape",
    "symlink_escape",
    "huge_line",
}
ISSUE_21_KINDS = {"fifo", "dotdot_symlink", "mp3_long_no_xing"}  # special files, paths, MP3
ISSUE_21_ACCEPTED = {"mp3_vbr_no_xing", "mp3_id3_no_xing"}  # MP3 without a Xing header
LONG_FILES = {"ten_minutes": 20, "mp3_long_no_xing": 2}  # 30 s windows with split_long


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return build_speech_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="module")
def fitted(catalogue, tmp_path_factory):
    """fit-codebook over the JSONL layout: ``(process, codebook dir)``."""
    out = tmp_path_factory.mktemp("fit") / "cb"
    layout = catalogue.layouts["jsonl"]
    proc = speechtok(
        "fit-codebook", *layout.cli_args(), "--encoder", "mfcc", "--k", K,
        "--sample-frames", 2000, "--out", out, "--splits", "test",  # the catalogue's split
    )  # fmt: skip
    return proc, out


def test_catalogue_covers_the_issue(catalogue):
    assert len(catalogue.kinds_of_bad_input) >= 15
    for name, layout in catalogue.layouts.items():
        kinds = {e.case for e in layout.rejected}
        assert kinds >= ISSUE_KINDS | ISSUE_21_KINDS, (name, ISSUE_KINDS - kinds)
        converted = {c.stem for c in layout.accepted.values()}
        assert {"stereo_48k", "pcm_u8", "opus", "mp3", *ISSUE_21_ACCEPTED} <= converted


def test_fit_codebook_routes_every_bad_input(catalogue, fitted):
    proc, out = fitted
    layout = catalogue.layouts["jsonl"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_traceback(proc)
    assert_index_reconciles(out, layout.n_records, len(layout.accepted), layout.rejected)
    assert_rejects_match(read_rows(out, "rejects"), layout.rejected)
    cb = Codebook.load(str(out))
    # Exactly the accepted clips fed the frame sample.
    assert cb.k == K and cb.metadata["seen_utterances"] == {"fr": len(layout.accepted)}


@pytest.mark.parametrize("name", ["jsonl", "fleurs", "covost"])
def test_tokenize_routes_every_bad_input(catalogue, fitted, tmp_path, name):
    layout = catalogue.layouts[name]
    out = tmp_path / "out"
    proc = speechtok(
        "tokenize", *layout.cli_args(), "--encoder", "mfcc", "--codebook", fitted[1], "--out", out
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_traceback(proc)
    assert_index_reconciles(out, layout.n_records, len(layout.accepted), layout.rejected)
    assert_rejects_match(read_rows(out, "rejects"), layout.rejected)
    rows = {r["id"]: r for r in read_rows(out, "tokens")}
    assert set(rows) == set(layout.accepted)
    for utt_id, case in layout.accepted.items():
        row = rows[utt_id]
        assert row["text"] == case.text and row["lang"] == "fr" and row["corpus"] == name
        # Converted to 16 kHz: the duration survives (codecs pad a few ms).
        assert row["duration_s"] == pytest.approx(case.seconds, abs=0.06)
        assert row["n_frames"] == math.ceil(round(row["duration_s"] * 16000) / 320)
        assert len(row["tokens"]) == row["n_frames"] and min(row["tokens"]) >= 0
        assert max(row["tokens"]) < K
        if name == "covost":
            assert row["translation"] == f"EN: {case.stem}" and row["tgt_lang"] == COVOST_TGT
            assert row["speaker"] == f"spk-{case.stem}"


def test_long_file_is_windowed_when_configured(catalogue, fitted, tmp_path):
    """``split_long``: the 10-minute FLAC and the 34 s MP3 become 30 s windows instead
    of rejects; the MP3s without a Xing header keep their decoded length (a length
    estimated from the header made one ``truncated``)."""
    from pipelines import tokenize as job
    from tokenizer.audio_config import AudioConfig
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    layout = catalogue.layouts["jsonl"]
    out = tmp_path / "out"
    index = job.run(
        job.TokenizeJobConfig(
            manifest=ManifestConfig(
                format="jsonl", input=layout.manifest, confine_audio_to=layout.confine
            ),
            encoder=EncoderConfig(name="mfcc"),
            codebook=str(fitted[1]),
            out=str(out),
            audio=AudioConfig(max_seconds=30.0, split_long=True),
        )
    )
    expected = [e for e in layout.rejected if e.case not in LONG_FILES]
    assert_rejects_match(read_rows(out, "rejects"), expected)
    rows = {r["id"]: r for r in read_rows(out, "tokens")}
    windows = sorted(i for i in rows if i.split("#w")[0] in LONG_FILES)
    for stem, n in LONG_FILES.items():
        assert [w for w in windows if w.startswith(stem)] == [f"{stem}#w{i:03d}" for i in range(n)]
        assert all(
            rows[f"{stem}#w{i:03d}"]["duration_s"] == pytest.approx(30.0) for i in range(n - 1)
        )
    assert rows["mp3_long_no_xing#w001"]["duration_s"] == pytest.approx(4.0, abs=0.1)
    assert set(rows) - set(windows) == set(layout.accepted)
    for stem in ISSUE_21_ACCEPTED:
        assert rows[stem]["duration_s"] == pytest.approx(7.6, rel=0.02)
    # A recording cut into N windows counts as N records: the index still reconciles.
    c = index.counts
    assert c == {
        "input": layout.n_records + len(windows) - len(LONG_FILES),
        "accepted": len(rows),
        "rejected": len(expected),
    }


def test_bitext_routes_every_bad_line(tmp_path):
    cat = build_bitext_catalogue(tmp_path / "wm")
    out = tmp_path / "out"
    proc = speechtok("bitext", "--input", cat.glob, "--min-score", "1.04", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_traceback(proc)
    assert_index_reconciles(out, cat.n_records, len(cat.accepted), cat.rejected)
    assert_rejects_match(read_rows(out, "rejects"), cat.rejected)
    rows = read_rows(out, "bitext")
    assert {(r["src_lang"], r["tgt_lang"], r["src_text"]) for r in rows} == cat.accepted
    assert len(rows) == len(cat.accepted)
