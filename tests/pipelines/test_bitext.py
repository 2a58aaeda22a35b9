import gzip
import json
from collections import Counter

import pyarrow.dataset as ds
import pytest

from corpora.bitext import BitextConfig, filter_line, parse_pair, read_wikimatrix
from datastore.records import Reason
from pipelines import bitext as job
from pipelines.cli import main

LINES = [
    "1.20\tThe house is red.\tLa maison est rouge.",
    "1.10\tI like tea.\tJ'aime le thé.",
    "1.10\tI like tea.\tJ'aime le thé.",  # exact duplicate
    "1.09\tGood morning everyone.\tBonjour à tous.",
    "1.08\tSame text here\tsame TEXT here",  # identical sides
    "1.07\tA\tB",  # too short
    "1.06\tShort.\tThis is a much much much longer sentence than the other one.",  # ratio
    "1.05\textra\ttabs\there",  # 4 fields
    "abc\tNot a score.\tPas un score.",  # bad score
    "1.03\tBelow the threshold.\tSous le seuil.",  # low score
    "0.90\tFar below.\tBien en dessous.",  # low score
]


def write_gz(path, lines, raw_tail=b""):
    with gzip.open(path, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode() + raw_tail)


@pytest.fixture
def wikimatrix(tmp_path):
    d = tmp_path / "wm"
    d.mkdir()
    write_gz(d / "WikiMatrix.en-fr.tsv.gz", LINES, raw_tail=b"1.2\tbad \xff bytes\tmauvais\n")
    write_gz(
        d / "WikiMatrix.de-en.tsv.gz", ["1.3\tGuten Tag.\tGood day.", "1.3\tGuten Tag.\tGood day."]
    )
    good = gzip.compress(b"1.5\tEins zwei.\tUn deux.\n" * 50)
    (d / "WikiMatrix.de-fr.tsv.gz").write_bytes(good[: len(good) // 2])  # truncated gzip
    return d


def test_filter_line_reasons():
    cfg = BitextConfig(min_score=1.04)
    reasons = [filter_line("en", "fr", line.split("\t"), "f:1", cfg) for line in LINES]
    got = [r[0] if isinstance(r, tuple) else "ok" for r in reasons]
    assert got == [
        "ok",
        "ok",
        "ok",
        "ok",
        Reason.IDENTICAL_SIDES,
        Reason.LENGTH,
        Reason.LENGTH_RATIO,
        Reason.MALFORMED_LINE,
        Reason.MALFORMED_LINE,
        Reason.LOW_SCORE,
        Reason.LOW_SCORE,
    ]


def test_read_counts_every_line(wikimatrix):
    cfg = BitextConfig(min_score=1.04)
    items = list(read_wikimatrix(str(wikimatrix / "WikiMatrix.en-fr.tsv.gz"), cfg))
    assert len(items) == len(LINES) + 1
    truncated = list(read_wikimatrix(str(wikimatrix / "WikiMatrix.de-fr.tsv.gz"), cfg))
    assert truncated[-1].reason == Reason.BAD_GZIP
    assert parse_pair("gs://b/WikiMatrix.zh-en.tsv.gz") == ("zh", "en")


def test_bitext_job_end_to_end(wikimatrix, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "bitext",
            "--input",
            str(wikimatrix / "*.tsv.gz"),
            "--min-score",
            "1.04",
            "--out",
            str(out),
            "--rows-per-shard",
            "2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "score >= 1.04" in printed and "rejected" in printed
    index = json.loads((out / "_index.json").read_text())
    c = index["counts"]
    assert c["input"] == c["accepted"] + c["rejected"]
    table = ds.dataset(str(out / "bitext"), format="parquet", partitioning="hive").to_table()
    rows = table.to_pylist()
    pairs = {(r["src_lang"], r["tgt_lang"], r["src_text"]) for r in rows}
    assert pairs == {
        ("en", "fr", "The house is red."),
        ("en", "fr", "I like tea."),
        ("en", "fr", "Good morning everyone."),
        ("de", "en", "Guten Tag."),
    }
    assert len(rows) == 4 == c["accepted"]
    # en-fr: every line + the non-UTF-8 one; de-en: 2 lines; de-fr: the gzip breaks
    # inside the first 1 MB read, so no line is read and one bad_gzip reject stands for it.
    assert c["input"] == (len(LINES) + 1) + 2 + 1
    rejects = ds.dataset(str(out / "rejects"), format="parquet").to_table().to_pylist()
    assert len(rejects) == c["rejected"]
    assert Counter(r["reason"] for r in rejects) == Counter(
        {
            Reason.DUPLICATE_PAIR: 2,
            Reason.IDENTICAL_SIDES: 1,
            Reason.LENGTH: 1,
            Reason.LENGTH_RATIO: 1,
            Reason.MALFORMED_LINE: 2,
            Reason.LOW_SCORE: 2,
            Reason.NON_UTF8: 1,
            Reason.BAD_GZIP: 1,
        }
    )
    assert index["rejects_by_reason"][Reason.DUPLICATE_PAIR] == 2
    # Shard files are complete and listed with their sha256.
    assert sum(s["rows"] for s in index["shards"] if s["path"].startswith("bitext/")) == 4


def test_rerun_gives_identical_shards(wikimatrix, tmp_path):
    cfg = job.BitextJobConfig(
        input=str(wikimatrix / "WikiMatrix.en-fr.tsv.gz"),
        out=str(tmp_path / "a"),
        filters=BitextConfig(min_score=1.04),
    )
    a = job.run(cfg)
    b = job.run(job.BitextJobConfig(input=cfg.input, out=str(tmp_path / "b"), filters=cfg.filters))
    assert [(s["path"], s["sha256"]) for s in a.shards] == [
        (s["path"], s["sha256"]) for s in b.shards
    ]


def test_no_matching_file_is_a_usage_error(tmp_path, capsys):
    assert (
        main(
            [
                "bitext",
                "--input",
                str(tmp_path / "*.gz"),
                "--min-score",
                "1.04",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "no WikiMatrix" in capsys.readouterr().err


def test_dedup_keeps_best_across_files_and_folds(tmp_path):
    """Duplicates within and across the files of one language pair: the highest
    score wins wherever it is, ties go to the earliest file then line; every
    other occurrence is one duplicate_pair reject naming the kept line. A tiny
    fold buffer makes the compact table fold many times on the way."""
    from corpora import bitext as bt
    from datastore.shards import WriteConfig

    a, b = tmp_path / "x" / "WikiMatrix.en-fr.tsv.gz", tmp_path / "y" / "WikiMatrix.en-fr.tsv.gz"
    a.parent.mkdir()
    b.parent.mkdir()
    write_gz(
        a, ["1.10\tOne cat.\tUn chat.", "1.30\tTwo dogs.\tDeux chiens.", "1.10\tOne cat.\tUn chat."]
    )
    write_gz(b, ["1.50\tOne cat.\tUn chat.", "1.30\tTwo dogs.\tDeux chiens.", "1.20\tRed.\tRouge."])
    files = [str(a), str(b)]
    summary = bt.filter_language_pair(
        files, group=3, config=BitextConfig(min_score=1.04), out_dir=str(tmp_path / "out"),
        write=WriteConfig(rows_per_shard=1), fold_every=2,
    )  # fmt: skip
    assert {k: summary[k] for k in ("input", "accepted", "rejected")} == {
        "input": 6,
        "accepted": 3,
        "rejected": 3,
    }
    pairs = ds.dataset(str(tmp_path / "out/bitext"), format="parquet").to_table().to_pylist()
    assert sorted((p["src_text"], p["source"]) for p in pairs) == [
        ("One cat.", f"{b}:1"),  # 1.50 in the second file beats both 1.10 in the first
        ("Red.", f"{b}:3"),
        ("Two dogs.", f"{a}:2"),  # equal scores: the earlier file
    ]
    rejects = ds.dataset(str(tmp_path / "out/rejects"), format="parquet").to_table().to_pylist()
    assert sorted((r["source"], r["reason"], r["detail"]) for r in rejects) == [
        (f"{a}:1", Reason.DUPLICATE_PAIR, f"same pair as {b}:1"),
        (f"{a}:3", Reason.DUPLICATE_PAIR, f"same pair as {b}:1"),
        (f"{b}:2", Reason.DUPLICATE_PAIR, f"same pair as {a}:2"),
    ]
    # One row per shard: names are per language pair (bitext) and per group (rejects).
    assert sorted(s["path"] for s in summary["shards"]) == [
        "bitext/src_lang=en/tgt_lang=fr/part-00000.parquet",
        "bitext/src_lang=en/tgt_lang=fr/part-00001.parquet",
        "bitext/src_lang=en/tgt_lang=fr/part-00002.parquet",
        "rejects/part-00003-00000.parquet",
        "rejects/part-00003-00001.parquet",
        "rejects/part-00003-00002.parquet",
    ]


def test_best_per_key_matches_a_full_sort():
    """The folded table picks what sorting every occurrence would pick."""
    import numpy as np

    from corpora.bitext import BestPerKey

    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, 5000).tolist()
    scores = rng.choice([1.1, 1.2, 1.3], 5000).tolist()
    table = BestPerKey(buffer=97)
    table.SMALL = 0  # use the numpy look-up path
    for loc, (k, s) in enumerate(zip(keys, scores, strict=True)):
        table.add(k, s, loc)
    table.fold()
    expected = {}
    for loc, (k, _score) in sorted(
        enumerate(zip(keys, scores, strict=True)), key=lambda t: (-t[1][1], t[0])
    ):
        expected.setdefault(k, loc)
    assert {k: table.best(k) for k in set(keys)} == expected
    assert table.best(999) is None and len(table.keys) == len(expected)


def test_rerun_clears_earlier_output(wikimatrix, tmp_path):
    out = tmp_path / "out"
    cfg = BitextConfig(min_score=1.04)
    job.run(job.BitextJobConfig(input=str(wikimatrix / "*.tsv.gz"), out=str(out), filters=cfg))
    assert (out / "bitext/src_lang=de/tgt_lang=en").exists()
    index = job.run(
        job.BitextJobConfig(
            input=str(wikimatrix / "WikiMatrix.en-fr.tsv.gz"), out=str(out), filters=cfg
        )
    )
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.parquet")}
    assert on_disk == {s["path"] for s in index.shards}
    assert not (out / "bitext/src_lang=de").exists()
    assert index.counts["input"] == len(LINES) + 1
