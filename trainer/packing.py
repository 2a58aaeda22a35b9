"""Packed sequences: several utterances per row, none of them seeing another.

A padded batch spends compute on pad slots: ``B x L_max`` slots for
``sum(L_i)`` real tokens. Packing lays one side of a batch out with less
waste, and the backbone still computes exactly what it computes for each
sequence alone (positions restart at 0 per sequence; attention is
block-diagonal, so no token attends across a neighbour; Gemma 3's sliding
layers keep their window inside each sequence):

- ``rows``: best-fit-decreasing into rows as wide as the longest sequence
  (rounded up to ``multiple``); a boolean mask per row and layer type
  (full: causal or bidirectional; sliding: + the window) goes to the model's
  attention (SDPA, eager). Never more rows than the padded batch, so never
  more attention work than padding; the dense layers skip the pad slots.
- ``flat``: every sequence back to back in one row, no mask at all: for the
  variable-length flash kernel (``attention="varlen"``, CUDA), which takes
  the sequence boundaries (``cu_seqlens``) instead of a mask and computes
  only ``sum(L_i^2)`` attention.

The pooled embedding is taken from a padded *view* (``index``: one gather of
the hidden states), so every registered pooler works unchanged.

Example::

    enc = model.encode_speech(tokens, langs)            # padded Encoded
    packed = pack(enc, layout="rows")                   # Packed, fewer slots
    emb = model.embed(packed)                           # == model.embed(enc)
"""

from __future__ import annotations

import bisect
import inspect
import itertools
from typing import NamedTuple

import torch

LAYOUTS = ("padded", "rows", "flat")
VARLEN = "speechtok_varlen"


class Packed(NamedTuple):
    """One side of a batch packed into ``R`` rows of width ``W``."""

    input_ids: torch.Tensor  # long [R, W]
    position_ids: torch.Tensor  # long [R, W], restarting at 0 per sequence
    segments: torch.Tensor  # long [R, W]: sequence index, -1 on pad slots
    index: torch.Tensor  # long [B, L]: flat slot (r * W + c) of each padded-view slot
    attention_mask: torch.Tensor  # long [B, L], the padded view's (real tokens)
    pool_mask: torch.Tensor  # long [B, L]
    cu_seqlens: torch.Tensor  # int32 [S + 1] boundaries in the flat layout (pad tail included)
    max_len: int  # longest segment in cu_seqlens

    def to(self, device) -> Packed:
        return Packed(
            *(t.to(device, non_blocking=True) for t in self[:-1]),
            self.max_len,
        )

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def n_slots(self) -> int:
        return int(self.input_ids.numel())

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(1)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_to_multiple(encoded, multiple: int, pad_id: int):
    """A padded ``Encoded`` widened with pad columns to a multiple of ``multiple``."""
    width = encoded.input_ids.shape[1]
    extra = round_up(width, multiple) - width
    if extra <= 0:
        return encoded
    pad = torch.nn.functional.pad
    return type(encoded)(
        pad(encoded.input_ids, (0, extra), value=pad_id),
        pad(encoded.attention_mask, (0, extra)),
        pad(encoded.pool_mask, (0, extra)),
    )


def best_fit_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Sequence indices per row: best fit decreasing (longest first, tightest row)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, row), sorted
    for i in order:
        n = lengths[i]
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            space, row = free.pop(at)
        else:
            space, row = capacity, len(rows)
            rows.append([])
        rows[row].append(i)
        if space - n > 0:
            bisect.insort(free, (space - n, row))
    return rows


