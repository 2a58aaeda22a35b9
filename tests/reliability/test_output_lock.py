"""Two jobs on one output folder: the second is refused at once, with one line
naming the folder and the holder, before it deletes anything there; a stale
lock is recovered (a dead local holder automatically, anything else with
``--break-lock``); the same on ``gs://`` (the local GCS emulator)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datastore import outlock, storage
from datastore.outlock import LOCK_NAME, Holder, OutputLockedError, hold_output_lock
from tests.pipelines.test_runners import free_port
from tests.reliability.catalogue import SR, build_bitext_catalogue, encoded, tone
from tests.reliability.helpers import assert_no_traceback, read_index, speechtok


@pytest.fixture(scope="module")
def wikimatrix(tmp_path_factory):
    return build_bitext_catalogue(tmp_path_factory.mktemp("wm")).glob


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A two-clip JSONL corpus and an mfcc codebook: ``(manifest, codebook)``."""
    import numpy as np

    from kmeans import Codebook

    root = tmp_path_factory.mktemp("speech")
    lines = []
    for i in range(2):
        (root / f"c{i}.wav").write_bytes(encoded(tone(1.0, SR, seed=i), SR, "WAV", "PCM_16"))
        lines.append(
            {"id": f"c{i}", "audio": f"c{i}.wav", "text": "t", "lang": "fr", "split": "test"}
        )
    (root / "m.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    x = np.random.default_rng(0).standard_normal((8, 39)).astype(np.float32)
    Codebook(x).with_metadata(encoder="mfcc", layer=0, mode=None, frame_rate=50.0).save(
        str(root / "cb")
    )
    return root / "m.jsonl", root / "cb"


def job_args(kind: str, out, wikimatrix, speech) -> list:
    manifest, codebook = speech
    source = ["--format", "jsonl", "--input", manifest, "--encoder", "mfcc"]
    return {
        "bitext": ["bitext", "--input", wikimatrix, "--min-score", "1.04", "--out", out],
        "tokenize": ["tokenize", *source, "--codebook", codebook, "--out", out],
        "fit-codebook": [
            "fit-codebook",
            *source,
            "--k",
            "2",
            "--sample-frames",
            "50",
            "--out",
            out,
        ],
    }[kind]


def refusal_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("speechtok")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("kind", ["tokenize", "fit-codebook", "bitext"])
def test_second_job_is_refused_before_touching_the_folder(kind, tmp_path, wikimatrix, speech):
    out = tmp_path / "out"
    # What a first job has written so far: the second must not delete any of it.
    for rel in ("tokens/part-00000.parquet", "rejects/part-00000.parquet", "_index.json"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("first job's output")
    with hold_output_lock(str(out), "tokenize"):
        holder = Holder.parse((out / LOCK_NAME).read_bytes())
        proc = speechtok(*job_args(kind, out, wikimatrix, speech), timeout=120)
    assert proc.returncode != 0
    assert_no_traceback(proc)
    line = refusal_line(proc)
    for fact in (str(out), "tokenize job", socket.gethostname(), f"pid {os.getpid()}"):
        assert fact in line, (fact, line)
    assert holder.started in line
    for rel in ("tokens/part-00000.parquet", "rejects/part-00000.parquet", "_index.json"):
        assert (out / rel).read_text() == "first job's output"
    assert not (out / LOCK_NAME).exists()  # released by the holder


def write_lock(out: Path, *, host: str, pid: int, age_s: float = 0.0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    holder = {
        "job": "bitext",
        "host": host,
        "pid": pid,
        "started": "2020-01-01T00:00:00+00:00",
        "token": "t",
    }
    (out / LOCK_NAME).write_text(json.dumps(holder))
    then = time.time() - age_s
    os.utime(out / LOCK_NAME, (then, then))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_of_a_dead_local_job_is_taken_over(tmp_path, wikimatrix, speech):
    out = tmp_path / "out"
    write_lock(out, host=socket.gethostname(), pid=dead_pid())
    proc = speechtok(*job_args("bitext", out, wikimatrix, speech), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "taking over the lock" in proc.stderr and "no longer runs on this host" in proc.stderr
    assert read_index(out)["counts"]["accepted"] > 0
    assert not (out / LOCK_NAME).exists()


def test_lock_from_another_host_needs_break_lock(tmp_path, wikimatrix, speech):
    out = tmp_path / "out"
    write_lock(out, host="elsewhere", pid=1, age_s=3600)
    proc = speechtok(*job_args("bitext", out, wikimatrix, speech), timeout=120)
    assert proc.returncode != 0
    line = refusal_line(proc)
    assert "host elsewhere" in line and "60 min ago" in line and "--break-lock" in line
    assert (out / LOCK_NAME).exists()  # not ours to remove
    proc = speechtok(*job_args("bitext", out, wikimatrix, speech), "--break-lock", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "taking over the lock" in proc.stderr and "--break-lock" in proc.stderr
    assert not (out / LOCK_NAME).exists()


def test_lock_is_reentrant_and_refreshed(tmp_path, monkeypatch):
    monkeypatch.setattr(outlock, "HEARTBEAT_S", 0.05)
    out = tmp_path / "out"
    with hold_output_lock(str(out), "tokenize"):
        first = (out / LOCK_NAME).stat().st_mtime_ns
        with hold_output_lock(str(out), "tokenize"):  # run_cli, then run: the same job
            assert (out / LOCK_NAME).exists()
        assert (out / LOCK_NAME).exists()
        deadline = time.time() + 10
        while (out / LOCK_NAME).stat().st_mtime_ns == first and time.time() < deadline:
            time.sleep(0.05)
        assert (out / LOCK_NAME).stat().st_mtime_ns > first  # the heartbeat touched it
    assert not (out / LOCK_NAME).exists()


def test_refused_lock_leaves_no_new_folder(tmp_path):
    """A job refused (or failing) before it writes leaves no empty output folder behind."""
    out = tmp_path / "new"
    with pytest.raises(RuntimeError, match="boom"), hold_output_lock(str(out), "bitext"):
        raise RuntimeError("boom")
    assert not out.exists()


class RacingStore:
    """A store where another job creates the lock between our read and our create
    (what the generation precondition on GCS settles): create() refuses."""

    path = "mem://out/.speechtok.lock"

    def __init__(self, other: Holder):
        self.other, self.reads = other, 0

    def read(self):
        self.reads += 1
        if self.reads == 1:
            return None  # nothing there yet...
        return json.dumps(self.other.__dict__).encode(), 1.0, 7

    def create(self, content: bytes) -> bool:
        return False  # ...but the other job's create won

    def delete(self, version) -> bool:
        raise AssertionError("a live holder's lock must not be deleted")


def test_lost_race_refuses_naming_the_winner():
    other = Holder(job="fit-codebook", host="elsewhere", pid=42, started="t0", token="x")
    me = Holder(job="bitext", host="here", pid=1, started="t1", token="y")
    with pytest.raises(OutputLockedError, match="fit-codebook job on host elsewhere, pid 42"):
        outlock._acquire(RacingStore(other), "mem://out", me, break_lock=False)


# -- gs:// ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def gcs():
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

    bucket = gcs.Client.create_anonymous_client().create_bucket("bkt")
    yield bucket
    mp.undo()
    proc.kill()
    proc.wait()


def test_gcs_lock_refuses_a_second_job_and_breaks_on_request(gcs, wikimatrix, speech):
    out = "gs://bkt/bt"
    with hold_output_lock(out, "tokenize"):
        blob = gcs.get_blob(f"bt/{LOCK_NAME}")
        assert Holder.parse(blob.download_as_bytes()).pid == os.getpid()
        proc = speechtok(*job_args("bitext", out, wikimatrix, speech), timeout=120)
        assert proc.returncode != 0
        line = refusal_line(proc)
        assert out in line and "tokenize job" in line and f"pid {os.getpid()}" in line
    assert gcs.get_blob(f"bt/{LOCK_NAME}") is None  # released
    # A lock left by a job on another machine: only --break-lock takes it over.
    stale = {"job": "bitext", "host": "worker-7", "pid": 9, "started": "t", "token": "z"}
    gcs.blob(f"bt/{LOCK_NAME}").upload_from_string(json.dumps(stale))
    proc = speechtok(*job_args("bitext", out, wikimatrix, speech), timeout=120)
    assert proc.returncode != 0 and "host worker-7" in refusal_line(proc)
    proc = speechtok(*job_args("bitext", out, wikimatrix, speech), "--break-lock", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(storage.read_text(f"{out}/_index.json"))["counts"]["accepted"] > 0
    assert gcs.get_blob(f"bt/{LOCK_NAME}") is None
