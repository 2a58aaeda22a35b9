"""Gradient cache: contrastive batches larger than the device's activation memory.

The contrastive loss couples every pair of the batch, so the batch cannot be
split into independent micro-batches; but it depends on the model only
through the embeddings. The gradient cache (Gao et al. 2021, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup") uses that:

1. embed the whole batch in chunks of ``chunk`` rows without autograd
   (no activations kept), recording the random state before each chunk;
2. compute the loss on those embeddings (made leaves that require grad; under
   DDP they are gathered from every rank, as in the plain step) and
   backpropagate it: the gradient of the loss w.r.t. every embedding, and the
   logit scale's own gradient;
3. re-run each chunk with autograd, the random state of step 1 restored (so
   dropout, if any, draws the same masks and the recomputed embeddings equal
   the cached ones), and backpropagate the cached embedding gradients into
   the parameters.

By the chain rule the parameter gradients equal those of the full-batch step;
peak activation memory is one chunk's. The cost is one extra forward pass.

Example::

    out = gradcache_backward(model, speech_chunks, text_chunks, loss_fn, autocast=ctx)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RandomState:
    """The CPU generator's state and, on CUDA, the current device's."""

    cpu: torch.Tensor
    cuda: torch.Tensor | None

    @classmethod
    def capture(cls, device: torch.device) -> RandomState:
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(torch.get_rng_state(), cuda)

    @contextlib.contextmanager
    def replay(self, device: torch.device):
        """Run the block from this state; the outer random stream continues unchanged."""
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, device)
            yield


@dataclass(frozen=True)
class CacheResult:
    loss: object  # what loss_fn returned
    recompute_max_diff: float  # max |recomputed - cached| embedding (0.0 when deterministic)


def split_rows(encoded, size: int) -> list:
    """A right-padded ``Encoded`` cut into chunks of ``size`` rows, each trimmed to its width."""
    chunks = []
    for start in range(0, encoded.input_ids.shape[0], size):
        part = type(encoded)(*(t[start : start + size] for t in encoded))
        width = max(1, int(part.attention_mask.sum(1).max()))
        chunks.append(type(encoded)(*(t[:, :width] for t in part)))
    return chunks


def gradcache_backward(
    model,
    speech_chunks: Sequence,
    text_chunks: Sequence,
    loss_fn: Callable,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager],
    weight: float = 1.0,
    check_recompute: bool = False,
) -> CacheResult:
    """Accumulate into ``.grad`` the gradient of ``weight * loss_fn(speech, text, scale).loss``.

    ``model`` is the bare :class:`~trainer.model.DualEncoder` (no DDP wrapper:
    under DDP the caller reduces the gradients). ``loss_fn(speech_emb,
    text_emb, scale)`` returns an object with a ``.loss`` tensor; it may
    gather across ranks. ``check_recompute`` compares the recomputed
    embeddings with the cached ones (a test aid; costs a copy).
    """
    device = next(model.parameters()).device
    sides = (list(speech_chunks), list(text_chunks))
    states: list[list[RandomState]] = [[], []]
    cached: list[list[torch.Tensor]] = [[], []]
    with torch.no_grad():
        for side, chunks in enumerate(sides):
            for chunk in chunks:
                states[side].append(RandomState.capture(device))
                with autocast():
                    cached[side].append(model.embed(chunk))
    leaves = [torch.cat(parts).detach().requires_grad_(True) for parts in cached]
    out = loss_fn(leaves[0], leaves[1], model.scale())
    (out.loss * weight).backward()
    diff = 0.0
    for side, chunks in enumerate(sides):
        grads = leaves[side].grad.split([len(e) for e in cached[side]])
        for chunk, state, grad, before in zip(
            chunks, states[side], grads, cached[side], strict=True
        ):
            with state.replay(device), autocast():
                emb = model.embed(chunk)
            if check_recompute:
                diff = max(diff, float((emb.detach() - before).abs().max()))
            emb.backward(grad)
    return CacheResult(loss=out, recompute_max_diff=diff)


def allreduce_gradients(parameters: Sequence[torch.Tensor], world_size: int) -> None:
    """Average ``.grad`` over ranks in one flat all-reduce (what DDP would have done).

    A parameter without a gradient on this rank contributes zeros, so every
    rank's flat buffer has the same layout.
    """
    import torch.distributed as dist

    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1).float() for p in params])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n
