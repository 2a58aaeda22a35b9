"""Stratified reservoir: deterministic, order-free, mergeable, capped and balanced."""

from __future__ import annotations

import numpy as np
import pytest

from kmeans.sampling import SamplerConfig, StratifiedReservoir, allocate


def corpus(seed: int = 0):
    """(lang, utt_id, frames); each frame encodes (utterance number, frame index)."""
    rng = np.random.default_rng(seed)
    items = []
    for lang, n_utts, max_len in (("fr", 40, 120), ("sw", 6, 30), ("de", 15, 60)):
        for u in range(n_utts):
            t = int(rng.integers(1, max_len))
            frames = np.zeros((t, 3), dtype=np.float32)
            frames[:, 0] = len(items)
            frames[:, 1] = np.arange(t)
            frames[:, 2] = rng.standard_normal(t)
            items.append((lang, f"{lang}/{u}", frames))
    return items


def sample_of(items, cfg, parts=1, order_seed=None):
    items = list(items)
    if order_seed is not None:
        np.random.default_rng(order_seed).shuffle(items)
    partials = [StratifiedReservoir(cfg) for _ in range(parts)]
    for i, item in enumerate(items):
        partials[i % parts].add(*item)
    return StratifiedReservoir.merge_all(partials).extract()


def test_same_sample_whatever_the_order_and_split():
    cfg = SamplerConfig(sample_frames=150, max_frames_per_utt=20, frames_per_lang=80, seed=3)
    items = corpus()
    reference = sample_of(items, cfg)
    for parts, order_seed in ((3, 1), (7, 2), (1, 5)):
        other = sample_of(items, cfg, parts=parts, order_seed=order_seed)
        np.testing.assert_array_equal(other.frames, reference.frames)
        np.testing.assert_array_equal(other.langs, reference.langs)
    different_seed = sample_of(items, SamplerConfig(**{**cfg.__dict__, "seed": 4}))
    assert not np.array_equal(different_seed.frames, reference.frames)


def test_per_language_shares_joined_equal_the_one_reservoir_sample():
    """fit-codebook samples each language apart, cuts each to its quota, then joins:
    the same frames, labels and counts as one reservoir, and no piece is larger
    than the final sample."""
    cfg = SamplerConfig(sample_frames=150, max_frames_per_utt=20, frames_per_lang=80, seed=3)
    items = corpus()
    reference = sample_of(items, cfg)
    per_lang = {}
    for lang, utt, frames in items:
        per_lang.setdefault(lang, StratifiedReservoir(cfg)).add(lang, utt, frames)
    held = {lang: res.compact().held_frames()[lang] for lang, res in per_lang.items()}
    quota = allocate(held, cfg.sample_frames)
    shares = [res.keep(quota) for res in per_lang.values()]
    assert sum(sum(s.held_frames().values()) for s in shares) == len(reference.frames) == 150
    joined = StratifiedReservoir.merge_all(shares).extract()
    np.testing.assert_array_equal(joined.frames, reference.frames)
    np.testing.assert_array_equal(joined.langs, reference.langs)
    assert joined.per_lang == reference.per_lang
    assert joined.seen_frames == reference.seen_frames
    assert joined.seen_utts == reference.seen_utts


def test_caps_and_balance():
    cfg = SamplerConfig(sample_frames=150, max_frames_per_utt=20, frames_per_lang=80, seed=0)
    items = corpus()
    sample = sample_of(items, cfg)
    # Per-utterance cap: no utterance gives more than 20 frames.
    _, per_utt = np.unique(sample.frames[:, 0], return_counts=True)
    assert per_utt.max() <= 20
    # Frames are real frames of their utterance, never duplicated.
    pairs = {(int(a), int(b)) for a, b in sample.frames[:, :2]}
    assert len(pairs) == len(sample.frames)
    # Balance: sw has fewer capped frames than an even share; fr and de share the rest.
    capped = {lang: 0 for lang in ("fr", "sw", "de")}
    for lang, _, frames in items:
        capped[lang] += min(len(frames), 20)
    assert sample.per_lang["sw"] == min(capped["sw"], 50)
    assert sum(sample.per_lang.values()) == 150
    assert abs(sample.per_lang["fr"] - sample.per_lang["de"]) <= 1
    assert sample.seen_utts == {"de": 15, "fr": 40, "sw": 6}
    assert sample.seen_frames["fr"] == sum(len(f) for lang, _, f in items if lang == "fr")
    assert list(sample.langs).count("fr") == sample.per_lang["fr"]


def test_long_utterance_does_not_dominate():
    cfg = SamplerConfig(sample_frames=100, max_frames_per_utt=10, seed=1)
    res = StratifiedReservoir(cfg)
    res.add("en", "long", np.full((10_000, 2), -1.0, dtype=np.float32))
    for u in range(100):
        res.add("en", f"short{u}", np.full((10, 2), float(u), dtype=np.float32))
    sample = res.extract()
    from_long = int((sample.frames[:, 0] == -1).sum())
    # 10 capped frames of 1010 candidates: ~1 expected; the cap alone allows 10.
    assert from_long <= 5


@pytest.mark.parametrize("capacity", [30, 40_000])
def test_memory_is_bounded_by_capacity(capacity):
    """At most the capacity plus its slack (a quarter of it, at least 4,096
    frames) plus one utterance: 1.25x the sample for large samples."""
    from kmeans.sampling import compaction_slack

    cfg = SamplerConfig(sample_frames=capacity + 20, frames_per_lang=capacity, seed=0)
    res = StratifiedReservoir(cfg)
    for u in range(4 * (capacity + compaction_slack(capacity)) // 170 + 2):
        res.add("fr", str(u), np.ones((170, 4), dtype=np.float32))
        assert res.held_frames()["fr"] <= capacity + compaction_slack(capacity) + 170
    assert compaction_slack(40_000) == 10_000
    assert len(res.extract().frames) == capacity


def test_allocate_water_fills():
    assert allocate({"a": 10, "b": 100, "c": 100}, 100) == {"a": 10, "b": 45, "c": 45}
    assert allocate({"a": 5, "b": 5}, 100) == {"a": 5, "b": 5}
    assert allocate({"a": 50, "b": 50, "c": 50}, 100) == {"a": 34, "b": 33, "c": 33}
    assert allocate({"a": 0, "b": 7}, 3) == {"a": 0, "b": 3}


def test_refuses_mixed_dims_and_configs():
    res = StratifiedReservoir(SamplerConfig(sample_frames=10))
    res.add("fr", "a", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="features"):
        res.add("fr", "b", np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="different configs"):
        res.merge(StratifiedReservoir(SamplerConfig(sample_frames=11)))
    with pytest.raises(ValueError):
        SamplerConfig(sample_frames=0)
