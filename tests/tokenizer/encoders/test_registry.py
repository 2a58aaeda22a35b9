import json

import numpy as np
import pytest

from datastore.identity import FeatureIdentity
from tokenizer.encoders import Encoder, available_encoders, build_encoder, register_encoder
from tokenizer.encoders.base import EncoderConfig


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"layer": -1},
        {"layer": 1.5},
        {"layer": True},
        {"device": "gpu"},
        {"device": "cuda:x"},
        {"dtype": "float64"},
        {"dtype": "float16"},  # fp16 needs CUDA
        {"max_batch_seconds": 0},
        {"max_batch_seconds": float("inf")},
        {"mode": "streaming"},
        {"threads": 0},
    ],
)
def test_config_rejects_bad_fields(bad):
    fields = {"name": "mfcc", **bad}
    with pytest.raises(ValueError):
        EncoderConfig(**fields)


def test_config_is_frozen_and_keyword_only():
    config = EncoderConfig(name="mfcc", device="cuda:1", dtype="float16", mode="padded")
    with pytest.raises(AttributeError):
        config.layer = 3
    with pytest.raises(TypeError):
        EncoderConfig("mfcc")


def test_registry_lists_the_builtin_encoders():
    assert {"mfcc", "whisper-base", "hf:"} <= set(available_encoders())


def test_build_encoder_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown encoder 'wav2vec9'"):
        build_encoder("wav2vec9")
    with pytest.raises(ValueError, match="needs a source"):
        build_encoder("hf:")
    with pytest.raises(ValueError, match="not found"):
        build_encoder("hf:/no/such/model/dir")
    with pytest.raises(ValueError, match="layer"):
        build_encoder("mfcc", layer=2)
    with pytest.raises(ValueError, match="mode"):
        build_encoder("mfcc", mode="padded")


def test_none_overrides_mean_defaults():
    enc = build_encoder("mfcc", layer=None, mode=None, max_batch_seconds=None)
    assert enc.config.max_batch_seconds == EncoderConfig(name="x").max_batch_seconds
    identity = enc.identity().as_dict()
    assert json.loads(json.dumps(identity)) == identity
    assert identity == {"encoder": "mfcc", "layer": 0, "mode": None, "frame_rate": 50.0, "dim": 39}
    assert FeatureIdentity.from_dict(identity) == enc.identity()


class _Recorder(Encoder):
    """Frames = samples // 100; records every batch it is given."""

    def __init__(self, config, cap=None):
        self.config = config
        self.frame_rate = 160.0
        self.dim = 2
        self.batches = []
        self.cap = cap

    def n_frames(self, n_samples):
        return self._check_n_samples(n_samples) // 100

    def _max_batch_size(self):
        return self.cap

    def _encode_batch(self, clips):
        self.batches.append([len(c) for c in clips])
        return [
            np.stack([np.arange(len(c) // 100), np.full(len(c) // 100, len(c))], 1) for c in clips
        ]


def test_register_encoder_decorator_builds_through_the_registry():
    register_encoder("recorder-test")(_Recorder)
    try:
        enc = build_encoder("recorder-test", max_batch_seconds=1.0)
        assert isinstance(enc, _Recorder) and enc.config.name == "recorder-test"
        with pytest.raises(ValueError, match="already registered"):
            register_encoder("recorder-test")(build_encoder)
    finally:
        from tokenizer.encoders import _REGISTRY

        _REGISTRY.pop("recorder-test")


def test_batches_by_padded_seconds_longest_first_and_keeps_input_order():
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(0, 40000, size=40)] + [0, 50, 99, 100]
    enc = _Recorder(EncoderConfig(name="rec", max_batch_seconds=4.0))
    out = enc.encode([np.zeros(n, np.float32) for n in lengths])
    # Every clip comes back in its own slot with exactly n_frames rows.
    for n, feats in zip(lengths, out, strict=True):
        assert feats.shape == (n // 100, 2) and feats.dtype == np.float32
        if n >= 100:
            assert feats[0, 1] == n
    # Clips without frames never reach the model; the others exactly once.
    seen = sorted(n for batch in enc.batches for n in batch)
    assert seen == sorted(n for n in lengths if n >= 100)
    flat = [n for batch in enc.batches for n in batch]
    assert flat == sorted(flat, reverse=True)
    for batch in enc.batches:
        assert len(batch) == 1 or len(batch) * max(batch) / 16000 <= 4.0


def test_batches_close_before_padding_dominates():
    enc = _Recorder(EncoderConfig(name="rec", max_batch_seconds=100.0))
    enc.encode([np.zeros(n, np.float32) for n in (2000, 10000, 1900, 9000, 8500)])
    # 10000 + 9000 + 8500 pad 11% -> one batch; 2000 next to them would pad 150%.
    assert enc.batches == [[10000, 9000, 8500], [2000, 1900]]


def test_threads_apply_process_wide():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        register_encoder("threads-test")(_Recorder)
        build_encoder("threads-test", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        from tokenizer.encoders import _REGISTRY

        _REGISTRY.pop("threads-test", None)


def test_batch_cap_and_oversized_clip():
    enc = _Recorder(EncoderConfig(name="rec", max_batch_seconds=1.0), cap=2)
    enc.encode([np.zeros(n, np.float32) for n in (48000, 200, 300, 400, 500)])
    assert enc.batches == [[48000], [500, 400], [300, 200]]


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 100), np.float32), np.array([0.0, np.nan]), np.arange(10)]
)
def test_encode_rejects_bad_waveforms(bad):
    enc = build_encoder("mfcc")
    with pytest.raises(ValueError, match="waveform 1"):
        enc.encode([np.zeros(100, np.float32), bad])
