"""Codebook: brute-force-exact assignment, save/load round trip, tamper refusal."""

from __future__ import annotations

import copy
import hashlib
import io as stdio
import json
import os
import re

import numpy as np
import pytest

from kmeans import Codebook, CodebookIntegrityError


def brute(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ((x.astype(np.float64)[:, None, :] - c.astype(np.float64)[None]) ** 2).sum(-1)
    return d.argmin(1), d.min(1)


@pytest.fixture
def codebook():
    rng = np.random.default_rng(0)
    return Codebook(rng.standard_normal((16, 8)).astype(np.float32))


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_assign_equals_brute_force_argmin(offset):
    rng = np.random.default_rng(1)
    centroids = (rng.standard_normal((50, 24)) + offset).astype(np.float32)
    x = (rng.standard_normal((3000, 24)) + offset).astype(np.float32)
    cb = Codebook(centroids)
    labels, dist = brute(x, centroids)
    got = cb.assign(x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, labels)
    # A chunk size that does not divide n changes nothing.
    np.testing.assert_array_equal(cb.assign(x, chunk_size=7), labels)
    np.testing.assert_array_equal(cb.assign(x, chunk_size=64, workers=3), labels)
    assert cb.inertia(x) == pytest.approx(dist.sum(), rel=1e-4)
    _, sq = cb.nearest(x)
    np.testing.assert_allclose(sq, dist, rtol=1e-3, atol=1e-2 * (1 + offset))


def test_assign_checks_shape(codebook):
    with pytest.raises(ValueError, match="features per row"):
        codebook.assign(np.zeros((3, 9), dtype=np.float32))
    assert codebook.assign(np.zeros((0, 8), dtype=np.float32)).shape == (0,)


def test_id_names_origin_and_hash(codebook):
    assert codebook.id.startswith("unknown-L-1-k16-")
    named = codebook.with_metadata(
        encoder="whisper-base", layer=3, frame_rate=50.0, mode="unpadded"
    )
    expected_sha = hashlib.sha256(codebook.centroids.astype("<f4").tobytes()).hexdigest()
    assert named.sha256 == expected_sha
    assert re.fullmatch(r"whisper-base-L3-k16-[0-9a-f]{8}", named.id)
    assert named.id.endswith(expected_sha[:8])
    # with_metadata returns a new codebook; the old one is unchanged.
    assert codebook.metadata["encoder"] == "unknown"
    assert named.metadata["mode"] == "unpadded"
    with pytest.raises(ValueError, match="computed from the centroids"):
        codebook.with_metadata(sha256="0" * 64)
    with pytest.raises(ValueError, match="JSON"):
        codebook.with_metadata(extra=object())
    with pytest.raises(ValueError, match="read-only"):
        codebook.centroids[0, 0] = 1.0


def test_save_load_round_trip(tmp_path, codebook):
    cb = codebook.with_metadata(encoder="mfcc", layer=0, frame_rate=100.0, seed=4, inertia=1.5)
    folder = str(tmp_path / "cb")
    cb.save(folder)
    assert sorted(os.listdir(folder)) == ["centroids.npy", "codebook.json"]
    meta = json.loads((tmp_path / "cb" / "codebook.json").read_text())
    assert meta["k"] == 16 and meta["dim"] == 8 and meta["sha256"] == cb.sha256
    assert meta["id"] == cb.id and meta["frame_rate"] == 100.0
    loaded = Codebook.load(folder)
    assert loaded == cb
    assert loaded.id == cb.id
    np.testing.assert_array_equal(loaded.centroids, cb.centroids)
    x = np.random.default_rng(2).standard_normal((100, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.assign(x), cb.assign(x))
    # The Beam model handler pickles codebooks: state round-trips without caches.
    clone = copy.deepcopy(loaded)
    assert clone == loaded and np.array_equal(clone.assign(x), cb.assign(x))


def test_load_refuses_tampered_centroids(tmp_path, codebook):
    folder = tmp_path / "cb"
    codebook.save(str(folder))
    raw = bytearray((folder / "centroids.npy").read_bytes())
    raw[-3] ^= 0x01  # one bit of one centroid value
    (folder / "centroids.npy").write_bytes(bytes(raw))
    with pytest.raises(CodebookIntegrityError, match="sha256"):
        Codebook.load(str(folder))


def test_load_refuses_edited_json(tmp_path, codebook):
    folder = tmp_path / "cb"
    codebook.save(str(folder))
    meta_path = folder / "codebook.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "f" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CodebookIntegrityError, match="does not match"):
        Codebook.load(str(folder))
    meta["sha256"], meta["k"] = codebook.sha256, 15
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CodebookIntegrityError, match="shape"):
        Codebook.load(str(folder))


def test_load_never_unpickles(tmp_path, codebook):
    folder = tmp_path / "cb"
    codebook.save(str(folder))
    buf = stdio.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    (folder / "centroids.npy").write_bytes(buf.getvalue())
    with pytest.raises(CodebookIntegrityError, match=r"not a plain \.npy"):
        Codebook.load(str(folder))


def test_load_refuses_wrong_dtype_and_missing_folder(tmp_path, codebook):
    folder = tmp_path / "cb"
    codebook.save(str(folder))
    buf = stdio.BytesIO()
    np.save(buf, codebook.centroids.astype(np.float64))
    (folder / "centroids.npy").write_bytes(buf.getvalue())
    with pytest.raises(CodebookIntegrityError, match="float32"):
        Codebook.load(str(folder))
    with pytest.raises(FileNotFoundError, match="not a codebook folder"):
        Codebook.load(str(tmp_path / "nowhere"))


def test_constructor_validates():
    with pytest.raises(ValueError, match="NaN"):
        Codebook(np.array([[np.nan, 0.0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[k, dim\]"):
        Codebook(np.zeros(4, dtype=np.float32))


@pytest.fixture
def gcs_bucket(monkeypatch):
    """A local GCS emulator (no network): ``gs://`` paths go through Beam's GCS filesystem."""
    import socket

    server_mod = pytest.importorskip("gcp_storage_emulator.server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = server_mod.create_server("127.0.0.1", port, in_memory=True, default_bucket="cbtest")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    yield "gs://cbtest"
    server.stop()


def test_gcs_round_trip_and_tamper_refusal(gcs_bucket, codebook):
    from datastore import storage

    folder = f"{gcs_bucket}/codebooks/mfcc-k16"
    cb = codebook.with_metadata(encoder="mfcc", layer=0)
    cb.save(folder)
    assert Codebook.load(folder) == cb
    buf = stdio.BytesIO()
    np.save(buf, cb.centroids + np.float32(1e-3))
    storage.write_bytes(f"{folder}/centroids.npy", buf.getvalue())
    with pytest.raises(CodebookIntegrityError, match="sha256"):
        Codebook.load(folder)
