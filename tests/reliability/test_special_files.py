"""Special files named as audio: only regular files are audio. A FIFO (its
reader waits for a writer forever), a character device (``/dev/zero`` never
ends), a socket and a directory are ``not_a_file`` rejects at once, through
the real CLI, and no read goes past ``max_bytes`` whatever size a file reports.

(The FIFO is also in the catalogue, in every layout: test_bad_inputs.py.)
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from datastore import storage
from datastore.records import AudioExample, Reason, Reject
from kmeans import Codebook
from tests.reliability.catalogue import SR, Expected, encoded, tone
from tests.reliability.helpers import (
    assert_index_reconciles,
    assert_no_traceback,
    assert_rejects_match,
    read_rows,
    speechtok,
)
from tokenizer import audio

MEMORY_LIMIT = 4 << 30  # the job needs < 1 GiB of heap; reading /dev/zero does not stop


def _mknod_zero(path: Path) -> bool:
    """A character device like /dev/zero inside the corpus (needs CAP_MKNOD)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))
    except (PermissionError, OSError):
        return False
    return True


def _unix_socket(folder: Path, name: str) -> None:
    """A socket file (bound through a relative name: socket paths are short)."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(name)
    finally:
        os.chdir(cwd)


@pytest.fixture
def corpus(tmp_path):
    """A JSONL corpus: one good clip and every kind of special file; returns
    ``(manifest, codebook, special ids)``."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "good.wav").write_bytes(encoded(tone(1.0, SR), SR, "WAV", "PCM_16"))
    os.mkfifo(root / "fifo.wav")
    _unix_socket(root, "socket.wav")
    (root / "folder.wav").mkdir()
    special = ["fifo", "socket", "folder"]
    if _mknod_zero(root / "zero.wav"):
        special.append("zero")
    lines = [
        {"id": i, "audio": f"{i}.wav", "text": f"text {i}", "lang": "fr", "split": "test"}
        for i in ["good", *special]
    ]
    (root / "manifest.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    x = np.random.default_rng(0).standard_normal((8, 39)).astype(np.float32)
    cb = Codebook(x).with_metadata(encoder="mfcc", layer=0, mode=None, frame_rate=50.0)
    cb.save(str(tmp_path / "cb"))
    return root / "manifest.jsonl", tmp_path / "cb", special


def test_special_files_are_rejected_through_the_cli(corpus, tmp_path):
    manifest, codebook, special = corpus
    if "zero" not in special:
        pytest.skip("cannot create a device node here (needs CAP_MKNOD): ran without it")
    out = tmp_path / "out"
    proc = speechtok(
        "tokenize", "--format", "jsonl", "--input", manifest, "--encoder", "mfcc",
        "--codebook", codebook, "--out", out,
        timeout=120, max_memory=MEMORY_LIMIT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_traceback(proc)
    expected = [Expected(Reason.NOT_A_FILE, name, id=name) for name in special]
    rejects = read_rows(out, "rejects")
    assert_rejects_match(rejects, expected)
    assert_index_reconciles(out, 1 + len(special), 1, expected)
    assert [r["id"] for r in read_rows(out, "tokens")] == ["good"]
    details = {r["id"]: r["detail"] for r in rejects}
    assert "FIFO" in details["fifo"] and "character device" in details["zero"]
    assert "directory" in details["folder"]


def _prepare_within(example: AudioExample, config: audio.AudioConfig, seconds: float):
    """``audio.prepare`` in a thread: a reader blocked on a FIFO shows as a timeout."""
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(out=audio.prepare(example, config)), daemon=True
    )
    worker.start()
    worker.join(seconds)
    return result.get("out", "still blocked")


def _example(uri: str) -> AudioExample:
    return AudioExample(id="x", uri=uri, text="t", lang="fr", split="test", corpus="c")


def test_each_kind_is_refused_without_blocking(corpus):
    manifest, _, special = corpus
    for name in special:
        path = str(manifest.parent / f"{name}.wav")
        got = _prepare_within(_example(path), audio.AudioConfig(), 5.0)
        if got == "still blocked":  # unblock the reader of the FIFO before failing
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        assert isinstance(got, Reject) and got.reason == Reason.NOT_A_FILE, (name, got)
    got = _prepare_within(_example("/dev/zero"), audio.AudioConfig(), 5.0)
    assert isinstance(got, Reject) and got.reason == Reason.NOT_A_FILE
    assert got.detail == "/dev/zero is a character device, not a regular file"


def test_reads_stop_at_max_bytes_whatever_the_size_claims():
    """/proc files are regular files that report 0 bytes yet hold data: the
    size cannot be trusted, the read itself is bounded."""
    maps = "/proc/self/maps"
    if not os.path.exists(maps):
        pytest.skip("no /proc here")
    assert os.stat(maps).st_size == 0 and len(storage.read_bounded(maps, 1 << 24)) > 64
    with pytest.raises(storage.FileTooLargeError):
        storage.read_bounded(maps, 64)
    # resolved as a reader would (/proc/self is a symlink to this process's folder)
    rej = audio.prepare(_example(storage.resolve_under("/", maps)), audio.AudioConfig(max_bytes=64))
    assert isinstance(rej, Reject) and rej.reason == Reason.TOO_LONG
    assert "max_bytes 64" in rej.detail
