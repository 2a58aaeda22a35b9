"""Packed sequences: the same embeddings as padded rows, with fewer slots."""

import numpy as np
import pytest
import torch

from trainer import packing
from trainer.configs import DualEncoderConfig, TrainConfig
from trainer.model import Encoded, build_model
from trainer.train import Trainer, debug_config

# The debug backbone's sliding window is 64: several of these cross it.
LENGTHS = (5, 80, 150, 3, 66, 120, 1)


def test_best_fit_rows_fills_the_tightest_row():
    assert packing.best_fit_rows([5, 3, 4, 2, 6], 6) == [[4], [0], [2, 3], [1]]
    assert packing.best_fit_rows([2, 2, 2], 6) == [[0, 1, 2]]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_embeddings_equal_padded(bidirectional):
    model = build_model(DualEncoderConfig(llm="debug", bidirectional=bidirectional), 100)
    model.eval()
    rng = np.random.default_rng(0)
    tokens = [rng.integers(0, 100, n).tolist() for n in LENGTHS]
    enc = model.encode_speech(tokens, ["fr"] * len(tokens))
    rows = packing.pack(enc, layout="rows", pad_id=model.pad_id)
    flat = packing.pack(enc, layout="flat", multiple=64, pad_id=model.pad_id)
    assert rows.input_ids.shape[1] == enc.input_ids.shape[1]
    assert rows.n_slots < enc.input_ids.numel()  # 4 rows instead of 7
    assert flat.n_slots == packing.round_up(enc.n_tokens, 64)
    with torch.no_grad():
        padded = model.embed(enc)
        assert (model.embed(rows) - padded).abs().max() < 1e-5
        # Masks matter: one segment per row lets neighbours see each other.
        leaky = rows._replace(segments=torch.zeros_like(rows.segments))
        assert (model.embed(leaky) - padded).abs().max() > 1e-2
        packing.use_varlen_attention(model.backbone)  # CPU: the per-sequence reference
        assert (model.embed(flat) - padded).abs().max() < 1e-5
        assert (model.embed(enc) - padded).abs().max() < 1e-6  # padded input keeps SDPA


def test_pack_positions_restart_and_pad_tail_is_its_own_segment():
    enc = Encoded(
        torch.tensor([[7, 8, 9], [4, 0, 0]]),
        torch.tensor([[1, 1, 1], [1, 0, 0]]),
        torch.tensor([[0, 1, 1], [1, 0, 0]]),
    )
    assert packing.pad_to_multiple(enc, 4, 0).input_ids.tolist() == [[7, 8, 9, 0], [4, 0, 0, 0]]
    flat = packing.pack(enc, layout="flat", multiple=8)
    assert flat.input_ids.tolist() == [[7, 8, 9, 4, 0, 0, 0, 0]]
    assert flat.position_ids.tolist() == [[0, 1, 2, 0, 0, 1, 2, 3]]
    assert flat.segments.tolist() == [[0, 0, 0, 1, -1, -1, -1, -1]]
    assert flat.cu_seqlens.tolist() == [0, 3, 4, 8]
    assert flat.index.tolist() == [[0, 1, 2], [3, 0, 0]]


def test_varlen_window_follows_gemma_rules():
    causal = type("M", (), {"is_causal": True})()
    bidir = type("M", (), {"is_causal": False})()
    assert packing._window(causal, None, 100) == (-1, 0)
    assert packing._window(bidir, None, 100) == (-1, -1)
    assert packing._window(causal, 64, 100) == (63, 0)  # Gemma: q - k < window
    assert packing._window(bidir, 64, 100) == (63, 63)  # |q - k| < window
    assert packing._window(causal, 512, 100) == (-1, 0)  # shorter than the window


def test_packing_needs_per_layer_type_masks():
    class Config:
        layer_types = None

    with pytest.raises(ValueError, match="layer_types"):
        packing.check_packable(Config())


def test_packed_training_processes_fewer_slots(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards

    def run(layout):
        cfg = debug_config(shards, str(tmp_path / layout), precision="fp32", layout=layout)
        trainer = Trainer(TrainConfig.from_dict(cfg.to_dict()))
        metrics = [trainer.train_step([trainer.loader.next_batch()]) for _ in range(3)]
        trainer.close()
        return metrics

    padded, packed = run("padded"), run("packed")
    for a, b in zip(padded, packed, strict=True):
        assert a["tokens"] == b["tokens"] and b["padded_tokens"] <= a["padded_tokens"]
        assert b["padded_tokens"] >= b["tokens"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
