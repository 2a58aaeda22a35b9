"""A run finds the codebook its shards were made with, wherever it is started:
tokenize records the codebook's absolute location, and train fails, naming
the cause, when that folder is gone or holds another codebook."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines.cli import main


@pytest.fixture
def relative_tokens(mini_corpus, mfcc_codebook, tmp_path, monkeypatch):
    """Tokenized from the codebook's parent folder, ``--codebook`` as typed there."""
    monkeypatch.chdir(mfcc_codebook.parent)
    out = tmp_path / "tok"
    args = ["tokenize", "--format", "fleurs", "--input", str(mini_corpus / "fleurs")]
    args += ["--encoder", "mfcc", "--codebook", mfcc_codebook.name, "--out", str(out)]
    assert main(args) == 0
    index = json.loads((out / "_index.json").read_text())
    assert index["extra"]["codebook_uri"] == str(mfcc_codebook)
    return out


def _train(shards, out) -> int:
    args = ["train", "--shards", str(shards), "--llm", "debug", "--out", str(out)]
    return main([*args, "--steps", "1", "--batch-size", "4", "--precision", "fp32"])


def test_a_run_started_elsewhere_keeps_its_codebook(
    relative_tokens, mfcc_codebook, tmp_path, monkeypatch
):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _train(relative_tokens, tmp_path / "run") == 0
    for name in ("centroids.npy", "codebook.json"):
        assert (tmp_path / "run/codebook" / name).read_bytes() == (
            mfcc_codebook / name
        ).read_bytes()
    tokens = json.loads((tmp_path / "run/config.json").read_text())["tokens"]
    assert tokens["codebook_dir"] == "codebook" and tokens["shards"] == str(relative_tokens)


def test_a_missing_or_replaced_codebook_is_the_error(
    relative_tokens, mfcc_codebook, tmp_path, capsys
):
    moved = tmp_path / "moved"
    shutil.copytree(mfcc_codebook, moved)
    index = relative_tokens / "_index.json"
    record = json.loads(index.read_text())
    record["extra"]["codebook_uri"] = str(tmp_path / "gone")
    index.write_text(json.dumps(record))
    assert _train(relative_tokens, tmp_path / "run1") == 2
    assert f"codebook {tmp_path / 'gone'}, which is not there" in capsys.readouterr().err
    meta = json.loads((moved / "codebook.json").read_text())
    meta["sha256"] = "0" * 64
    (moved / "codebook.json").write_text(json.dumps(meta))
    record["extra"]["codebook_uri"] = str(moved)
    index.write_text(json.dumps(record))
    assert _train(relative_tokens, tmp_path / "run2") == 2
    assert "not their codebook" in capsys.readouterr().err
