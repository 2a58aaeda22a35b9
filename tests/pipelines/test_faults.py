"""A tokenize run killed with SIGKILL leaves no partial shard visible, and the
re-run's output equals an uninterrupted run's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines import tokenize as job
from tokenizer.encoders.base import EncoderConfig
from tokenizer.manifests import ManifestConfig


def command(corpus, codebook, out):
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "tokenize",
        "--format",
        "fleurs",
        "--input",
        str(corpus / "fleurs"),
        "--encoder",
        "mfcc",
        "--codebook",
        str(codebook),
        "--out",
        str(out),
        "--rows-per-shard",
        "1",
    ]


def visible_shards(out):
    return sorted(p for p in out.rglob("part-*.parquet"))


def kill_when(proc, predicate, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)


def watch_progress(proc, seen: threading.Event):
    """Set ``seen`` once a progress line shows a tokenized utterance (encode still running)."""
    for line in proc.stdout:
        if re.match(rb"tokenize: [1-9][0-9,]*/", line):
            seen.set()


@pytest.mark.parametrize("moment", ["during_encode", "during_shard_writes"])
def test_sigkill_then_rerun(mini_corpus, mfcc_codebook, tmp_path, moment):
    out = tmp_path / "out"
    # Small encoder batches: the first utterances are tokenized while later
    # batches are still being encoded; one row per shard: many shard writes.
    cmd = [*command(mini_corpus, mfcc_codebook, out), "--max-batch-seconds", "2"]
    env = {**os.environ, "SPEECHTOK_PROGRESS_INTERVAL": "0.05"}  # progress lines, fast
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    seen = threading.Event()
    threading.Thread(target=watch_progress, args=(proc, seen), daemon=True).start()
    if moment == "during_encode":
        kill_when(proc, lambda: seen.is_set() and not visible_shards(out))
    else:
        kill_when(proc, lambda: bool(visible_shards(out)))
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "_index.json").exists()
    for shard in visible_shards(out):  # whatever is visible is a complete Parquet file
        pq.read_table(shard)
    rerun = job.run(
        job.TokenizeJobConfig(
            manifest=ManifestConfig(format="fleurs", input=str(mini_corpus / "fleurs")),
            encoder=EncoderConfig(name="mfcc"),
            codebook=str(mfcc_codebook),
            out=str(out),
            write=job.shards.WriteConfig(rows_per_shard=1),
        )
    )
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    subprocess.run(
        command(mini_corpus, mfcc_codebook, tmp_path / "clean"), check=True, capture_output=True
    )
    clean = {
        p.relative_to(tmp_path / "clean").as_posix(): p.read_bytes()
        for p in visible_shards(tmp_path / "clean")
    }
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in visible_shards(out)}
    assert after == clean
    assert rerun.counts["input"] == rerun.counts["accepted"] + rerun.counts["rejected"]
    assert (
        ds.dataset(str(out / "tokens"), format="parquet", partitioning="hive").count_rows()
        == rerun.counts["accepted"]
    )
