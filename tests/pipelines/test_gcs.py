"""gs:// input and output against a local GCS emulator (PyPI
gcp-storage-emulator on loopback), not mocks: the same Beam FileSystems and
google-cloud-storage calls a Dataflow job makes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datastore import shards, storage
from pipelines.cli import main
from tests.pipelines.test_runners import free_port
from tests.reliability.helpers import read_rows


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    port = free_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    proc = subprocess.Popen(
        [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    mp = pytest.MonkeyPatch()
    mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    storage._use_anonymous_gcs()
    from google.cloud import storage as gcs

    client = gcs.Client.create_anonymous_client()
    client.create_bucket("bkt")
    yield client.bucket("bkt")
    mp.undo()
    proc.kill()
    proc.wait()


def upload_tree(bucket, local: Path, prefix: str) -> None:
    for p in local.rglob("*"):
        if p.is_file():
            bucket.blob(f"{prefix}/{p.relative_to(local).as_posix()}").upload_from_filename(str(p))


def test_io_module_on_gcs(gcs):
    storage.write_text("gs://bkt/t/a.txt", "hello")
    with pytest.raises(RuntimeError), storage.open_write("gs://bkt/t/half.txt") as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert not storage.exists("gs://bkt/t/half.txt")  # never published
    assert (
        storage.read_text("gs://bkt/t/a.txt") == "hello" and storage.size("gs://bkt/t/a.txt") == 5
    )
    assert storage.glob("gs://bkt/t/*.txt") == ["gs://bkt/t/a.txt"]
    assert storage.resolve_under("gs://bkt/corpus", "a/b.wav") == "gs://bkt/corpus/a/b.wav"


def test_tokenize_and_bitext_on_gcs(gcs, mini_corpus, mfcc_codebook):
    upload_tree(gcs, mini_corpus / "fleurs" / "fr_fr", "corpus/fleurs/fr_fr")
    upload_tree(gcs, mfcc_codebook, "cb")
    upload_tree(gcs, mini_corpus / "wikimatrix", "wm")
    args = [
        "tokenize",
        "--format",
        "fleurs",
        "--input",
        "gs://bkt/corpus/fleurs",
        "--encoder",
        "mfcc",
        "--codebook",
        "gs://bkt/cb",
        "--out",
        "gs://bkt/tok",
    ]
    assert main(args) == 0
    index = json.loads(storage.read_text("gs://bkt/tok/_index.json"))
    assert index["counts"]["rejected"] == 0 and index["counts"]["accepted"] > 0
    rows = shards.read_table("gs://bkt/tok", "tokens").to_pylist()  # the listed shards
    assert len(rows) == index["counts"]["accepted"]
    assert all(
        r["audio"].startswith(f"gs://bkt/corpus/fleurs/{r['source_lang']}/audio/") for r in rows
    )
    assert {r["lang"] for r in rows} >= {"fr"}
    assert "configs:" in storage.read_text("gs://bkt/tok/README.md")  # the card, written on gs://
    assert (
        main(
            [
                "bitext",
                "--input",
                "gs://bkt/wm/*.tsv.gz",
                "--min-score",
                "1.04",
                "--out",
                "gs://bkt/bt",
            ]
        )
        == 0
    )
    bt = json.loads(storage.read_text("gs://bkt/bt/_index.json"))
    assert (
        bt["counts"]["input"] == bt["counts"]["accepted"] + bt["counts"]["rejected"]
        and bt["counts"]["accepted"] > 0
    )


def test_local_manifest_with_gs_uris_and_absolute_paths(gcs, mini_corpus, mfcc_codebook, tmp_path):
    """A JSONL manifest kept locally names clips by ``gs://`` URI and by absolute
    path: both are read as written (neither mangled under the manifest's folder
    nor refused as an escape)."""
    clips = sorted((mini_corpus / "fleurs" / "fr_fr" / "audio").rglob("*.wav"))[:2]
    gcs.blob("uris/clip0.wav").upload_from_filename(str(clips[0]))
    lines = [
        {
            "id": "remote",
            "audio": "gs://bkt/uris/clip0.wav",
            "text": "un",
            "lang": "fr",
            "split": "train",
        },
        {"id": "local", "audio": str(clips[1]), "text": "deux", "lang": "fr", "split": "train"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    out = tmp_path / "out"
    args = ["tokenize", "--format", "jsonl", "--input", str(tmp_path / "m.jsonl")]
    assert (
        main([*args, "--encoder", "mfcc", "--codebook", str(mfcc_codebook), "--out", str(out)]) == 0
    )
    rows = read_rows(out, "tokens")
    assert {r["id"]: r["audio"] for r in rows} == {
        "remote": "gs://bkt/uris/clip0.wav",
        "local": str(clips[1]),
    }
    assert all(r["n_frames"] > 0 for r in rows)


def test_hf_parquet_on_gcs(gcs, mfcc_codebook, tmp_path):
    """Hub-layout Parquet on ``gs://`` (a glob): text read by row group, audio bytes
    decoded from the object, the shard rows naming the object and row."""
    from tests.tokenizer import format_fixtures as ff

    built = ff.hf_fleurs(tmp_path / "hf")
    upload_tree(gcs, tmp_path / "hf" / "fr_fr", "hf/fr_fr")
    out = tmp_path / "out"
    args = ["tokenize", "--format", "hf-parquet", "--input", "gs://bkt/hf/fr_fr/*/*.parquet"]
    assert (
        main([*args, "--encoder", "mfcc", "--codebook", str(mfcc_codebook), "--out", str(out)]) == 0
    )
    index = json.loads((out / "_index.json").read_text())
    assert index["counts"] == {
        "input": built.n_records,
        "accepted": len(built.accepted),
        "rejected": len(built.rejects),
    }
    rows = read_rows(out, "tokens")
    assert sorted(r["id"] for r in rows) == sorted(built.accepted)
    assert all(
        r["audio"].startswith("gs://bkt/hf/fr_fr/train/0000.parquet#row_group=") for r in rows
    )
