"""bf16 autocast vs fp32 for one linear layer on this CPU: what ``--precision auto`` decides.

One 640 -> 2,048 linear layer (Gemma 3 270M's MLP width) on 2,048 rows,
forward + backward, best of ``--repeats``, in fp32 and under bf16 autocast.
Where the CPU lacks native bf16 (no AMX, no AVX-512 BF16) torch runs the bf16
product on a reference kernel and the ratio is large; the trainer's
``precision="auto"`` then trains in fp32 (:mod:`trainer.precision`)::

    python -m benchmarks.bf16_cpu
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks._harness import ROOT, write_json
from benchmarks._machine import machine


def step_seconds(precision: str, rows: int, repeats: int) -> float:
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(640, 2048)
    x = torch.randn(rows, 640)
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass warms up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = layer(x)
        y.float().square().mean().backward()
        layer.zero_grad(set_to_none=True)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bf16_cpu.json"))
    args = p.parse_args(argv)
    from trainer.precision import cpu_has_fast_bf16

    fp32 = step_seconds("fp32", args.rows, args.repeats)
    bf16 = step_seconds("bf16", args.rows, args.repeats)
    native = cpu_has_fast_bf16()
    print(f"fp32 {fp32:.3f} s, bf16 autocast {bf16:.3f} s: bf16 / fp32 = {bf16 / fp32:.1f}")
    print(f"native bf16 (AMX or AVX-512 BF16): {native}; --precision auto -> "
          f"{'bf16' if native else 'fp32'} on this CPU")  # fmt: skip
    write_json(args.json, {"machine": machine(), "fp32_s": fp32, "bf16_s": bf16,
                           "native_bf16": native, "rows": args.rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
