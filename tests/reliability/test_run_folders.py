"""A run folder is input too: eval refuses shards made with another codebook
than the run's (and names the codebook in report.json), and the LLM a run's
config.json names resolves against the run folder, never the current
directory, and comes from the hub only when the user allows it."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datastore import schema
from pipelines.cli import main
from testing.synthetic_shards import write_synthetic_shards
from tests.reliability.helpers import relist
from trainer import checkpoint
from trainer.backbones import BackboneReferenceError, resolve_run_reference

HUB_ID = "google/gemma-3-270m"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Shards of two codebooks with the same k, and a 2-step debug run on the first:
    ``(run, shards_a, info_a, shards_b, info_b)``."""
    root = tmp_path_factory.mktemp("runs")
    kw = {"langs": ("fr", "de"), "per_lang": 8, "test_per_lang": 4, "k": 32}
    info_a = write_synthetic_shards(str(root / "a"), seed=0, **kw)
    info_b = write_synthetic_shards(str(root / "b"), seed=1, **kw)
    assert info_a["codebook"] != info_b["codebook"]  # same k, another codebook
    run = root / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    argv = ["train", "--shards", str(root / "a"), "--llm", "debug", "--out", str(run)]
    assert main([*argv, "--steps", "2", "--batch-size", "4"]) == 0
    mp.undo()
    return run, root / "a", info_a, root / "b", info_b


def eval_argv(run, shards, out) -> list[str]:
    return ["eval", "--run", str(run), "--shards", str(shards), "--out", str(out)]


def test_eval_refuses_shards_of_another_codebook(trained, tmp_path, capsys):
    run, _, info_a, shards_b, info_b = trained
    assert main(eval_argv(run, shards_b, tmp_path / "rep")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and info_a["codebook"] in err[0] and info_b["codebook"] in err[0]
    assert not (tmp_path / "rep" / "report.json").exists()


def test_eval_refuses_a_forged_codebook_id(trained, tmp_path, capsys):
    """The right id in the ``codebook`` column but another sha256 in the file metadata."""
    run, shards_a, info_a, _, _ = trained
    forged = tmp_path / "forged"
    shutil.copytree(shards_a, forged)
    for part in (forged / schema.TOKENS_DIR).rglob("*.parquet"):
        table = pq.read_table(part)
        meta = {**table.schema.metadata, schema.META_CODEBOOK_SHA256: b"0" * 64}
        pq.write_table(table.replace_schema_metadata(meta), part)
        relist(forged, part.relative_to(forged).as_posix())  # a forgery the index agrees with
    assert main(eval_argv(run, forged, tmp_path / "rep")) == 2
    err = capsys.readouterr().err
    assert "sha256 0000000000000000" in err and info_a["codebook_sha256"][:16] in err


def test_report_names_the_codebook(trained, tmp_path):
    run, shards_a, info_a, _, _ = trained
    assert main(eval_argv(run, shards_a, tmp_path / "rep")) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["codebook"] == {"id": info_a["codebook"], "sha256": info_a["codebook_sha256"]}
    assert {"r_at_1", "r_at_5", "mrr", "seen", "unseen", "bleu", "n_queries"} <= set(report)


def with_llm(run: Path, folder: Path, llm: str) -> Path:
    """A copy of ``run`` whose config.json names ``llm``."""
    shutil.copytree(run, folder)
    config = json.loads((folder / checkpoint.CONFIG_FILE).read_text())
    config["model"]["llm"] = llm
    (folder / checkpoint.CONFIG_FILE).write_text(json.dumps(config))
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test (the hub must not even be tried)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_hub_reference_needs_the_users_consent(trained, tmp_path, monkeypatch, no_network, capsys):
    run, shards_a, *_ = trained
    hub_run = with_llm(run, tmp_path / "hub-run", f"hf:{HUB_ID}")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert main(eval_argv(hub_run, shards_a, tmp_path / "rep")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and HUB_ID in err[0] and "--allow-hub" in err[0]
    # --allow-hub alone is not enough while HF_HUB_OFFLINE is set.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneReferenceError, match="HF_HUB_OFFLINE"):
        resolve_run_reference(f"hf:{HUB_ID}", str(hub_run), allow_hub=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_run_reference(f"hf:{HUB_ID}", str(hub_run), allow_hub=True) == f"hf:{HUB_ID}"


@pytest.fixture(scope="module")
def local_lm(tmp_path_factory):
    """The debug backbone saved as a transformers folder, beside the runs that use it."""
    from trainer.backbones import load_backbone

    root = tmp_path_factory.mktemp("models")
    backbone = load_backbone("debug")
    backbone.model.save_pretrained(str(root / "lm"))
    backbone.tokenizer.save_pretrained(str(root / "lm"))
    return root / "lm"


def save_run(run: Path, llm: str) -> None:
    from trainer.configs import DualEncoderConfig
    from trainer.model import build_model

    model = build_model(DualEncoderConfig(llm=llm), 16)
    checkpoint.save_model(str(run), model, step=0)
    config = checkpoint.run_config(model, codebook={"id": "cb"}, step=0, train=None)
    checkpoint.write_config(str(run), config)


def test_relative_reference_resolves_against_the_run_folder(local_lm, tmp_path, monkeypatch):
    monkeypatch.chdir(local_lm.parent)
    run = local_lm.parent / "run"
    save_run(run, "hf:lm")  # relative to the training job's directory...
    saved = json.loads((run / checkpoint.CONFIG_FILE).read_text())
    assert saved["model"]["llm"] == f"hf:{local_lm}"  # ...so it is saved absolute
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "lm").mkdir(parents=True)  # a decoy where a cwd-relative lookup would go
    monkeypatch.chdir(elsewhere)
    model, _, _ = checkpoint.load_run(str(run))
    assert model.backbone_name == f"hf:{local_lm}"
    # A hand-written relative reference: against the run folder, whatever the cwd.
    rel_run = with_llm(run, local_lm.parent / "runs" / "rel", "hf:../../lm")
    model, _, _ = checkpoint.load_run(str(rel_run))
    assert model.backbone_name == f"hf:{local_lm}"


@pytest.mark.parametrize(
    ("llm", "message"),
    [
        ("hf:/nonexistent/elsewhere", "not a folder here"),
        ("hf:../elsewhere", "no folder"),
        ("hf:./lm-missing", "no folder"),
    ],
)
def test_references_that_lead_nowhere_are_refused(local_lm, tmp_path, monkeypatch, llm, message):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # even online, none of these may reach the hub
    run = tmp_path / "run"
    save_run(run, "debug")
    bad = with_llm(run, tmp_path / "bad", llm)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load_run(str(bad))
