"""Refusals that came late or cryptic: a ``.npy`` whose header claims far more
data than the file holds (was ``MemoryError: Unable to allocate 581 GiB``), and
a pickled ``pytorch_model.bin`` refused by ``weights_only`` (was only "Check
the documentation of torch.load..."). Each is now one line that says what is
wrong."""

from __future__ import annotations

import io as stdio
import json
import os

import numpy as np
import pytest

from datastore import storage
from kmeans import Codebook
from kmeans.codebook import CodebookIntegrityError
from tests.reliability.catalogue import SR, encoded, tone
from tests.reliability.helpers import assert_no_traceback, speechtok

HUGE_SHAPE = (4_000_000_000, 39)  # 581 GiB of float32


def lying_npy(shape=HUGE_SHAPE, rows_present: int = 8) -> bytes:
    """A valid .npy header claiming ``shape``, followed by only a few rows of data."""
    buf = stdio.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(np.zeros((rows_present, shape[1]), "<f4").tobytes())
    return buf.getvalue()


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "a.wav").write_bytes(encoded(tone(1.0, SR), SR, "WAV", "PCM_16"))
    line = {"id": "a", "audio": "a.wav", "text": "x", "lang": "fr", "split": "test"}
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n")
    return tmp_path / "m.jsonl"


def test_npy_header_is_checked_against_the_file_size(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(lying_npy())
    with pytest.raises(
        storage.NpyIntegrityError, match=r"header claims float32 \(4000000000, 39\)"
    ):
        storage.read_npy(str(path))
    path.write_bytes(lying_npy((4, 39), rows_present=8))  # more data than claimed: refused too
    with pytest.raises(storage.NpyIntegrityError, match="holds 1248 bytes"):
        storage.read_npy(str(path))
    storage.write_npy(str(path), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert storage.read_npy(str(path)).tolist() == [[0, 1, 2], [3, 4, 5]]  # a genuine one loads


def test_lying_codebook_is_an_integrity_error_through_the_cli(tmp_path, manifest):
    folder = tmp_path / "cb"
    x = np.random.default_rng(0).standard_normal((8, 39)).astype(np.float32)
    Codebook(x).with_metadata(encoder="mfcc", layer=0, mode=None, frame_rate=50.0).save(str(folder))
    (folder / "centroids.npy").write_bytes(lying_npy())
    with pytest.raises(CodebookIntegrityError, match="header claims"):
        Codebook.load(str(folder))
    proc = speechtok(
        "tokenize", "--format", "jsonl", "--input", manifest, "--encoder", "mfcc",
        "--codebook", folder, "--out", tmp_path / "out",
        timeout=120, max_memory=4 << 30,
    )  # fmt: skip
    assert proc.returncode != 0
    assert_no_traceback(proc)
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "centroids.npy" in err[0] and "header claims" in err[0], err
    assert "MemoryError" not in err[0]
    assert not (tmp_path / "out").exists()


class Payload:
    """Unpickling this creates a folder: if the folder exists, the pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_model_file_is_refused_in_one_line(tmp_path, manifest):
    import torch

    from tests.tokenizer.encoders.helpers import save_tiny_wav2vec2

    folder = tmp_path / "w2v"
    save_tiny_wav2vec2(str(folder))
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"weights": Payload(marker)}, str(folder / "pytorch_model.bin"))
    # A codebook that fits the model (32-dim features, layer 1): the refusal must
    # come from loading the weights, not from the launcher's dimension check.
    x = np.zeros((4, 32), np.float32)
    Codebook(x).with_metadata(encoder=f"hf:{folder}", layer=1, mode=None, frame_rate=50.0).save(
        str(tmp_path / "cb")
    )
    proc = speechtok(
        "tokenize", "--format", "jsonl", "--input", manifest, "--encoder", f"hf:{folder}",
        "--codebook", tmp_path / "cb", "--out", tmp_path / "out", timeout=180,
    )  # fmt: skip
    assert proc.returncode != 0
    assert_no_traceback(proc)
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr[-3000:]
    assert "refused a pickled PyTorch checkpoint" in err[0] and "model.safetensors" in err[0]
    assert "Check the documentation of torch.load" not in err[0]
    assert not marker.exists()
