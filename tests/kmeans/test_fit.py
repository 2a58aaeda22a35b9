"""kmeans.fit: cluster recovery, determinism, empty-cluster repair, exact inertia."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import kmeans
from datastore.identity import FeatureIdentity
from kmeans.torch_backend import fit_torch


def blobs(
    n_per: int, centres: np.ndarray, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(centres)), n_per)
    x = centres[labels] + spread * rng.standard_normal((len(labels), centres.shape[1]))
    order = rng.permutation(len(labels))
    return x[order].astype(np.float32), labels[order]


@pytest.fixture(scope="module")
def separated():
    rng = np.random.default_rng(7)
    centres = rng.uniform(-50, 50, size=(8, 16))  # pairwise distances >> spread
    return blobs(150, centres, spread=1.0, seed=1)


def brute_inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    d = ((x.astype(np.float64)[:, None, :] - centroids.astype(np.float64)[None]) ** 2).sum(-1)
    return float(d.min(1).sum())


@pytest.mark.parametrize(
    ("backend", "opts"),
    [
        ("torch", {}),
        ("torch", {"init": "k-means++"}),
        ("sklearn", {"n_init": 3}),
    ],
)
def test_recovers_well_separated_clusters(separated, backend, opts):
    x, truth = separated
    cb = kmeans.fit(x, 8, seed=0, backend=backend, **opts)
    assert cb.k == 8 and cb.dim == 16
    assert adjusted_rand_score(truth, cb.assign(x)) > 0.999
    assert cb.metadata["backend"] == backend
    assert cb.metadata["sample_size"] == len(x)


def test_faiss_backend_wraps_faiss_kmeans():
    pytest.importorskip("faiss")  # the optional extra; installed by `make test`
    x = np.random.default_rng(13).standard_normal((2000, 8)).astype(np.float32)
    cb = kmeans.fit(x, 16, seed=3, backend="faiss", niter=10)
    assert cb.metadata["inertia"] == pytest.approx(brute_inertia(x, cb.centroids), rel=1e-4)
    assert cb.metadata["backend_config"]["niter"] == 10
    again = kmeans.fit(x, 16, seed=3, backend="faiss", niter=10)
    np.testing.assert_array_equal(cb.centroids, again.centroids)


def test_same_seed_same_codebook_and_other_seed_differs():
    x = np.random.default_rng(3).standard_normal((2000, 12)).astype(np.float32)
    a = kmeans.fit(x, 20, seed=5)
    b = kmeans.fit(x, 20, seed=5)
    c = kmeans.fit(x, 20, seed=6)
    assert np.array_equal(a.centroids, b.centroids)
    assert a.sha256 == b.sha256 and a.id == b.id
    assert not np.array_equal(a.centroids, c.centroids)


def test_metadata_inertia_is_exact_for_returned_centroids():
    x = np.random.default_rng(4).standard_normal((1500, 10)).astype(np.float32) + 30.0
    cb = kmeans.fit(x, 16, seed=0, max_iter=7)
    expected = brute_inertia(x, cb.centroids)
    assert cb.metadata["inertia"] == pytest.approx(expected, rel=1e-4)
    assert cb.inertia(x) == pytest.approx(expected, rel=1e-4)
    assert cb.metadata["n_iter"] <= 7
    assert cb.metadata["backend_config"]["max_iter"] == 7


def test_lloyd_history_never_increases_and_stops_on_tol():
    x = np.random.default_rng(8).standard_normal((3000, 8)).astype(np.float32)
    result = fit_torch(x, 25, seed=1, tol=1e-3, max_iter=200)
    history = np.array(result.history)
    assert np.all(np.diff(history) <= 1e-6 * history[:-1])
    assert result.converged and result.n_iter < 200
    assert result.inertia == history[-1]


def test_max_iter_zero_returns_the_initialisation():
    x = np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32)
    init = x[:5] + 0.5
    cb = kmeans.fit(x, 5, init=init, max_iter=0)
    np.testing.assert_array_equal(cb.centroids, init)
    assert cb.metadata["backend_config"]["init"] == "array"


def test_empty_cluster_is_repaired():
    x, _ = blobs(100, np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 1.0, seed=2)
    # Centroid 3 starts far from every point: it wins no point in the first pass.
    init = np.array([[0, 0], [10, 0], [0, 10], [1e4, 1e4]], dtype=np.float32)
    cb = kmeans.fit(x, 4, init=init, max_iter=1)
    counts = np.bincount(cb.assign(x), minlength=4)
    assert counts.min() > 0
    assert np.abs(cb.centroids[3]).max() < 100


def test_duplicate_points_fewer_distinct_than_candidates():
    base = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32)
    x = np.repeat(base, 50, axis=0)
    cb = kmeans.fit(x, 6, seed=0)
    # Every distinct point became a centroid, exactly (fp64 check).
    assert brute_inertia(x, cb.centroids) < 1e-8
    assert len(np.unique(cb.assign(x))) == 6


def test_k_equal_to_n_puts_every_point_on_a_centroid():
    x = np.random.default_rng(2).standard_normal((40, 5)).astype(np.float32)
    cb = kmeans.fit(x, 40, seed=0)
    assert brute_inertia(x, cb.centroids) < 1e-8
    assert cb.metadata["inertia"] == pytest.approx(0.0, abs=1e-3)


def test_input_dtype_and_layout_do_not_change_the_result():
    x = np.random.default_rng(9).standard_normal((800, 6)).astype(np.float32)
    a = kmeans.fit(x, 10, seed=2)
    b = kmeans.fit(np.asfortranarray(x.astype(np.float64)), 10, seed=2)
    np.testing.assert_array_equal(a.centroids, b.centroids)


def test_torch_matches_sklearn_quality():
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((60, 16)) * 3
    x, _ = blobs(50, centres, spread=1.0, seed=12)
    ours = kmeans.fit(x, 32, seed=0)
    theirs = kmeans.fit(x, 32, seed=0, backend="sklearn", n_init=3, max_iter=20)
    assert ours.metadata["inertia"] <= 1.01 * theirs.metadata["inertia"]


def test_bad_arguments_are_refused():
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="at least k rows"):
        kmeans.fit(x, 11)
    with pytest.raises(ValueError, match="unknown k-means backend"):
        kmeans.fit(x, 2, backend="nope")
    with pytest.raises(ValueError, match="unknown option"):
        kmeans.fit(x, 2, n_init=3)
    with pytest.raises(ValueError, match="init must be"):
        kmeans.fit(x, 2, init="kmeans++")
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kmeans.fit(bad, 2)
    with pytest.raises(ValueError, match="2-D"):
        kmeans.fit(x[0], 2)
    assert set(kmeans.available_backends()) >= {"torch", "sklearn", "faiss"}


def test_register_backend_by_decorator():
    @kmeans.register_backend("first-rows-test")
    def first_rows(x, k, *, seed):
        return kmeans.FitResult(centroids=x[:k].copy())

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    cb = kmeans.fit(x, 3, backend="first-rows-test")
    np.testing.assert_array_equal(cb.centroids, x[:3])
    # fit measured the inertia itself: rows 3..5 are 1 step of (2, 2) from row 2.
    assert cb.metadata["inertia"] == pytest.approx(8.0 + 32.0 + 72.0)


@pytest.mark.gpu
def test_cuda_fit_and_assign_match_cpu():
    x, truth = blobs(200, np.random.default_rng(5).uniform(-40, 40, (10, 32)), 1.0, seed=6)
    cb = kmeans.fit(x, 10, seed=0, device="cuda")
    assert adjusted_rand_score(truth, cb.assign(x, device="cuda")) > 0.999
    np.testing.assert_array_equal(cb.assign(x, device="cuda"), cb.assign(x))
    assert cb.inertia(x, device="cuda") == pytest.approx(cb.inertia(x), rel=1e-4)


def test_threaded_pass_matches_plain_pass_and_restores_threads():
    import torch

    from kmeans.kernels import CentroidTable, assign_pass

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 16, generator=gen)
    table = CentroidTable(torch.randn(40, 16, generator=gen), x.mean(0))
    results = []
    threads_before = torch.get_num_threads()
    for workers in (1, 3):
        labels = torch.empty(5000, dtype=torch.int64)
        scores = torch.empty(5000)
        sums = torch.zeros(40, 16)
        assign_pass(x, table, 256, labels, scores, sums, workers=workers)
        results.append((labels, scores, sums))
    assert torch.get_num_threads() == threads_before
    (l1, s1, sum1), (l3, s3, sum3) = results
    assert torch.equal(l1, l3)
    torch.testing.assert_close(s1, s3)
    torch.testing.assert_close(sum1, sum3, rtol=1e-5, atol=1e-4)
    expected = torch.zeros(40, 16).index_add_(0, l1, x)
    torch.testing.assert_close(sum1, expected, rtol=1e-5, atol=1e-4)


def test_sklearn_presets_follow_fairseq():
    """speech2unit's settings are the defaults; HuBERT's are a preset."""
    from kmeans.sklearn_backend import HUBERT_SETTINGS, SklearnKMeansConfig

    default = SklearnKMeansConfig()
    assert (default.reassignment_ratio, default.max_iter, default.n_init) == (0.5, 150, 20)
    assert HUBERT_SETTINGS == {"max_iter": 100, "reassignment_ratio": 0.0}


def test_fit_frame_sample_ties_the_codebook_to_its_features():
    from kmeans.api import fit_frame_sample
    from kmeans.sampling import FrameSample

    frames = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    sample = FrameSample(
        frames=frames,
        langs=np.asarray(["fr"] * 64),
        per_lang={"fr": 64},
        seen_frames={"fr": 100},
        seen_utts={"fr": 5},
    )
    identity = FeatureIdentity(encoder="mfcc", layer=0, mode=None, frame_rate=100.0)
    cb = fit_frame_sample(sample, 4, identity=identity, downsample=2, max_frames_per_utt=50)
    meta = cb.metadata
    assert (meta["encoder"], meta["layer"], meta["frame_rate"]) == ("mfcc", 0, 50.0)
    assert meta["encoder_frame_rate"] == 100.0 and meta["seen_utterances"] == {"fr": 5}
    assert cb.k == 4 and cb.dim == 8
    assert fit_frame_sample(sample, 65, identity=identity) is None  # fewer frames than k
