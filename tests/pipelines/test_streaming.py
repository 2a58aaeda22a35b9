"""The speech jobs' streaming shape: rows never wait anywhere as a whole, yet
the output is what it was. Parts of a manifest read in parallel, ids
deduplicated by hash (exactly, even when hashes collide), rows through run
files: the same shards, rejects and counts; no run file left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datastore import runs, storage
from pipelines import speech
from pipelines.cli import main
from tests.conftest import sine
from tests.reliability.helpers import read_index, read_rows

N = 60


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """60 lines: WAVs of a few lengths, every 7th file broken, three repeated
    ids (one of them twice), a malformed line."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("stream")
    lines = []
    for i in range(N):
        path = root / f"c{i:03d}.wav"
        if i % 7 == 3:
            path.write_bytes(b"not audio at all" * 10)
        else:
            sf.write(str(path), sine(0.2 + 0.05 * (i % 5), freq=200 + 10 * i), 16000)
        uid = f"u{i:03d}" if i not in (20, 40, 41) else {20: "u005", 40: "u011", 41: "u011"}[i]
        lang = ("fr", "de", "sw")[i % 3]
        lines.append(json.dumps({"id": uid, "audio": path.name, "text": f"text {i}",
                                 "lang": lang, "split": "train"}))  # fmt: skip
    lines.insert(30, "{not json")
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def tokenize(manifest, codebook, out, *extra):
    args = ["tokenize", "--format", "jsonl", "--input", str(manifest), "--encoder", "mfcc",
            "--codebook", str(codebook), "--out", str(out), "--rows-per-shard", "9", *extra]  # fmt: skip
    assert main(args) == 0
    return read_index(out)


def shard_hashes(index: dict) -> dict[str, str]:
    return {s["path"]: s["sha256"] for s in index["shards"]}


@pytest.fixture(scope="module")
def reference(corpus, mfcc_codebook, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    return out, tokenize(corpus, mfcc_codebook, out)


def test_reference_counts(reference):
    out, index = reference
    assert index["counts"] == {"input": N + 1, "accepted": 48, "rejected": 13}
    assert index["rejects_by_reason"] == {"decode_error": 9, "duplicate_id": 3, "malformed_line": 1}
    dups = sorted(r["id"] for r in read_rows(out, "rejects") if r["reason"] == "duplicate_id")
    assert dups == ["u005", "u011", "u011"]
    assert not storage.exists(runs.runs_dir(str(out)))  # run files deleted after the index


def test_parts_give_the_same_files(corpus, mfcc_codebook, reference, tmp_path, monkeypatch):
    import tokenizer.manifests as manifests

    monkeypatch.setattr(manifests, "PART_BYTES", 700)  # ~7 lines a part: 9 parts
    assert (
        len(manifests.plan_parts(manifests.ManifestConfig(format="jsonl", input=str(corpus)))) > 5
    )
    index = tokenize(corpus, mfcc_codebook, tmp_path)
    assert index["counts"] == reference[1]["counts"]
    assert shard_hashes(index) == shard_hashes(reference[1])


def test_colliding_hashes_keep_distinct_ids(
    corpus, mfcc_codebook, reference, tmp_path, monkeypatch
):
    """Every id hashed to one of two values: all are contested, none merged."""
    monkeypatch.setattr(speech, "id_hash", lambda i: len(i) % 2)
    monkeypatch.setattr(
        speech, "id_hashes", lambda ids: np.array([len(i) % 2 for i in ids], np.uint64)
    )
    index = tokenize(corpus, mfcc_codebook, tmp_path)
    assert shard_hashes(index) == shard_hashes(reference[1])


def test_leftover_runs_of_a_killed_job_are_swept(corpus, mfcc_codebook, reference, tmp_path):
    stale = storage.join(runs.runs_dir(str(tmp_path)), "tokens/corpus=jsonl/split=train/lang=fr")
    storage.makedirs(stale)
    storage.write_bytes(storage.join(stale, "run-dead.arrow"), b"half a run")
    index = tokenize(corpus, mfcc_codebook, tmp_path)
    assert shard_hashes(index) == shard_hashes(reference[1])
    assert not storage.exists(runs.runs_dir(str(tmp_path)))


def test_multi_processing_workers_give_the_same_files(
    corpus, mfcc_codebook, reference, tmp_path, monkeypatch
):
    import tokenizer.manifests as manifests

    monkeypatch.setattr(manifests, "PART_BYTES", 700)  # parts for both workers
    index = tokenize(corpus, mfcc_codebook, tmp_path, "--direct_running_mode=multi_processing",
                     "--direct_num_workers=2")  # fmt: skip
    assert shard_hashes(index) == shard_hashes(reference[1])
