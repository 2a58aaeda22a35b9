"""Eval metrics against hand-computed values on a toy embedding set."""

import json

import numpy as np
import pytest

from trainer import report, retrieval

# 3 candidates along the axes; 4 queries with known rankings.
CANDS = np.eye(3, dtype=np.float32)
QUERIES = np.array(
    [
        [1.0, 0.2, 0.1],  # target 0: ranked first           -> rank 0
        [0.9, 0.5, 0.0],  # target 1: candidate 0 scores more -> rank 1
        [0.1, 0.2, 0.3],  # target 0: both others score more  -> rank 2
        [0.0, 0.0, 1.0],  # target 2: first                   -> rank 0
    ],
    dtype=np.float32,
)
TARGETS = [0, 1, 0, 2]


def test_ranks_and_metrics_by_hand():
    ranks = retrieval.target_ranks(QUERIES, CANDS, TARGETS)
    assert ranks.tolist() == [0, 1, 2, 0]
    m = retrieval.retrieval_metrics(ranks, ks=(1, 2))
    assert m["r_at_1"] == pytest.approx(2 / 4)
    assert m["r_at_2"] == pytest.approx(3 / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1) / 4)
    assert retrieval.top1(QUERIES, CANDS).tolist() == [0, 0, 2, 2]


def test_chunking_does_not_change_ranks(monkeypatch):
    rng = np.random.default_rng(0)
    # Small integers keep float32 arithmetic exact, so exact ties happen and
    # the brute-force reference rounds the same way as the matmul.
    q = rng.integers(-3, 4, (50, 8)).astype(np.float32)
    c = rng.integers(-3, 4, (20, 8)).astype(np.float32)
    t = rng.integers(0, 20, 50)
    full = retrieval.target_ranks(q, c, t)
    monkeypatch.setattr(retrieval, "CHUNK", 7)
    assert retrieval.target_ranks(q, c, t).tolist() == full.tolist()
    brute = [(c @ q[i] > c[t[i]] @ q[i]).sum() for i in range(50)]
    assert full.tolist() == brute


def test_bleu_of_exact_retrieval_is_100():
    refs = ["the house is red", "i like green tea very much"]
    assert retrieval.corpus_bleu(refs, refs) == pytest.approx(100.0)
    assert retrieval.corpus_bleu(["completely different words here"], [refs[1]]) < 10


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="outside"):
        retrieval.target_ranks(QUERIES, CANDS, [0, 1, 0, 3])
    with pytest.raises(ValueError, match="targets"):
        retrieval.target_ranks(QUERIES, CANDS, [0])
    assert (
        retrieval.chance_r_at_k(20) == pytest.approx(0.05)
        and retrieval.chance_r_at_k(3, k=5) == 1.0
    )


def test_report_files(tmp_path):
    res = {
        "fr": report.LanguageResult(
            r_at_1=0.5, r_at_5=1.0, mrr=0.7, n_queries=4, pool_size=3, bleu=40.0
        ),
        "sw": report.LanguageResult(
            r_at_1=0.25, r_at_5=0.5, mrr=0.4, n_queries=8, pool_size=4, bleu=None
        ),
        "yo": report.LanguageResult(
            r_at_1=0.75, r_at_5=1.0, mrr=0.8, n_queries=4, pool_size=2, bleu=20.0
        ),
    }
    data = report.write_report(
        report.Report(results=res, seen=["fr"], unseen=["sw", "yo"]), str(tmp_path)
    )
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == data
    assert data["mean_r_at_1_seen"] == pytest.approx(0.5)
    assert data["mean_r_at_1_unseen"] == pytest.approx(0.5)
    assert data["mean_bleu"] == pytest.approx(30.0) and data["bleu"] == {"fr": 40.0, "yo": 20.0}
    assert data["chance_r_at_1"]["sw"] == pytest.approx(0.25)
    md = (tmp_path / "report.md").read_text()
    assert md.index("| fr | seen") < md.index("| sw | unseen")
    assert (tmp_path / "r_at_1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
