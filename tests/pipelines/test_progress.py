"""Progress without a terminal, from worker processes too, and the run summary's
timings (wall, audio, rate, per-stage) in the output and in ``_index.json``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

from datastore.records import AudioExample
from pipelines import progress
from pipelines.summary import run_timings, summary_lines
from tokenizer.manifests import ManifestConfig, read_manifest

LINE = re.compile(r"^tokenize: ([0-9,]+)/([0-9,]+) utt, ([0-9.]+) h audio")


def test_format_line_with_total_rate_and_eta():
    counts = {"read": 50_000, "done": 12_400, "audio_ms": 31.2 * 3.6e6}
    line = progress.format_line("tokenize", counts, elapsed=272.6)
    assert line == "tokenize: 12,400/50,000 utt, 31.2 h audio, 412x real time, ETA 14 min"
    assert progress.format_line("fit", {"done": 3}, 1.0) == "fit: 3 utt, 0.0 h audio"


def test_worker_process_totals_are_summed(tmp_path, monkeypatch):
    """Worker processes write their totals to files the launcher adds up."""
    for pid, counts in ((101, {"read": 10, "done": 4}), (102, {"done": 5, "audio_ms": 7000})):
        (tmp_path / f"{pid}.json").write_text(json.dumps(counts))
    (tmp_path / "103.json.tmp").write_text("{half-written")  # ignored
    monkeypatch.setattr(progress, "_counts", progress.collections.Counter(read=1))
    assert progress._totals(str(tmp_path)) == {"read": 11, "done": 9, "audio_ms": 7000}


def test_a_worker_flushes_to_the_launchers_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(progress.DIR_ENV, str(tmp_path))
    monkeypatch.setenv(progress.LAUNCHER_ENV, "0")  # this process is a worker
    monkeypatch.setattr(progress, "_counts", progress.collections.Counter())
    progress.tick(read=3, done=2)
    progress.flush()
    written = json.loads((tmp_path / f"{os.getpid()}.json").read_text())
    assert written == {"read": 3, "done": 2}


def test_summary_lines_show_time_rate_and_stages():
    timings = run_timings(
        20.0,
        {
            "audio.accepted_ms": 7_200_000,
            "encoded": 400,
            "time.decode_ms": 30_500,
            "time.model_ms": 12_000,
            "time.write_ms": 900,
        },
    )
    assert timings["audio_hours"] == 2.0 and timings["x_real_time"] == 360.0
    assert timings["rows_per_s"] == 20.0
    assert timings["stages_s"] == {"decode": 30.5, "model": 12.0, "write": 0.9}
    lines = summary_lines("tokenize -> out", None, {}, timings)
    assert "20.0 s wall; 2.00 h audio, 360x real time, 20.0 utt/s" in lines[-2]
    assert lines[-1].endswith("decode 30.5 s | model 12.0 s | write 0.9 s")


@pytest.fixture(scope="module")
def repeated_manifest(mini_corpus, tmp_path_factory):
    """The mini corpus' FLEURS clips listed 8 times under new ids (a few hundred)."""
    fleurs = mini_corpus / "fleurs"
    examples = [
        e
        for e in read_manifest(ManifestConfig(format="fleurs", input=str(fleurs)))
        if isinstance(e, AudioExample)
    ]
    lines = []
    for copy in range(8):
        for e in examples:
            rel = os.path.relpath(e.uri, fleurs)
            obj = {"id": f"{e.id}#{copy}", "audio": rel, "text": e.text}
            lines.append(json.dumps({**obj, "lang": e.lang, "split": e.split}))
    path = fleurs / "repeated.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, len(lines)


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing"])
def test_progress_lines_reach_a_redirected_stdout(repeated_manifest, mfcc_codebook, tmp_path, mode):
    """With stdout a file (nohup, CI, a scheduler), a job of a few hundred
    utterances prints progress lines with done/total and audio hours, also
    when worker processes do the work; the summary and the index carry the
    run's timings."""
    manifest, n = repeated_manifest
    out = tmp_path / "out"
    log = tmp_path / "log.txt"
    cmd = [
        sys.executable, "-m", "pipelines.cli", "tokenize", "--format", "jsonl",
        "--input", str(manifest), "--encoder", "mfcc", "--codebook", str(mfcc_codebook),
        "--out", str(out), "--max-batch-seconds", "5",
        "--direct_running_mode", mode, "--direct_num_workers", "2",
    ]  # fmt: skip
    env = {**os.environ, progress.INTERVAL_ENV: "0.1", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.DEVNULL, env=env, check=True, timeout=600)
    text = log.read_text().splitlines()
    seen = [LINE.match(line) for line in text]
    progress_lines = [m for m in seen if m]
    assert progress_lines, text
    done = [int(m.group(1).replace(",", "")) for m in progress_lines]
    total = [int(m.group(2).replace(",", "")) for m in progress_lines]
    assert any(0 < d < n for d in done) or max(done) == n
    assert max(total) == n and done == sorted(done)
    index = json.loads((out / "_index.json").read_text())
    timings = index["timings"] if "timings" in index else index["extra"]["timings"]
    table = ds.dataset(str(out / "tokens"), format="parquet", partitioning="hive").to_table()
    audio_s = sum(table.column("duration_s").to_pylist())
    assert timings["audio_s"] == pytest.approx(audio_s, abs=0.001 * len(table))
    assert set(timings["stages_s"]) >= {"read", "decode", "model", "write"}
    assert any(line.startswith("time ") and "x real time" in line for line in text)
