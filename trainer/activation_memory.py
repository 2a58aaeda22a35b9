"""Levers on what the backward pass holds: lean RMSNorms and activation checkpointing.

Memory per token decides how many pairs a contrastive step fits on one
device (``python -m benchmarks.trainer_profile`` measures it per token, with
and without these levers; figures in benchmarks/README.md, "trainer profile").

- **Lean norms** (always on where they apply): Gemma's RMSNorm upcasts its
  input to fp32 and autograd keeps the fp32 normalised copy for the weight's
  gradient, plus the fp32 upcast itself for bf16 inputs: ~20 KB per token and
  layer for Gemma 3 270M. :class:`LeanRMSNorm` computes the same output and
  keeps only the input, in its own dtype, and one reciprocal RMS per token; the
  backward recomputes the rest (a few element-wise ops). Installed only on
  modules whose output it reproduces on a probe, so a backbone with another
  norm formula keeps its own.
- **Activation checkpointing** (``TrainConfig.activation_checkpointing``):
  each decoder layer keeps only its input and recomputes its insides during
  the backward pass: about a third more compute for a fraction of the memory.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class LeanRMSNorm(torch.autograd.Function):
    """``(x / rms(x)) * (1 + w)`` computed in fp32 and returned in ``x``'s dtype,
    as Gemma's RMSNorm does, saving ``x`` and ``1 / rms(x)`` only."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):
        xf = x.float()
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return (xf * rstd * (1.0 + weight.float())).type_as(x)

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved_tensors
        xhat = x.float() * rstd
        g = grad.float()
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (g * xhat).reshape(-1, xhat.shape[-1]).sum(0).to(weight.dtype)
        gxhat = g * (1.0 + weight.float())
        grad_x = rstd * (gxhat - xhat * (gxhat * xhat).mean(-1, keepdim=True))
        return grad_x.to(x.dtype), grad_weight, None


def _lean_forward(module):
    def forward(x):
        return LeanRMSNorm.apply(x, module.weight, module.eps)

    return forward


def _reproduces(module, forward) -> bool:
    """Does ``forward`` give the module's own output on a probe (fp32 and bf16 inputs)?"""
    dim = int(module.weight.shape[-1])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            probe = torch.randn(3, dim, generator=gen).to(module.weight.device, dtype)
            want, got = module.forward(probe), forward(probe)
            if want.dtype != got.dtype or not torch.allclose(want, got, rtol=1e-5, atol=1e-6):
                return False
    return True


def use_lean_norms(backbone: torch.nn.Module) -> int:
    """Swap :class:`LeanRMSNorm` into every RMSNorm of ``backbone`` it reproduces;
    returns how many were swapped."""
    swapped = 0
    for module in backbone.modules():
        if not type(module).__name__.endswith("RMSNorm") or "forward" in vars(module):
            continue
        if not isinstance(getattr(module, "eps", None), float) or module.weight.dim() != 1:
            continue
        forward = _lean_forward(module)
        if _reproduces(module, forward):
            module.forward = forward
            swapped += 1
    log.info("lean RMSNorm in %d modules", swapped)
    return swapped


def use_activation_checkpointing(backbone: torch.nn.Module) -> None:
    """Recompute each decoder layer in the backward pass (non-reentrant checkpoints)."""
    if not getattr(backbone, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(backbone).__name__} does not support activation checkpointing")
    kwargs = {"use_reentrant": False}
    enable = getattr(backbone, "activation_checkpointing_enable", None)  # transformers >= 5.2x
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
