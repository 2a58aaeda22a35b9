"""The dual-encoder loss: in-batch softmax contrastive in both directions + spread-out.

For queries ``q`` (speech, plus bitext sources) and candidates ``c`` (their
transcripts, plus bitext targets), pair ``i`` is positive and every other
in-batch candidate a negative::

    logits = scale * q @ c.T
    contrastive = (CE(logits, diag) + CE(logits.T, diag)) / 2     # q->c and c->q

Pairs that share a group (two recordings of one sentence: the same text) are
not each other's negatives: their off-diagonal logits are masked out.

The spread-out regulariser (Zhang et al. 2017, "Learning Spread-out Local
Feature Descriptors"), applied to each embedding set on its own, pushes
non-matching embeddings towards orthogonality, as uniformly spread unit
vectors in ``d`` dimensions would be: with ``s_ij`` the cosine of non-matching
pairs, ``M1 = mean(s_ij)``, ``M2 = mean(s_ij ** 2)``::

    spread_out = M1 ** 2 + max(0, M2 - 1 / d)

Under DDP every rank gathers all embeddings *with gradients*
(:func:`gather_with_grad`) and computes the same global loss; the gather's
backward sums the ``world`` identical gradient copies and DDP averages them
back, so the update equals the single-process one on the global batch.

Example::

    out = dual_encoder_loss(speech_emb, text_emb, logit_scale=model.scale(), spread_out_weight=1.0)
    out.loss.backward()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor  # what to backpropagate
    contrastive: torch.Tensor  # detached
    spread_out: torch.Tensor  # detached
    accuracy: torch.Tensor  # in-batch top-1 of query -> candidate, detached


def _negatives_mask(n: int, groups: torch.Tensor | None, device) -> torch.Tensor:
    """True where (i, j) is a usable negative: off-diagonal and not the same group."""
    eye = torch.eye(n, dtype=torch.bool, device=device)
    if groups is None:
        return ~eye
    same = groups.view(-1, 1) == groups.view(1, -1)
    return ~(eye | same)


def contrastive_loss(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    logit_scale: torch.Tensor | float,
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric in-batch softmax loss; returns ``(loss, accuracy)``."""
    n = queries.shape[0]
    if candidates.shape[0] != n:
        raise ValueError(f"{n} queries but {candidates.shape[0]} candidates")
    logits = logit_scale * (queries.float() @ candidates.float().T)
    keep = _negatives_mask(n, groups, logits.device) | torch.eye(
        n, dtype=torch.bool, device=logits.device
    )
    logits = logits.masked_fill(~keep, float("-inf"))
    target = torch.arange(n, device=logits.device)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    accuracy = (logits.argmax(1) == target).float().mean()
    return loss, accuracy.detach()


def spread_out(embeddings: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Spread-out regulariser of one embedding set (cosines of non-matching pairs)."""
    n, d = embeddings.shape
    if n < 2:
        return embeddings.new_zeros(())
    unit = F.normalize(embeddings.float(), dim=-1)
    cos = unit @ unit.T
    mask = _negatives_mask(n, groups, cos.device)
    if not mask.any():
        return embeddings.new_zeros(())
    pairs = cos[mask]
    m1 = pairs.mean()
    m2 = (pairs * pairs).mean()
    return m1 * m1 + torch.clamp(m2 - 1.0 / d, min=0.0)


def dual_encoder_loss(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    *,
    logit_scale: torch.Tensor | float,
    groups: torch.Tensor | None = None,
    spread_out_weight: float = 1.0,
) -> LossOutput:
    """Contrastive (both directions) + ``spread_out_weight`` x (spread-out(q) + spread-out(c))."""
    con, acc = contrastive_loss(queries, candidates, logit_scale, groups)
    reg = spread_out(queries, groups) + spread_out(candidates, groups)
    total = con + spread_out_weight * reg if spread_out_weight else con
    return LossOutput(loss=total, contrastive=con.detach(), spread_out=reg.detach(), accuracy=acc)


class _AllGatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward hands each rank the sum of all ranks' gradients.

    Written on ``all_reduce`` (gloo and NCCL both have it) rather than on
    torch's deprecated ``distributed.nn`` helpers; embeddings are small.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order, keeping gradients to each rank's part.

    Ranks may hold different row counts (token-budget batches): rows are
    padded to the largest count for the collective and cut out again.
    Without an initialised process group this returns ``x``.
    """
    if not _distributed():
        return x
    sizes = _gather_sizes(x.shape[0], x.device)
    padded = F.pad(x, (0, 0) * (x.dim() - 1) + (0, max(sizes) - x.shape[0]))
    parts = _AllGatherWithGrad.apply(padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather_with_grad` for tensors that need no gradient (group ids)."""
    if not _distributed():
        return x
    sizes = _gather_sizes(x.shape[0], x.device)
    padded = F.pad(x, (0, 0) * (x.dim() - 1) + (0, max(sizes) - x.shape[0]))
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def _gather_sizes(n: int, device) -> list[int]:
    mine = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, mine)
    return [int(s) for s in sizes]
