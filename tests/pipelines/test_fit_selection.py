"""What fit-codebook fits on: the train split unless ``--splits`` says otherwise,
only the languages asked for, and ``codebook.json`` says which."""

from __future__ import annotations

import json

from pipelines.cli import main


def _rows(tsv) -> int:
    return sum(1 for line in tsv.read_text().splitlines() if line.strip())


def test_the_codebook_is_fitted_on_train_and_says_so(mini_corpus, mfcc_codebook):
    meta = json.loads((mfcc_codebook / "codebook.json").read_text())
    fleurs = mini_corpus / "fleurs"
    train = {d.name.split("_")[0]: _rows(d / "train.tsv") for d in fleurs.iterdir()
             if (d / "train.tsv").is_file()}  # fmt: skip
    assert meta["fitted_on"] == {"format": "fleurs", "langs": sorted(train), "splits": ["train"]}
    assert meta["seen_utterances"] == train  # no dev or test clip reached the sample


def test_langs_and_splits_are_honoured(mini_corpus, tmp_path):
    out = tmp_path / "cb"
    args = ["fit-codebook", "--format", "fleurs", "--input", str(mini_corpus / "fleurs")]
    args += ["--encoder", "mfcc", "--k", "4", "--sample-frames", "500", "--out", str(out)]
    assert main([*args, "--langs", "fr", "--splits", "test"]) == 0
    meta = json.loads((out / "codebook.json").read_text())
    assert meta["fitted_on"]["langs"] == ["fr"] and meta["fitted_on"]["splits"] == ["test"]
    assert meta["seen_utterances"] == {"fr": _rows(mini_corpus / "fleurs/fr_fr/test.tsv")}


def test_lang_is_refused_where_records_name_their_own(mini_corpus, tmp_path, capsys):
    args = ["fit-codebook", "--format", "fleurs", "--input", str(mini_corpus / "fleurs")]
    args += ["--encoder", "mfcc", "--k", "4", "--out", str(tmp_path / "cb"), "--lang", "fr"]
    assert main(args) == 2
    assert "fleurs records carry their own language (--langs selects)" in capsys.readouterr().err
