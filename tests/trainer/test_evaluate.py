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
    assert "| fr | seen" in capsys.readouterr().out


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
