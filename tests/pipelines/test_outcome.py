"""Exit status of the Beam jobs (``pipelines.outcome``): 0 when the job produced
output, 1 with one line when it found no input, rejected every input or more
than ``--max-reject-fraction`` of it; the rejects and ``_index.json`` are
written first in every case. Real audio through the real jobs (mfcc)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from datastore.shards import Index
from pipelines import outcome
from pipelines.cli import main

SR = 16000


def write_corpus(folder: Path) -> Path:
    """Three 1 s tones, a missing file and an undecodable one, and JSONL manifests:
    ``good`` (3 tones), ``bad`` (missing + undecodable), ``some`` (3 tones + missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(SR) / SR
    for i in range(3):
        sf.write(folder / f"a{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t)), SR)
    (folder / "junk.wav").write_bytes(b"not audio at all")

    def row(uid, audio):
        return json.dumps(
            {"id": uid, "audio": audio, "text": "bonjour", "lang": "fr", "split": "train"}
        )

    good = [row(f"u{i}", f"a{i}.wav") for i in range(3)]
    bad = [row("x1", "missing.wav"), row("x2", "junk.wav")]
    (folder / "good.jsonl").write_text("\n".join(good) + "\n")
    (folder / "bad.jsonl").write_text("\n".join(bad) + "\n")
    (folder / "some.jsonl").write_text("\n".join([*good, bad[0]]) + "\n")
    (folder / "fleurs" / "fr_fr").mkdir(parents=True)  # a language folder, no {lang}/ below
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def codebook(corpus, tmp_path_factory):
    """A k=4 mfcc codebook fitted by the real job on the three tones (exit 0)."""
    out = tmp_path_factory.mktemp("cb") / "cb"
    argv = ["fit-codebook", "--format", "jsonl", "--input", str(corpus / "good.jsonl")]
    assert main([*argv, "--encoder", "mfcc", "--k", "4", "--out", str(out)]) == 0
    return out


def last_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    return err[-1]


def index_of(out: Path) -> dict:
    return json.loads((out / "_index.json").read_text())


def reject_reasons(out: Path) -> list[str]:
    return sorted(pq.read_table(out / "rejects").column("reason").to_pylist())


def speech_argv(job: str, corpus: Path, manifest: str, out: Path, codebook: Path | None):
    fmt = ["--format", "fleurs"] if manifest == "fleurs/fr_fr" else ["--format", "jsonl"]
    argv = [job, *fmt, "--input", str(corpus / manifest), "--encoder", "mfcc", "--out", str(out)]
    return argv + (["--codebook", str(codebook)] if job == "tokenize" else ["--k", "4"])


# -- the verdict itself ------------------------------------------------------


def test_verdict_success_with_some_rejects():
    counts = {"input": 10, "accepted": 9, "rejected": 1}
    assert outcome.verdict(counts, {"missing_file": 1}) is None
    assert outcome.verdict(counts, {"missing_file": 1}, max_reject_fraction=0.1) is None


def test_verdict_failures_name_the_cause():
    none = outcome.verdict({"input": 0, "accepted": 0, "rejected": 0}, {}, hint="--input x")
    assert none == "no input records found (--input x)"
    reasons = {"too_long": 1, "missing_file": 3, "decode_error": 3}
    every = outcome.verdict({"input": 7, "accepted": 0, "rejected": 7}, reasons, where="o")
    assert every == (
        "every input record was rejected (7 of 7): decode_error 3, missing_file 3, too_long 1; "
        "reject rows in o/rejects/"
    )
    over = outcome.verdict(
        {"input": 10, "accepted": 7, "rejected": 3}, {"silent": 3}, max_reject_fraction=0.25
    )
    assert over.startswith("3 of 10 input records rejected (30.0%), more than ")
    assert "--max-reject-fraction 0.25: silent 3" in over


def test_verdict_lists_at_most_five_reasons():
    reasons = {f"r{i}": 10 - i for i in range(7)}
    line = outcome.verdict({"input": 49, "accepted": 0, "rejected": 49}, reasons)
    assert line.endswith("r0 10, r1 9, r2 8, r3 7, r4 6, +2 more") and "\n" not in line


def test_append_run_with_nothing_new_is_a_success(tmp_path):
    """``--skip-existing`` with every id already there: this run read 0 records."""
    first = {"input": 3, "accepted": 3, "rejected": 0}
    index = Index(
        job="tokenize",
        config={},
        counts=first,
        extra={"runs": [first, {"input": 0, "accepted": 0, "rejected": 0}]},
    )
    args = type("Args", (), {"out": str(tmp_path), "input": "m.jsonl", "format": "jsonl"})()
    outcome.check(index, args)  # no raise
    lone = Index(job="tokenize", config={}, counts={"input": 0, "accepted": 0, "rejected": 0})
    with pytest.raises(outcome.JobFailed, match="no input records found"):
        outcome.check(lone, args)


def test_append_summary_shows_this_run_and_the_folder():
    from pipelines.summary import run_timings, summary_lines

    first = {"input": 18, "accepted": 18, "rejected": 0}
    nothing_new = dict.fromkeys(first, 0)
    index = Index(job="tokenize", config={}, counts=first, extra={"runs": [first, nothing_new]})
    lines = summary_lines("tokenize -> out", index, {}, run_timings(1.0, {}))
    assert lines[1].split() == ["this", "run", "folder", "(2", "runs)"]
    assert [line.split() for line in lines[2:5]] == [
        ["input", "0", "18"],
        ["accepted", "0", "18"],
        ["rejected", "0", "0"],
    ]


# -- through the real jobs ---------------------------------------------------


@pytest.mark.parametrize("job", ["tokenize", "fit-codebook"])
def test_every_input_rejected_exits_1_after_writing_rejects_and_index(
    job, corpus, codebook, tmp_path, capsys
):
    out = tmp_path / "out"
    if job == "fit-codebook":  # an earlier run's codebook must not pass for this run's
        shutil.copytree(codebook, out)
    assert main(speech_argv(job, corpus, "bad.jsonl", out, codebook)) == 1
    line = last_line(capsys)
    assert line == (
        f"speechtok {job}: failed: every input record was rejected (2 of 2): "
        f"decode_error 1, missing_file 1; reject rows in {out}/rejects/"
    )
    assert index_of(out)["counts"] == {"input": 2, "accepted": 0, "rejected": 2}
    assert reject_reasons(out) == ["decode_error", "missing_file"]
    assert not (out / "codebook.json").exists() and not (out / "centroids.npy").exists()


@pytest.mark.parametrize("job", ["tokenize", "fit-codebook"])
def test_no_input_found_exits_1_after_writing_the_index(job, corpus, codebook, tmp_path, capsys):
    """``--format fleurs --input fleurs/fr_fr``: a language folder, zero sources."""
    out = tmp_path / "out"
    assert main(speech_argv(job, corpus, "fleurs/fr_fr", out, codebook)) == 1
    line = last_line(capsys)
    assert line.startswith(f"speechtok {job}: failed: no input records found (--input ")
    assert "fleurs expects the data folder holding {lang}/{split}.tsv" in line
    assert index_of(out)["counts"] == {"input": 0, "accepted": 0, "rejected": 0}


def test_fit_codebook_with_too_few_frames_exits_1(corpus, tmp_path, capsys):
    """Accepted audio but fewer frames than k: rejects/index written, no codebook."""
    out = tmp_path / "cb"
    argv = speech_argv("fit-codebook", corpus, "good.jsonl", out, None)
    assert main([*argv[:-2], "--k", "400"]) == 1  # 3 x 1 s at 50 Hz = 150 frames
    assert last_line(capsys) == (
        "speechtok fit-codebook: failed: no codebook written: 150 sampled frames are fewer "
        "than k=400 (more audio, or a smaller --k)"
    )
    assert index_of(out)["counts"] == {"input": 3, "accepted": 3, "rejected": 0}
    assert not (out / "codebook.json").exists()


@pytest.mark.parametrize("job", ["tokenize", "fit-codebook"])
def test_max_reject_fraction(job, corpus, codebook, tmp_path, capsys):
    """``some.jsonl``: 1 of 4 records rejected (25 %)."""
    argv = speech_argv(job, corpus, "some.jsonl", tmp_path / "a", codebook)
    assert main(argv) == 0  # some rejects: still output
    assert main([*argv, "--max-reject-fraction", "0.25"]) == 0  # not more than 25 %
    assert main([*argv, "--max-reject-fraction", "0.2"]) == 1
    assert last_line(capsys) == (
        f"speechtok {job}: failed: 1 of 4 input records rejected (25.0%), more than "
        f"--max-reject-fraction 0.2: missing_file 1; reject rows in {tmp_path / 'a'}/rejects/"
    )
    assert index_of(tmp_path / "a")["counts"] == {"input": 4, "accepted": 3, "rejected": 1}


def write_gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wb") as f:
        f.write("".join(line + "\n" for line in lines).encode())


def test_bitext_outcomes(tmp_path, capsys):
    wm = tmp_path / "wm"
    wm.mkdir()
    low = ["1.01\tBelow the threshold.\tSous le seuil.", "0.90\tFar below.\tBien en dessous."]
    write_gz(wm / "WikiMatrix.en-fr.tsv.gz", low)
    write_gz(wm / "WikiMatrix.de-en.tsv.gz", [])
    base = ["bitext", "--min-score", "1.04", "--out"]

    empty = tmp_path / "empty"
    assert main([*base, str(empty), "--input", str(wm / "WikiMatrix.de-en.tsv.gz")]) == 1
    assert last_line(capsys).startswith("speechtok bitext: failed: no input records found")
    assert index_of(empty)["counts"] == {"input": 0, "accepted": 0, "rejected": 0}

    rejected = tmp_path / "rejected"
    assert main([*base, str(rejected), "--input", str(wm / "WikiMatrix.en-fr.tsv.gz")]) == 1
    assert last_line(capsys) == (
        "speechtok bitext: failed: every input record was rejected (2 of 2): low_score 2; "
        f"reject rows in {rejected}/rejects/"
    )
    assert reject_reasons(rejected) == ["low_score", "low_score"]

    write_gz(wm / "WikiMatrix.en-fr.tsv.gz", [*low, "1.20\tThe house is red.\tLa maison."])
    mixed = [*base, str(tmp_path / "mixed"), "--input", str(wm / "WikiMatrix.en-fr.tsv.gz")]
    assert main(mixed) == 0
    assert main([*mixed, "--max-reject-fraction", "0.5"]) == 1
    assert "2 of 3 input records rejected (66.7%)" in last_line(capsys)
