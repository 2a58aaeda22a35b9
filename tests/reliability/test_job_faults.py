"""Faults inside a job: a worker exception is routed to rejects (never silently
dropped); a full disk or an unwritable output folder fails the job with one
clear line, a non-zero exit and no half-written ``_index.json``.

(SIGKILL during encode and during shard writes: tests/pipelines/test_faults.py.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

import kmeans
from datastore import storage
from datastore.records import Reason
from pipelines import tokenize as job
from pipelines.cli import main
from tests.reliability.catalogue import SR, encoded, tone
from tests.reliability.helpers import (
    assert_no_traceback,
    read_index,
    read_rows,
    speechtok,
    temp_files,
)
from tokenizer.encoders import register_encoder
from tokenizer.encoders.base import EncoderConfig
from tokenizer.encoders.mfcc import MfccEncoder, mfcc_features
from tokenizer.manifests import ManifestConfig

# Clip lengths in samples; the "poison" clip is recognised by its exact length.
LENGTHS = [12_000, 14_000, 16_000, 18_000, 20_000, 22_000, 24_000, 26_000]
POISON = 19_757
FLAKY = "test-flaky-mfcc"


@register_encoder(FLAKY)
class FlakyMfcc(MfccEncoder):
    """mfcc that fails (as a worker would on a bad batch) when it sees the poison clip."""

    def _encode_batch(self, clips):
        if any(len(c) == POISON for c in clips):
            raise RuntimeError("injected worker failure")
        return super()._encode_batch(clips)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A JSONL corpus of good clips + the poison clip, and codebooks for mfcc and FLAKY."""
    root = tmp_path_factory.mktemp("faults")
    lines, waves = [], []
    for i, n in enumerate([*LENGTHS, POISON]):
        wave = tone(n / SR, SR, (200.0 + 40 * i, 610.0), seed=i)
        waves.append(wave)
        name = "poison" if n == POISON else f"clip{i}"
        (root / f"{name}.wav").write_bytes(encoded(wave, SR, "WAV", "PCM_16"))
        meta = {
            "id": name,
            "audio": f"{name}.wav",
            "text": f"text {i}",
            "lang": "fr",
            "split": "test",
        }
        lines.append(json.dumps(meta))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    frames = np.concatenate([mfcc_features(w) for w in waves])
    fitted = kmeans.fit(frames, 8, seed=0)
    codebooks = {}
    for name in ("mfcc", FLAKY):
        folder = str(root / f"cb-{name}")
        fitted.with_metadata(encoder=name, layer=0, mode=None, frame_rate=50.0).save(folder)
        codebooks[name] = folder
    return root, codebooks


def tokenize_config(corpus, out, encoder="mfcc", **encoder_kw):
    root, codebooks = corpus
    return job.TokenizeJobConfig(
        manifest=ManifestConfig(format="jsonl", input=str(root / "manifest.jsonl")),
        encoder=EncoderConfig(name=encoder, **encoder_kw),
        codebook=codebooks[encoder],
        out=str(out),
        write=job.shards.WriteConfig(rows_per_shard=1),
    )


@pytest.mark.parametrize("batch_seconds", [0.1, 40.0])
def test_worker_exception_goes_to_rejects(corpus, tmp_path, batch_seconds):
    """The model raising on a batch: its clips are retried one by one, so only
    the poison becomes an ``encode_error`` reject naming the error, whether it
    was alone in its batch (0.1 s batches) or shared it with the other eight
    (40 s); no clip is dropped or duplicated."""
    index = job.run(tokenize_config(corpus, tmp_path, FLAKY, max_batch_seconds=batch_seconds))
    rows = {r["id"] for r in read_rows(tmp_path, "tokens")}
    rejects = read_rows(tmp_path, "rejects")
    by_id = {r["id"]: r for r in rejects}
    assert by_id["poison"]["reason"] == Reason.ENCODE_ERROR
    assert all("injected worker failure" in r["detail"] for r in rejects)
    every = {"poison", *(f"clip{i}" for i in range(len(LENGTHS)))}
    assert rows | set(by_id) == every and not rows & set(by_id) and len(rejects) == len(by_id)
    assert {r["reason"] for r in rejects} == {Reason.ENCODE_ERROR}
    assert index.counts == {"input": len(every), "accepted": len(rows), "rejected": len(rejects)}
    assert set(by_id) == {"poison"}


@contextlib.contextmanager
def disk_full_after(monkeypatch, budget: int):
    """Every ``datastore.storage.open_write`` fails with ENOSPC once ``budget`` bytes
    have been written in this process (mid-file, as a real full disk does)."""
    real_open_write = storage.open_write
    written = [0]

    class FillingFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            written[0] += len(data)
            if written[0] > budget:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

    @contextlib.contextmanager
    def open_write(uri):
        with real_open_write(uri) as f:
            yield FillingFile(f)

    with monkeypatch.context() as m:
        m.setattr(storage, "open_write", open_write)
        yield written


def tokenize_argv(corpus, out):
    root, codebooks = corpus
    return [
        "tokenize", "--format", "jsonl", "--input", str(root / "manifest.jsonl"),
        "--encoder", "mfcc", "--codebook", codebooks["mfcc"], "--out", str(out),
        "--rows-per-shard", "1",
    ]  # fmt: skip


def test_full_disk_fails_cleanly_and_rerun_completes(corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with disk_full_after(monkeypatch, budget=8_000) as written:
        status = main(tokenize_argv(corpus, out))
    assert written[0] > 8_000  # the disk did fill up during the run
    assert status == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("speechtok")]
    assert len(err) == 1 and "No space left on device" in err[0]
    assert not (out / "_index.json").exists()
    assert not temp_files(out)  # the file being written when the disk filled was removed
    for shard in out.rglob("*.parquet"):  # what is visible is complete
        pq.read_table(shard)
    # Space freed: the same command completes and reconciles.
    assert main(tokenize_argv(corpus, out)) == 0
    index = read_index(out)
    assert index["counts"]["input"] == index["counts"]["accepted"] == len(LENGTHS) + 1
    assert len(read_rows(out, "tokens")) == len(LENGTHS) + 1


def test_unwritable_output_folder(corpus, tmp_path):
    """An output folder that cannot be created (its parent is a file; a read-only
    folder would not stop root, which CI may run as)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    out = blocker / "out"
    proc = speechtok(*tokenize_argv(corpus, out))
    assert proc.returncode == 1
    assert_no_traceback(proc)
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("speechtok tokenize: failed:") and "Not a directory" in err[-1]
    assert sum(line.startswith("speechtok") for line in err) == 1
    assert not out.exists() and blocker.read_text() == "x"


def test_unexpected_decoder_exception_is_a_reject(corpus, tmp_path, monkeypatch):
    """A decoder raising something unforeseen on one file (a library bug, not an
    AudioError) costs that file a ``decode_error`` reject, not the job."""
    from tokenizer import audio

    real_prepare = audio.prepare

    def prepare(example, config):
        if example.id == "clip3":
            raise KeyError("libsomething internal state")
        return real_prepare(example, config)

    monkeypatch.setattr(audio, "prepare", prepare)
    index = job.run(tokenize_config(corpus, tmp_path))
    rejects = read_rows(tmp_path, "rejects")
    assert [(r["id"], r["reason"]) for r in rejects] == [("clip3", Reason.DECODE_ERROR)]
    assert "unexpected KeyError" in rejects[0]["detail"]
    assert index.counts == {"input": len(LENGTHS) + 1, "accepted": len(LENGTHS), "rejected": 1}
