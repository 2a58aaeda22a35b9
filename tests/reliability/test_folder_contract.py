"""Round 3: output folders that cannot be silently wrong (reliability issue,
items 1-4, 7-9 and the smaller ones: a killed rerun's card, a truncated
``_index.json``, the lock refused before heavy imports).

The folder contract (docs/guarantees.md): one job writes a folder at a time
(the lock, checked again before the index is published: fencing); the index
says which command wrote it, with which row-defining settings, whether it
succeeded, and every file's size and sha256; readers refuse another job's
folder, a failed one, and files that do not match the index.
"""

from __future__ import annotations

import json
import shutil

import pytest

from datastore import outlock, schema, shards
from datastore.outfolder import FolderMismatch
from pipelines.cli import main
from tests.reliability.helpers import read_index, read_rows, speechtok


@pytest.fixture(scope="module")
def tokens(mini_corpus, mfcc_codebook, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    assert main(_tokenize_args(mini_corpus, mfcc_codebook, out)) == 0
    return out


def _tokenize_args(corpus, codebook, out, *extra):
    return ["tokenize", "--format", "fleurs", "--input", str(corpus / "fleurs"), "--encoder",
            "mfcc", "--codebook", str(codebook), "--out", str(out), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def run(tokens, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    args = ["train", "--shards", str(tokens), "--llm", "debug", "--out", str(out)]
    assert main([*args, "--steps", "2", "--batch-size", "4", "--precision", "fp32"]) == 0
    return out


def copy(folder, dest):
    shutil.copytree(folder, dest)
    return dest


# -- 1: two embed runs into one folder --------------------------------------------------------
def test_a_second_embed_into_a_folder_in_use_is_refused(run, tokens, tmp_path):
    out = tmp_path / "emb"
    with outlock.hold_output_lock(str(out), "embed"):  # another embed holds it
        proc = speechtok("embed", "--run", run, "--shards", tokens, "--out", out, "--faiss")
    assert proc.returncode != 0
    assert "in use by embed job" in proc.stderr
    assert not (out / schema.INDEX_FILE).exists()


# -- 2: --out naming another job's folder -----------------------------------------------------
def test_a_job_refuses_another_jobs_folder(tokens, mini_corpus, mfcc_codebook, tmp_path):
    bitext = tmp_path / "bt"
    wm = str(mini_corpus / "wikimatrix" / "*.tsv.gz")
    assert main(["bitext", "--input", wm, "--min-score", "1.04", "--out", str(bitext)]) == 0
    before = read_index(bitext)
    jobs = [
        _tokenize_args(mini_corpus, mfcc_codebook, bitext),
        _tokenize_args(mini_corpus, mfcc_codebook, bitext, "--skip-existing"),
        ["fit-codebook", "--format", "fleurs", "--input", str(mini_corpus / "fleurs"),
         "--encoder", "mfcc", "--k", "8", "--out", str(bitext)],
    ]  # fmt: skip
    for args in jobs:
        assert main(args) == 2, args[0]
    tok = copy(tokens, tmp_path / "tok")
    assert main(["bitext", "--input", wm, "--min-score", "1.04", "--out", str(tok)]) == 2
    assert read_index(bitext) == before and read_index(tok) == read_index(tokens)


def test_readers_refuse_a_folder_of_the_wrong_kind(mini_corpus, tmp_path):
    bitext = tmp_path / "bt"
    wm = str(mini_corpus / "wikimatrix" / "*.tsv.gz")
    assert main(["bitext", "--input", wm, "--min-score", "1.04", "--out", str(bitext)]) == 0
    with pytest.raises(shards.FolderRefused, match="speechtok bitext"):
        shards.listed_shards(str(bitext), schema.TOKENS_DIR)


# -- 3: --break-lock while the holder still runs: fencing -----------------------------------
def test_a_job_whose_lock_was_taken_does_not_publish(tokens, tmp_path):
    out = copy(tokens, tmp_path / "tok")
    index = shards.Index.read(str(out))
    with outlock.hold_output_lock(str(out), "tokenize"):
        token = outlock.held_token(str(out))
        index.write(str(out), fence=token)  # still ours: publishes
        # another job breaks the lock and takes the folder
        lock = out / outlock.LOCK_NAME
        holder = json.loads(lock.read_text())
        lock.write_text(json.dumps({**holder, "token": "the-other-job", "pid": 1}))
        with pytest.raises(outlock.LockLost, match="taken over"):
            index.write(str(out), fence=token)


def test_a_training_run_whose_lock_was_taken_writes_no_checkpoint(tokens, tmp_path):
    """Train and eval write files, not an index: they make the same fencing check."""
    from trainer.train import debug_config, train

    out = tmp_path / "run"
    with outlock.hold_output_lock(str(out), "train"):
        lock = out / outlock.LOCK_NAME
        holder = json.loads(lock.read_text())
        lock.write_text(json.dumps({**holder, "token": "the-other-job", "pid": 1}))
        with pytest.raises(outlock.LockLost, match="taken over"):
            train(debug_config(str(tokens), str(out), steps=1))
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()


# -- 4: an append with other row-defining settings ------------------------------------------
def test_an_append_with_other_settings_is_refused(mini_corpus, mfcc_codebook, tmp_path):
    out = tmp_path / "tok"
    assert main(_tokenize_args(mini_corpus, mfcc_codebook, out, "--langs", "fr")) == 0
    before = read_index(out)
    assert before["settings"]["dedup"] is False
    more = _tokenize_args(mini_corpus, mfcc_codebook, out, "--skip-existing", "--dedup")
    assert main(more) == 2
    assert main([*more[:-1], "--max-seconds", "20"]) == 2
    assert read_index(out)["shards"] == before["shards"]
    assert main(more[:-1]) == 0  # the same settings append
    assert read_index(out)["counts"]["input"] > before["counts"]["input"]


def test_check_append_names_the_setting():
    from tokenizer.launch import check_append

    previous = shards.Index(job="tokenize", config={}, settings={"dedup": False, "codebook": "c"})
    with pytest.raises(FolderMismatch, match=r"dedup=False \(now True\)"):
        check_append("out", previous, {"dedup": True, "codebook": "c"})


# -- 7: export of a tampered codebook, and an export that fails -----------------------------
def test_export_refuses_a_tampered_codebook_and_leaves_no_folder(run, tmp_path):
    import numpy as np

    tampered = copy(run, tmp_path / "run")
    centroids = tampered / "codebook" / "centroids.npy"
    values = np.load(centroids, allow_pickle=False)
    np.save(centroids, values + 1.0, allow_pickle=False)
    out = tmp_path / "export"
    assert main(["export", "--run", str(tampered), "--out", str(out)]) == 2
    assert not out.exists()
    np.save(centroids, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickle
    assert main(["export", "--run", str(tampered), "--out", str(out)]) == 2
    assert not out.exists()
    assert not list(tmp_path.glob(".export.tmp-*"))  # nothing half-written beside it
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    assert (out / "dual_encoder.json").exists()


# -- 8: over --max-reject-fraction: the folder says it failed -------------------------------
def test_a_failed_job_is_recorded_and_readers_refuse_it(mini_corpus, mfcc_codebook, tmp_path):
    out = tmp_path / "tok"
    args = _tokenize_args(mini_corpus, mfcc_codebook, out, "--max-seconds", "3")
    assert main([*args, "--max-reject-fraction", "0.01"]) == 1
    index = read_index(out)
    assert index["status"] == "failed" and "--max-reject-fraction" in index["failure"]
    with pytest.raises(shards.FolderRefused, match="failed"):
        shards.read_table(str(out), schema.TOKENS_DIR)
    run_out = tmp_path / "run"
    train = ["train", "--shards", str(out), "--llm", "debug", "--out", str(run_out), "--steps", "1"]
    assert main(train) != 0
    # ... unless told to: the rows it listed, as written
    told = ["train", "--shards", str(out), "--llm", "debug", "--out", str(tmp_path / "run2")]
    kept = shards.read_table(str(out), schema.TOKENS_DIR, allow_failed=True)
    assert kept.num_rows == index["counts"]["accepted"] >= 2
    split = kept.column("split")[0].as_py()  # the accepted (short) clips' split
    assert main([*told, "--steps", "1", "--split", split, "--read-failed"]) == 0


# -- 9: a listed shard swapped for another file -----------------------------------------------
def test_a_swapped_shard_is_refused(run, tokens, tmp_path):
    out = copy(tokens, tmp_path / "tok")
    listed = [s["path"] for s in read_index(out)["shards"] if "split=test" in s["path"]]
    fr = next(p for p in listed if "lang=fr" in p)
    de = next(p for p in listed if "lang=de" in p)
    shutil.copyfile(out / de, out / fr)  # German rows where the index lists French ones
    report = tmp_path / "report"
    assert main(["eval", "--run", str(run), "--shards", str(out), "--out", str(report)]) == 2
    assert not (report / "report.json").exists()
    with pytest.raises(shards.FolderRefused):  # any reader: size (or sha256 with verify)
        shards.read_table(str(out), schema.TOKENS_DIR, verify=True)


# -- smaller ones ---------------------------------------------------------------------------
def test_a_truncated_index_is_one_clear_error(tokens, tmp_path):
    out = copy(tokens, tmp_path / "tok")
    text = (out / schema.INDEX_FILE).read_text()
    (out / schema.INDEX_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(shards.FolderRefused, match="truncated or edited index"):
        shards.Index.read(str(out))


def test_a_killed_rerun_leaves_no_old_card(mini_corpus, mfcc_codebook, tmp_path):
    from datastore import outfolder

    out = tmp_path / "tok"
    assert main(_tokenize_args(mini_corpus, mfcc_codebook, out)) == 0
    assert (out / schema.CARD_FILE).exists()
    outfolder.start_fresh(str(out), (schema.TOKENS_DIR, schema.REJECTS_DIR))  # a rerun's start
    assert not (out / schema.CARD_FILE).exists()  # the old card does not outlive its shards


def test_a_busy_folder_is_refused_before_the_heavy_imports(tokens, mini_corpus, mfcc_codebook):
    """The refusal took 8.6 s: Beam and torch were imported before the lock was tried."""
    import subprocess
    import sys

    args = _tokenize_args(mini_corpus, mfcc_codebook, tokens)
    code = (
        "import sys; from pipelines.cli import main; "
        f"rc = main({args!r}); "
        "print(rc, 'apache_beam' in sys.modules, 'torch' in sys.modules)"
    )
    with outlock.hold_output_lock(str(tokens), "tokenize"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "in use by tokenize job" in proc.stderr
    assert proc.stdout.split() == ["1", "False", "False"]


def test_embed_of_nothing_fails(run, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "emb"
    assert main(["embed", "--run", str(run), "--text", str(empty), "--out", str(out)]) == 1
    assert read_index(out)["status"] == "failed"


def test_a_folder_given_as_a_jsonl_manifest_is_one_line(tmp_path, mfcc_codebook):
    proc = speechtok("tokenize", "--format", "jsonl", "--input", tmp_path, "--encoder", "mfcc",
                     "--codebook", mfcc_codebook, "--out", tmp_path / "out")  # fmt: skip
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is a folder" in lines[0]


def test_a_bad_max_reject_fraction_is_one_line(tmp_path, mfcc_codebook):
    proc = speechtok("tokenize", "--format", "jsonl", "--input", tmp_path, "--encoder", "mfcc",
                     "--codebook", mfcc_codebook, "--out", tmp_path / "o",
                     "--max-reject-fraction", "abc")  # fmt: skip
    assert proc.returncode == 2
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1


def test_rows_of_a_good_folder_still_read(tokens):
    assert read_rows(tokens, "tokens")
    table = shards.read_table(str(tokens), schema.TOKENS_DIR, verify=True)
    assert table.num_rows == read_index(tokens)["counts"]["accepted"]
