"""The jobs on real engines: Flink (MiniCluster job server and a session
cluster of JobManager + TaskManager JVMs) and Spark (``local[2]``), started by
:mod:`engines` from Maven-resolved jars, ``--parallelism 2``, LOOPBACK
workers. Each job must give the embedded runner's output: the same shard
files (sha256), rejects, ``_index.json`` counts and centroids. Every JVM a
test starts is gone when it ends.

Marked ``engine``; skipped (one line) only where ``java`` is missing.
"""

from __future__ import annotations

import gzip
import json
import shutil
import time

import numpy as np
import pytest

from pipelines.cli import main
from tests.conftest import sine
from tests.reliability.helpers import read_index

pytestmark = pytest.mark.engine

if shutil.which("java") is None:
    pytest.skip("no java on this machine: the engine tests need a JDK", allow_module_level=True)

import psutil  # noqa: E402

import engines  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, mini_corpus, mfcc_codebook):
    """A JSONL corpus with every kind of reject the read and decode stages give,
    mini-FLEURS, and WikiMatrix files (a truncated one among them)."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("engine-inputs")
    lines = []
    for i in range(40):
        name = f"c{i:02d}.wav"
        if i % 9 == 4:
            (root / name).write_bytes(b"RIFF not really")
        elif i % 9 != 7:  # 7, 16, 25, 34: missing files
            sf.write(str(root / name), sine(0.25 + 0.05 * (i % 4), freq=180 + 15 * i), 16000)
        uid = "c05" if i == 30 else f"c{i:02d}"  # a duplicate id
        lines.append(json.dumps({"id": uid, "audio": name, "text": f"text {i}",
                                 "lang": ("fr", "de")[i % 2], "split": "train"}))  # fmt: skip
    lines.insert(20, "{broken json")
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    wm = root / "wikimatrix"
    shutil.copytree(mini_corpus / "wikimatrix", wm)
    good = gzip.compress(b"1.5\tEins zwei drei.\tUn deux trois.\n" * 40)
    (wm / "WikiMatrix.de-fr.tsv.gz").write_bytes(good[: len(good) // 2])
    return {"jsonl": root / "manifest.jsonl", "fleurs": mini_corpus / "fleurs", "wm": wm,
            "codebook": mfcc_codebook}  # fmt: skip


def jobs(inputs, out) -> dict[str, list[str]]:
    return {
        "tokenize": ["tokenize", "--format", "fleurs", "--input", str(inputs["fleurs"]),
                     "--encoder", "mfcc", "--codebook", str(inputs["codebook"]),
                     "--out", str(out / "tokenize"), "--rows-per-shard", "7"],
        "tokenize-rejects": ["tokenize", "--format", "jsonl", "--input", str(inputs["jsonl"]),
                             "--encoder", "mfcc", "--codebook", str(inputs["codebook"]),
                             "--out", str(out / "tokenize-rejects"), "--rows-per-shard", "5"],
        "fit-codebook": ["fit-codebook", "--format", "jsonl", "--input", str(inputs["jsonl"]),
                         "--encoder", "mfcc", "--k", "8", "--out", str(out / "fit-codebook")],
        "bitext": ["bitext", "--input", str(inputs["wm"] / "*.tsv.gz"), "--min-score", "1.04",
                   "--out", str(out / "bitext")],
    }  # fmt: skip


def outcome(folder) -> dict:
    """What must not depend on the runner: shard files, counts, reasons, centroids."""
    index = read_index(folder)
    got = {
        "counts": index["counts"],
        "reasons": index["rejects_by_reason"],
        "shards": {s["path"]: s["sha256"] for s in index["shards"]},
    }
    if (folder / "centroids.npy").exists():
        got["centroids"] = np.load(folder / "centroids.npy", allow_pickle=False).tolist()
    return got


@pytest.fixture(scope="module")
def embedded(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("embedded")
    results = {}
    for name, args in jobs(inputs, out).items():
        assert main(args) == 0, name
        results[name] = outcome(out / name)
    assert results["tokenize-rejects"]["counts"]["rejected"] > 0  # the reject path is exercised
    assert set(results["tokenize-rejects"]["reasons"]) == {
        "decode_error", "missing_file", "duplicate_id", "malformed_line",
    }  # fmt: skip
    assert results["bitext"]["reasons"].get("bad_gzip") == 1
    return results


@pytest.fixture(scope="module", params=["flink", "spark"])
def engine(request):
    with engines.start(request.param, parallelism=2) as running:
        yield running
    assert_gone(running)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], seconds: float = 15) -> list[int]:
    deadline = time.monotonic() + seconds
    alive = [p for p in pids if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if running(p)]
    return alive


def assert_gone(engine) -> None:
    alive = wait_gone(engine.pids())
    assert not alive, f"{engine.kind}: JVMs still running: {alive}"


@pytest.mark.parametrize("job", ["tokenize", "tokenize-rejects", "fit-codebook", "bitext"])
def test_job_on_the_engine_equals_the_embedded_runner(engine, job, inputs, embedded, tmp_path):
    args = jobs(inputs, tmp_path)[job]
    assert main([*args, *engine.beam_args()]) == 0
    assert outcome(tmp_path / job) == embedded[job]


def test_tokenize_on_a_flink_session_cluster(inputs, embedded, tmp_path):
    with engines.start("flink-cluster", parallelism=2) as cluster:
        assert len(cluster.pids()) == 3  # JobManager, TaskManager, job server
        args = jobs(inputs, tmp_path)["tokenize-rejects"]
        assert main([*args, *cluster.beam_args()]) == 0
    assert_gone(cluster)
    assert outcome(tmp_path / "tokenize-rejects") == embedded["tokenize-rejects"]


def test_the_command_line_runs_a_job_and_stops_what_it_started(inputs, embedded, tmp_path):
    """What the README shows: ``python -m engines run spark -- speechtok ...``,
    then ``start``/``stop`` with a state folder."""
    import subprocess
    import sys

    args = jobs(inputs, tmp_path)["tokenize-rejects"]
    cli = [sys.executable, "-m", "pipelines.cli"]
    run = [sys.executable, "-m", "engines", "run", "spark", "--", *cli, *args]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr  # the runner's stream shutdown stays quiet
    assert outcome(tmp_path / "tokenize-rejects") == embedded["tokenize-rejects"]
    state = tmp_path / "state"
    started = subprocess.run(
        [sys.executable, "-m", "engines", "start", "flink", "--state-dir", str(state)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    recorded = json.loads((state / "engine.json").read_text())
    assert started.stdout.splitlines()[-1].split() == recorded["beam_args"]
    assert all(running(p) for p in recorded["pids"])
    stopped = subprocess.run([sys.executable, "-m", "engines", "stop", "--state-dir", str(state)])
    assert stopped.returncode == 0 and not (state / "engine.json").exists()
    assert wait_gone(recorded["pids"]) == []
