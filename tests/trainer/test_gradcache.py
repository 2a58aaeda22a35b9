"""Gradient cache: the same parameter gradients as the plain full-batch step."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trainer import gradcache
from trainer.configs import TrainConfig
from trainer.data import Batch, ShardLoader
from trainer.train import Trainer, debug_config

REPO = Path(__file__).resolve().parents[2]


def _trainer(shards, out, *, data=None, **overrides) -> Trainer:
    cfg = debug_config(shards, str(out), precision="fp32", device="cpu", **overrides).to_dict()
    cfg["data"].update(data or {})
    return Trainer(TrainConfig.from_dict(cfg))


def _grads(trainer: Trainer, batch) -> tuple[dict, dict]:
    trainer.model.train()
    trainer.model.zero_grad(set_to_none=True)
    out = trainer.backward([batch])
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return grads, out


def _max_rel_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-30)) for k in a)


@pytest.mark.parametrize(
    ("chunk", "layout"), [(1, "padded"), (3, "padded"), (5, "packed"), (4, "varlen")]
)
def test_gradcache_equals_the_full_batch_step(synthetic_shards, tmp_path, chunk, layout):
    shards, _ = synthetic_shards
    data = {"batch_size": 8, "bitext": shards, "bitext_ratio": 0.3}
    plain = _trainer(shards, tmp_path / "plain", data=data)
    cached = _trainer(shards, tmp_path / "cached", data=data, cache_chunk=chunk, layout=layout)
    batch = plain.loader.next_batch()
    assert len(batch.bitext_src) == 3 and len(batch.ids) == 8  # queries from both sources
    g_plain, out_plain = _grads(plain, batch)
    g_cached, out_cached = _grads(cached, batch)
    # Every trained parameter got a gradient, the logit scale and audio rows included.
    trained = {n for n, p in plain.model.named_parameters() if p.requires_grad}
    assert set(g_plain) == trained and "logit_scale" in trained
    assert _max_rel_diff(g_plain, g_cached) < 1e-4
    # The spread-out term is part of the loss that was differentiated.
    assert out_cached["spread_out"] > 0
    assert out_cached["loss"] == pytest.approx(out_plain["loss"], rel=1e-5)
    assert out_cached["loss"] == pytest.approx(
        out_cached["contrastive"] + out_cached["spread_out"], rel=1e-5
    )
    assert out_cached["tokens"] == out_plain["tokens"]


def test_gradcache_replays_dropout_randomness(synthetic_shards, tmp_path, monkeypatch):
    """The recompute sees the random state of the cached pass: same dropout masks."""
    shards, _ = synthetic_shards
    trainer = _trainer(shards, tmp_path / "run", cache_chunk=2)
    for layer in trainer.model.backbone.layers:
        layer.self_attn.attention_dropout = 0.5
    batch = trainer.loader.next_batch()
    trainer.model.train()
    result, _, _ = trainer.cached_backward(batch, check_recompute=True)
    assert result.recompute_max_diff == 0.0
    # Without the replay the second pass draws other masks: the check is not vacuous.
    monkeypatch.setattr(
        gradcache.RandomState, "replay", lambda self, device: contextlib.nullcontext()
    )
    trainer.model.zero_grad(set_to_none=True)
    result, _, _ = trainer.cached_backward(batch, check_recompute=True)
    assert result.recompute_max_diff > 1e-3


def test_split_rows_trims_each_chunk_to_its_width(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    trainer = _trainer(shards, tmp_path / "run")
    enc = trainer.model.encode_speech([[1] * 9, [2] * 2, [3] * 4], ["fr"] * 3)
    chunks = gradcache.split_rows(enc, 2)
    lead = enc.attention_mask[1].sum().item() - 2  # specials + prefix
    assert [c.input_ids.shape for c in chunks] == [(2, lead + 9), (1, lead + 4)]
    assert torch.equal(chunks[1].input_ids[0], enc.input_ids[2, : lead + 4])


def test_ddp_gradcache_equals_the_single_process_full_batch(synthetic_shards, tmp_path):
    """2 ranks x 4 pairs, chunks of 2, negatives gathered across ranks == 8 pairs on one."""
    shards, _ = synthetic_shards
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(REPO / "tests" / "trainer" / "gradcache_worker.py"), shards, str(out), "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [load_file(out / f"grads-{r}.safetensors") for r in (0, 1)]
    assert _max_rel_diff(ranks[0], ranks[1]) == 0.0  # averaged: the same on every rank

    single = _trainer(shards, tmp_path / "single")
    ranks_data = single.config.data  # the workers' data settings (4 pairs per rank)
    parts = [
        ShardLoader(single.rows, ranks_data, rank=r, world_size=2, max_speech_tokens=256,
                    max_text_tokens=64).next_batch()
        for r in (0, 1)
    ]  # fmt: skip
    for r, part in enumerate(parts):
        assert part.ids == json.loads((out / f"batch-{r}.json").read_text())
    both = Batch(
        ids=parts[0].ids + parts[1].ids,
        speech=parts[0].speech + parts[1].speech,
        texts=parts[0].texts + parts[1].texts,
        langs=parts[0].langs + parts[1].langs,
        groups=np.concatenate([parts[0].groups, parts[1].groups]),
    )
    full, _ = _grads(single, both)
    assert _max_rel_diff(full, ranks[0]) < 1e-4


def test_cache_chunk_is_validated_and_resumable(tmp_path):
    with pytest.raises(ValueError, match="cache_chunk"):
        debug_config("shards", str(tmp_path), cache_chunk=0)
    from trainer.train import RESUMABLE_CHANGES

    assert "cache_chunk" in RESUMABLE_CHANGES
