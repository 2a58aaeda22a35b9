"""Lean RMSNorms and activation checkpointing: the same outputs and gradients, less held."""

import copy

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from tests.trainer.test_gradcache import _grads, _max_rel_diff, _trainer
from trainer.activation_memory import use_lean_norms


def _norm_pair(dim=48):
    own = Gemma3RMSNorm(dim)
    with torch.no_grad():
        own.weight.normal_(0, 0.5)  # Gemma stores w with 1 + w applied: not all zeros
    lean = copy.deepcopy(own)
    return own, lean


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_norm_gives_gemmas_output_and_gradients(dtype):
    own, lean = _norm_pair()
    assert use_lean_norms(lean) == 1 and use_lean_norms(own.__class__(4)) == 1
    x = torch.randn(3, 7, 48, dtype=dtype)
    upstream = torch.randn(3, 7, 48, dtype=dtype)
    outs, grads = [], []
    for module in (own, lean):
        xi = x.clone().requires_grad_(True)
        y = module(xi)
        (y.float() * upstream.float()).sum().backward()
        outs.append(y)
        grads.append((xi.grad, module.weight.grad))
    assert outs[1].dtype == outs[0].dtype == dtype
    assert torch.equal(outs[1], outs[0])  # the forward is the same arithmetic
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for got, want in zip(grads[1], grads[0], strict=True):
        assert got.dtype == want.dtype
        assert torch.allclose(got.float(), want.float(), rtol=tol, atol=tol * want.abs().max())


def _held_after_forward(module, x) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = module(x)
    held = sum(e.self_cpu_memory_usage for e in prof.key_averages())
    del y
    return held


def test_lean_norm_holds_less_for_the_backward_pass():
    own, lean = _norm_pair(dim=512)
    use_lean_norms(lean)
    x = torch.randn(64, 128, 512, dtype=torch.bfloat16, requires_grad=True)
    held_own, held_lean = _held_after_forward(own, x), _held_after_forward(lean, x)
    size = x.numel()
    # Gemma's: the fp32 upcast and the fp32 normalised copy (8 bytes an element) + the
    # bf16 output; lean: the output only (x is the caller's, 1/rms is one float a row).
    assert held_own >= 9 * size and held_lean <= 2.1 * size


def test_a_norm_with_another_formula_keeps_its_own_forward():
    llama = LlamaRMSNorm(32)  # w * x, not (1 + w) * x: the lean one would change it
    assert use_lean_norms(llama) == 0 and "forward" not in vars(llama)


def test_training_backbone_has_lean_norms(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    trainer = _trainer(shards, tmp_path / "run")
    norms = [m for m in trainer.model.backbone.modules() if isinstance(m, Gemma3RMSNorm)]
    assert norms and all("forward" in vars(m) for m in norms)


@pytest.mark.parametrize(
    ("cache_chunk", "layout"), [(None, "padded"), (3, "padded"), (None, "varlen")]
)
def test_activation_checkpointing_gives_the_same_gradients(
    synthetic_shards, tmp_path, cache_chunk, layout
):
    shards, _ = synthetic_shards
    data = {"batch_size": 8, "bitext": shards, "bitext_ratio": 0.3}
    levers = {"cache_chunk": cache_chunk, "layout": layout}
    plain = _trainer(shards, tmp_path / "plain", data=data, **levers)
    checkpointed = _trainer(
        shards, tmp_path / "ckpt", data=data, activation_checkpointing=True, **levers
    )
    assert checkpointed.model.backbone.gradient_checkpointing
    batch = plain.loader.next_batch()
    g_plain, out_plain = _grads(plain, batch)
    g_ckpt, out_ckpt = _grads(checkpointed, batch)
    assert set(g_plain) == set(g_ckpt)
    assert _max_rel_diff(g_plain, g_ckpt) < 1e-5
    assert out_ckpt["loss"] == pytest.approx(out_plain["loss"], rel=1e-6)