def pack(encoded, *, layout: str = "rows", multiple: int = 1, pad_id: int = 0) -> Packed:
    """Pack a right-padded ``Encoded`` (CPU tensors) into ``layout`` (see the module docstring)."""
    if layout not in ("rows", "flat"):
        raise ValueError(f"pack layout must be 'rows' or 'flat', got {layout!r}")
    ids = encoded.input_ids
    lengths = encoded.attention_mask.sum(1).tolist()
    batch, width_in = ids.shape
    if layout == "flat":
        rows = [list(range(batch))]
        width = round_up(max(1, sum(lengths)), multiple)
    else:
        width = round_up(max(1, max(lengths, default=1)), multiple)
        rows = best_fit_rows(lengths, width)
    n_rows = max(1, len(rows))
    out_ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    positions = torch.zeros((n_rows, width), dtype=torch.long)
    segments = torch.full((n_rows, width), -1, dtype=torch.long)
    index = torch.zeros((batch, width_in), dtype=torch.long)
    bounds, longest = [0], 0
    for r, members in enumerate(rows):
        col = 0
        for i in members:
            n = lengths[i]
            out_ids[r, col : col + n] = ids[i, :n]
            positions[r, col : col + n] = torch.arange(n)
            segments[r, col : col + n] = i
            index[i, :n] = r * width + col + torch.arange(n)
            col += n
            bounds.append(r * width + col)
            longest = max(longest, n)
        if col < width:  # the pad tail: its own segment (and positions from 0)
            positions[r, col:] = torch.arange(width - col)
            bounds.append((r + 1) * width)
            longest = max(longest, width - col)
    return Packed(
        input_ids=out_ids,
        position_ids=positions,
        segments=segments,
        index=index,
        attention_mask=encoded.attention_mask,
        pool_mask=encoded.pool_mask,
        cu_seqlens=torch.tensor(bounds, dtype=torch.int32),
        max_len=int(longest),
    )


# --- attention inputs ----------------------------------------------------------------------


def check_packable(config) -> None:
    """Packing hands the model one mask per layer type: Gemma 3-style backbones only."""
    if getattr(config, "layer_types", None) is None:
        raise ValueError(
            f"packed sequences need a backbone with per-layer-type attention masks "
            f"(Gemma 3 style); {type(config).__name__} has no layer_types: use layout 'padded'"
        )


def row_masks(segments: torch.Tensor, config) -> dict[str, torch.Tensor]:
    """Boolean ``[R, 1, W, W]`` masks per layer type: same segment, causal/bidirectional, window."""
    w = segments.shape[1]
    pos = torch.arange(w, device=segments.device)
    same = segments.unsqueeze(2) == segments.unsqueeze(1)  # [R, W, W]
    diff = pos.view(-1, 1) - pos.view(1, -1)  # q - k
    bidirectional = bool(getattr(config, "use_bidirectional_attention", False))
    base = same if bidirectional else same & (diff >= 0)
    masks = {}
    for kind in set(config.layer_types):
        mask = base
        window = getattr(config, "sliding_window", None)
        if kind == "sliding_attention" and window:
            mask = mask & (diff.abs() < window if bidirectional else diff < window)
        masks[kind] = mask.unsqueeze(1)
    return masks


def attention_inputs(packed: Packed, config) -> dict:
    """Keyword arguments for the backbone's forward on a packed side."""
    kinds = set(config.layer_types)
    if config._attn_implementation == VARLEN:
        if packed.input_ids.shape[0] != 1:
            raise ValueError("varlen attention takes the 'flat' layout (one row)")
        return {
            "attention_mask": dict.fromkeys(kinds),
            "cu_seq_lens_q": packed.cu_seqlens,
            "cu_seq_lens_k": packed.cu_seqlens,
            "max_length_q": packed.max_len,
            "max_length_k": packed.max_len,
        }
    masks = row_masks(packed.segments, config)
    if config._attn_implementation == "eager":  # additive float masks
        return {
            "attention_mask": {
                k: torch.zeros(m.shape, device=m.device).masked_fill(~m, torch.finfo().min)
                for k, m in masks.items()
            }
        }
    return {"attention_mask": masks}


# --- variable-length flash attention (CUDA) ------------------------------------------------


