"""Token post-processing invariants: dedup and downsampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans import Codebook
from kmeans.postprocess import (
    PostprocessConfig,
    dedup,
    downsample_frames,
    downsample_tokens,
    expand,
    frames_to_tokens,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4), max_size=60))
def test_dedup_invariants(values):
    tokens = np.array(values, dtype=np.int64)
    out, durations = dedup(tokens)
    assert int(durations.sum()) == len(tokens)
    assert np.all(durations >= 1)
    assert len(out) == len(durations)
    assert not np.any(out[1:] == out[:-1])
    np.testing.assert_array_equal(expand(out, durations), tokens)


def test_dedup_example_and_dtype():
    out, durations = dedup(np.array([5, 5, 7, 5, 5, 5], dtype=np.int16))
    assert out.tolist() == [5, 7, 5] and durations.tolist() == [2, 1, 3]
    assert out.dtype == np.int16 and durations.dtype == np.int64
    with pytest.raises(ValueError):
        dedup(np.zeros((2, 2)))


@given(st.integers(min_value=0, max_value=23), st.integers(min_value=1, max_value=5))
def test_downsample_frames_averages_groups(n, factor):
    frames = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    out = downsample_frames(frames, factor)
    assert out.shape == (-(-n // factor), 3)
    for i in range(out.shape[0]):
        np.testing.assert_allclose(out[i], frames[i * factor : (i + 1) * factor].mean(0))
    assert len(downsample_tokens(np.arange(n), factor)) == out.shape[0]


def test_frames_to_tokens_follows_codebook_metadata():
    rng = np.random.default_rng(0)
    cb = Codebook(rng.standard_normal((6, 4)).astype(np.float32)).with_metadata(
        **PostprocessConfig(downsample=2).to_metadata()
    )
    feats = np.repeat(rng.standard_normal((5, 4)).astype(np.float32), 4, axis=0)  # runs of 4
    result = frames_to_tokens(cb, feats)
    np.testing.assert_array_equal(result.tokens, cb.assign(downsample_frames(feats, 2)))
    assert result.durations is None and len(result.tokens) == 10
    deduped = frames_to_tokens(cb, feats, dedup=True)
    assert int(deduped.durations.sum()) == 10
    np.testing.assert_array_equal(expand(*deduped), result.tokens)
    strided = frames_to_tokens(
        cb, feats, config=PostprocessConfig(downsample=2, downsample_mode="stride")
    )
    np.testing.assert_array_equal(strided.tokens, cb.assign(feats)[::2])


def test_config_validates_and_round_trips():
    cfg = PostprocessConfig(downsample=2, dedup=True)
    assert PostprocessConfig.from_metadata(cfg.to_metadata()) == cfg
    with pytest.raises(ValueError):
        PostprocessConfig(downsample=0)
    with pytest.raises(ValueError):
        PostprocessConfig(downsample_mode="max")
