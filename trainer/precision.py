"""bf16 parameters with fp32 master weights (``TrainConfig.param_dtype="bf16"``),
and which autocast precision ``TrainConfig.precision="auto"`` means on a device.

Why: with fp32 weights under bf16 autocast every matmul first casts its
weight, the saved activations of those casts stay alive for the backward,
and gradients arrive in fp32. Holding the model itself in bf16 halves the
weight and gradient memory and traffic; AdamW then updates fp32 copies (the
master weights) so small updates are not lost to bf16 rounding, and copies
them back after each step. The logit scale (a scalar that is exponentiated)
stays fp32. Checkpoints hold the fp32 masters, so a run saved this way loads
and resumes like any other.

Example::

    master = MasterWeights(model, torch.bfloat16)
    optimizer = torch.optim.AdamW(master.param_groups(groups))
    ...backward...
    master.grads_to_masters(); optimizer.step(); master.masters_to_model()
"""

from __future__ import annotations

import contextlib

import torch

PARAM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
KEEP_FP32 = ("logit_scale",)
# CPU features with native bf16 matrix products (Linux /proc/cpuinfo flags).
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX-512 BF16).

    Why it matters: elsewhere torch runs bf16 matmuls on a slow kernel. On the
    AVX2-only AMD EPYC of the development VM a 640 -> 2,048 linear layer on
    2,048 rows (forward + backward) took 2.30 s in bf16 autocast and 0.64 s in
    fp32 (``python -m benchmarks.bf16_cpu``).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:  # not Linux: no way to tell cheaply, so the safe choice
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in FAST_BF16_CPU_FLAGS)
    return False


def resolve_precision(precision: str, device: torch.device, param_dtype: str = "fp32") -> str:
    """``bf16`` or ``fp32``; ``auto``: bf16 with bf16 weights (asked for), on a
    CUDA device that computes in bf16 and on a CPU with native bf16, else fp32."""
    if precision != "auto":
        return precision
    if param_dtype == "bf16":
        return "bf16"
    if device.type == "cuda":
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation argument
            native = torch.cuda.is_bf16_supported()
        return "bf16" if native else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


class MasterWeights:
    """fp32 masters of a model's trainable parameters; the model's own copies in ``dtype``."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16):
        self.model = model
        self.dtype = dtype
        self.lowered = [
            (n, p)
            for n, p in model.named_parameters()
            if n not in KEEP_FP32 and p.is_floating_point()
        ]
        self.masters = {
            id(p): torch.nn.Parameter(p.detach().float().clone())
            for _, p in self.lowered
            if p.requires_grad
        }

    def param_groups(self, groups: list[dict]) -> list[dict]:
        """The optimizer's groups with each lowered parameter replaced by its master."""
        return [{**g, "params": [self.masters.get(id(p), p) for p in g["params"]]} for g in groups]

    def sync_from_model(self) -> None:
        """Masters := the model's (still fp32) values, e.g. after restoring a checkpoint."""
        with torch.no_grad():
            for _, p in self.lowered:
                if id(p) in self.masters:
                    self.masters[id(p)].copy_(p.float())

    def cast_model(self) -> None:
        """Hold the model's parameters in ``dtype`` (frozen ones too: they are never updated)."""
        for _, p in self.lowered:
            p.data = p.data.to(self.dtype)

    def grads_to_masters(self) -> None:
        """Move the model's gradients onto the masters (as fp32); the model's are cleared."""
        for _, p in self.lowered:
            master = self.masters.get(id(p))
            if master is None:
                continue
            master.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    def masters_to_model(self) -> None:
        with torch.no_grad():
            for _, p in self.lowered:
                if id(p) in self.masters:
                    p.copy_(self.masters[id(p)])

    @contextlib.contextmanager
    def fp32_model(self):
        """The trainable parameters hold their fp32 masters inside the block (to save them).

        Frozen parameters stay in ``dtype``: checkpoints leave them out.
        """
        saved = [p.data for _, p in self.lowered]
        try:
            for _, p in self.lowered:
                master = self.masters.get(id(p))
                if master is not None:
                    p.data = master.data
            yield self.model
        finally:
            for (_, p), data in zip(self.lowered, saved, strict=True):
                p.data = data
