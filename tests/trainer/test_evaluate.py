"""``speechtok eval`` end to end: mini-FLEURS tokens (mfcc) -> a 2-step debug
run -> report.json / report.md / r_at_1.png with the DESIGN keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.cli import main
from tests.conftest import MINI_LANGS
from trainer import evaluate as ev


@pytest.fixture(scope="module")
def tokens(mini_corpus, mfcc_codebook, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    args = [
        "tokenize",
        "--format",
        "fleurs",
        "--input",
        str(mini_corpus / "fleurs"),
        "--encoder",
        "mfcc",
        "--codebook",
        str(mfcc_codebook),
        "--out",
        str(out),
        "--dedup",
    ]
    assert main(args) == 0
    return out


def test_eval_report(tokens, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--shards",
                str(tokens),
                "--llm",
                "debug",
                "--out",
                str(run),
                "--steps",
                "2",
                "--langs",
                "fr,de",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "--run",
                str(run),
                "--shards",
                str(tokens),
                "--split",
                "test",
                "--out",
                str(tmp_path / "rep"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "rep/report.json").read_text())
    assert {
        "r_at_1",
        "r_at_5",
        "mrr",
        "seen",
        "unseen",
        "mean_r_at_1_seen",
        "mean_r_at_1_unseen",
        "bleu",
        "mean_bleu",
        "n_queries",
    } <= set(report)
    assert report["seen"] == ["de", "fr"] and set(report["unseen"]) == {"sw", "en"}
    assert set(report["r_at_1"]) == {*MINI_LANGS, "en"}
    split = ev.read_split(str(tokens), "test")
    for lang, n in report["n_queries"].items():
        assert n == split.langs.count(lang)  # every recording is a query
        assert 0 <= report["r_at_1"][lang] <= report["r_at_5"][lang] <= 1
        # two recordings per sentence: the pool holds half as many sentences as queries
        assert report["pool_size"][lang] * 2 == n
    assert set(report["bleu"]) == set(MINI_LANGS)  # every non-English language, against en_us
    assert (tmp_path / "rep/r_at_1.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "| fr | seen" in out and "resamples, seed 0" in out
    # 95 % intervals beside every R@1 and the query counts behind the means
    for lang, (lo, hi) in report["r_at_1_ci95"].items():
        assert lo <= report["r_at_1"][lang] <= hi
    assert set(report["r_at_1_ci95"]) == set(report["r_at_1"])
    assert report["n_queries_seen"] == report["n_queries"]["fr"] + report["n_queries"]["de"]
    lo, hi = report["mean_r_at_1_seen_ci95"]
    assert lo <= report["mean_r_at_1_seen"] <= hi

    # The same queries ranked against a wider pool: the sentences of train + test.
    wide = ev.evaluate(
        ev.EvalConfig(
            run=str(run),
            shards=str(tokens),
            out=str(tmp_path / "wide"),
            pool_splits=("train", "test"),
            write_ranks=True,
        )
    )
    both = ev.read_split(str(tokens), ("train", "test"))
    assert wide["n_queries"] == report["n_queries"]
    for lang, pool in wide["pool_size"].items():
        sentences = {s for s, x in zip(both.sentence_ids, both.langs, strict=True) if x == lang}
        assert pool == len(sentences) > report["pool_size"][lang]
    ranks = json.loads((tmp_path / "wide/ranks.json").read_text())
    for lang, got in ranks.items():
        assert got["ids"] == [i for i, x in zip(split.ids, split.langs, strict=True) if x == lang]
        assert np.mean(np.asarray(got["ranks"]) == 0) == wide["r_at_1"][lang]


def test_pool_splits_must_hold_the_query_split():
    with pytest.raises(ValueError, match="must include"):
        ev.EvalConfig(run="r", shards="s", out="o", split="test", pool_splits=("dev",))


def test_english_pool_and_references():
    split = ev.Split(
        ids=["a", "b", "c", "d"],
        langs=["fr", "en", "de", "de"],
        sentence_ids=["1", "1", "2", "3"],
        texts=["bonjour", "hello", "hallo", "tschüss"],
        translations=[None, None, "hi", None],
        tokens=[np.zeros(1, np.int64)] * 4,
    )
    pool, english = ev.english_pool(split)
    assert pool == ["hello", "hi"] and english == {"1": "hello"}
    # fr joins English by sentence id; de row 'c' uses its translation; 'd' has none.
    assert ev.references([0, 2, 3], split, english) == ["hello", "hi", None]