def _window(module, sliding_window: int | None, max_len: int) -> tuple[int, int]:
    """Flash's (left, right) window: key j is seen by query i if i - left <= j <= i + right."""
    causal = bool(getattr(module, "is_causal", True))
    if sliding_window and max_len > sliding_window:
        left = sliding_window - 1  # Gemma: q - k < window
        return (left, 0 if causal else left)
    return (-1, 0) if causal else (-1, -1)


def per_sequence_attention(q, k, v, cu, window, scale):
    """Varlen attention as one SDPA call per sequence, with the flash window rule.

    The CPU implementation of the ``varlen`` layout (and the reference the
    CUDA kernel is checked against): no pad slot and no cross-sequence score
    is ever computed, so it costs ``sum(L_i^2)`` attention.
    """
    out = torch.empty_like(q)
    left, right = window
    k, v = _repeat_heads(k, q), _repeat_heads(v, q)
    for a, b in itertools.pairwise(cu.tolist()):
        qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))  # [H, n, D]
        mask, causal = None, False
        if (left, right) == (-1, 0):
            causal = True
        elif (left, right) != (-1, -1):
            pos = torch.arange(b - a, device=q.device)
            diff = pos.view(-1, 1) - pos.view(1, -1)  # i - j
            mask = torch.ones_like(diff, dtype=torch.bool)
            if left >= 0:
                mask &= diff <= left
            if right >= 0:
                mask &= -diff <= right
        out[a:b] = torch.nn.functional.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=mask, is_causal=causal, scale=scale
        ).transpose(0, 1)
    return out


def varlen_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, sliding_window=None, **kw
):
    """A transformers attention function: flash varlen on packed input, SDPA otherwise."""
    cu = kw.get("cu_seq_lens_q")
    if cu is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kw
        )
    if dropout:
        raise ValueError("varlen attention runs without attention dropout")
    max_len = int(kw["max_length_q"])
    window = _window(module, sliding_window, max_len)
    # [1, H, T, D] -> [T, H, D]; flash wants 16-bit inputs (rotary leaves q, k in fp32).
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    if not q.is_cuda:
        dtype = v.dtype if torch.is_autocast_enabled(q.device.type) else q.dtype
        q, k, v = (t.to(dtype) for t in (q, k, v))
        return per_sequence_attention(q, k, v, cu, window, scaling).unsqueeze(0), None
    half = v.dtype if v.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    q, k, v = (t.to(half) for t in (q, k, v))
    out = _flash_varlen(q, k, v, cu, max_len, window, scaling)
    return out.unsqueeze(0), None


def _repeat_heads(kv, q):
    groups = q.shape[1] // kv.shape[1]
    return kv.repeat_interleave(groups, dim=1) if groups > 1 else kv


def _flash_varlen(q, k, v, cu, max_len, window, scale):
    """``torch.nn.attention.varlen.varlen_attn`` across its signatures (2.9: is_causal only;
    2.10+: scale, window_size; 2.12+: enable_gqa)."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    kwargs: dict = {}
    if "enable_gqa" in params and k.shape[1] != q.shape[1]:
        kwargs["enable_gqa"] = True
    else:
        k, v = _repeat_heads(k, q), _repeat_heads(v, q)
    if "scale" in params:
        kwargs["scale"] = scale
    elif scale is not None:
        q = q * (scale * q.shape[-1] ** 0.5)  # the kernel's default is 1/sqrt(D)
    if "window_size" in params:
        kwargs["window_size"] = window
    elif window in ((-1, 0), (-1, -1)):
        kwargs["is_causal"] = window == (-1, 0)
    else:
        raise NotImplementedError(
            f"this torch's varlen_attn has no window_size (needed: sequences of {max_len} "
            "tokens exceed the sliding window): use attention 'sdpa'"
        )
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kwargs)


def use_varlen_attention(model) -> None:
    """Switch a transformers model to :func:`varlen_attention` (padded input keeps SDPA)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, sdpa_mask)
    model.set_attn_implementation(VARLEN)
