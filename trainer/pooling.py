"""Pooling: hidden states of a sequence -> one vector, by registered name.

``DualEncoderConfig.pooling`` names one of :data:`POOLERS`; add a pooler with
``@register_pooler("name")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# (hidden [B, L, H], mask [B, L] of 0/1) -> pooled [B, H]
Pooler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
POOLERS: dict[str, Pooler] = {}


def register_pooler(name: str) -> Callable[[Pooler], Pooler]:
    def deco(fn: Pooler) -> Pooler:
        if name in POOLERS:
            raise ValueError(f"pooler {name!r} registered twice")
        POOLERS[name] = fn
        return fn

    return deco


@register_pooler("mean")
def mean_pool(hidden, mask):
    """Average of the positions where ``mask`` is 1 (pads and excluded prefix skipped)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


@register_pooler("last")
def last_pool(hidden, mask):
    """The last masked position: the one a causal LM lets see the whole sequence."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask.bool(), positions, -1).amax(1).clamp_min(0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


@register_pooler("first")
def first_pool(hidden, mask):
    """The first masked position (CLS-style encoders with ``pool_prefix=True``)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    big = mask.shape[1]
    first = torch.where(mask.bool(), positions, big).amin(1).clamp_max(big - 1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
