"""Importing a fairseq-style joblib k-means model only behind --trust-pickle."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans

from kmeans import Codebook
from kmeans.import_pickle import UntrustedPickleError, import_sklearn_kmeans, main


@pytest.fixture
def fairseq_model(tmp_path):
    x = np.random.default_rng(0).standard_normal((600, 6)).astype(np.float32)
    model = MiniBatchKMeans(n_clusters=12, n_init=1, batch_size=256, random_state=0).fit(x)
    path = tmp_path / "km.bin"
    joblib.dump(model, path)  # what fairseq's learn_kmeans.py writes
    return str(path), model, x


def test_refuses_without_trust(fairseq_model):
    path, _, _ = fairseq_model
    with pytest.raises(UntrustedPickleError, match="trust_pickle"):
        import_sklearn_kmeans(path)


def test_cli_refuses_without_flag(fairseq_model, tmp_path, capsys):
    path, _, _ = fairseq_model
    out = tmp_path / "cb"
    assert main([path, "--out", str(out)]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert not out.exists()


def test_cli_converts_once_to_pickle_free_codebook(fairseq_model, tmp_path):
    path, model, x = fairseq_model
    out = tmp_path / "cb"
    status = main(
        [
            path,
            "--out",
            str(out),
            "--trust-pickle",
            "--encoder",
            "hubert",
            "--layer",
            "6",
            "--frame-rate",
            "50",
        ]
    )
    assert status == 0
    cb = Codebook.load(str(out))
    np.testing.assert_array_equal(cb.centroids, model.cluster_centers_.astype(np.float32))
    np.testing.assert_array_equal(cb.assign(x), model.predict(x))
    meta = cb.metadata
    assert meta["backend"] == "imported" and meta["frame_rate"] == 50.0
    assert meta["imported_class"].endswith("MiniBatchKMeans")
    assert cb.id.startswith("hubert-L6-k12-")


def test_rejects_objects_without_centroids(tmp_path):
    path = tmp_path / "not_kmeans.bin"
    joblib.dump({"weights": [1, 2, 3]}, path)
    with pytest.raises(ValueError, match="cluster_centers_"):
        import_sklearn_kmeans(str(path), trust_pickle=True)
