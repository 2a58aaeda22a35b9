"""The trainer's GPU lever table: one setting per row, each in a fresh process.

Rows: the training step as it is by default (right-padded rows, fp32 weights
under bf16 autocast, fused AdamW) at two batch sizes, then one lever at a
time on top of it (foreach AdamW, bf16 weights with fp32 masters, packed
rows, the varlen layout, ``torch.compile`` with widths rounded to 64), then
every lever at once over a batch sweep, activation checkpointing at 512
pairs, and a gradient-cache batch. Each row
runs ``python -m benchmarks.trainer --worker`` through
:func:`benchmarks._harness.run_row` on the same synthetic shards (~150
speech tokens per utterance) and reports s/step, tokens/s on real tokens,
the padded share of processed tokens, model FLOPs and MFU counted on real
and on processed tokens (the counting rule is printed), peak device memory
(CUDA) and the process tree's peak RSS. Only the default rows time the bare
forward/backward peer (trainer / bare ratio).

On CUDA: Gemma 3 270M's architecture with random weights, all 18 layers
(``benchmarks/configs/gemma-3-270m.json``, written once under ``--work``; no
weights needed, speed does not depend on them)::

    python -m benchmarks.trainer_levers --device cuda
    python -m benchmarks.trainer_levers --device cuda --only "all levers" --sweep 256,512

``--smoke`` runs every row on the CPU with the tiny ``debug`` backbone and
batches of 4-64 pairs, without ``--compile`` (inductor's C++ build takes
minutes on 2 cores): it shows the table builds end to end; its timings say
nothing about a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from benchmarks._harness import ROOT, run_row, write_json

ALL_LEVERS = ("--param-dtype", "bf16", "--layout", "varlen", "--compile", "--pad-multiple", "64")


def plan(args) -> list[tuple[str, int, list[str]]]:
    """``(row name, pairs per batch, benchmarks.trainer flags)`` in run order."""
    small, big = args.batch_sizes
    rows = [
        ("default", small, []),
        ("default", big, []),
        ("foreach AdamW", big, ["--optimizer", "foreach"]),
        ("bf16 weights, fp32 masters", big, ["--param-dtype", "bf16"]),
        ("packed rows", big, ["--layout", "packed"]),
        ("varlen", big, ["--layout", "varlen"]),
        ("compile, widths to 64", big, ["--compile", "--pad-multiple", "64"]),
        *[("all levers", n, list(ALL_LEVERS)) for n in args.sweep],
    ]
    cache_pairs, chunk = args.cache
    no_compile = [f for f in ALL_LEVERS if f != "--compile"]
    # Each layer recomputed in the backward pass: 0.07 MB held per token instead of 1.14
    # (18 layers, bf16, CPU: benchmarks/README.md "trainer profile"), so 512 pairs fit.
    rows.append(("activation checkpointing", args.checkpointed_pairs, [*no_compile, "--activation-checkpointing"]))  # fmt: skip
    rows.append((f"gradient cache, chunk {chunk}", cache_pairs, [*no_compile, "--cache-chunk", str(chunk)]))  # fmt: skip
    if args.only:
        rows = [r for r in rows if any(o in r[0] for o in args.only)]
    if args.smoke or args.no_compile:  # no inductor build: the row says so
        rows = [
            (f"{name} [no compile]" if "--compile" in flags else name, n,
             [f for f in flags if f != "--compile"])
            for name, n, flags in rows
        ]  # fmt: skip
    return rows


def _parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda")
    p.add_argument("--llm", help="backbone (default: the random Gemma 3 270M under --work)")
    p.add_argument("--layers", type=int, default=18)
    p.add_argument("--batch-sizes", default="32,128", help="the default row's two sizes")
    p.add_argument("--sweep", default="32,128,256,512", help="pairs per batch, all levers on")
    p.add_argument(
        "--cache",
        default="4096,128",
        help="gradient-cache pairs,chunk (512-pair chunks ran out of 80 GB)",
    )
    p.add_argument(
        "--checkpointed-pairs", type=int, default=512, help="activation-checkpointing row"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed steps per row (best counts)")
    p.add_argument("--peak-tflops", type=float, help="device bf16 peak for MFU (CUDA)")
    p.add_argument("--only", help="comma-separated substrings of row names to run")
    p.add_argument("--smoke", action="store_true", help="CPU, debug backbone, tiny batches")
    p.add_argument("--no-compile", action="store_true", help="drop --compile from every row")
    p.add_argument("--work", default="/tmp/speechtok-gpu", help="random Gemma folder")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "trainer_levers.json"))
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.llm, args.layers, args.repeats = "cpu", "debug", 2, 1
        args.batch_sizes, args.sweep, args.cache = "4,16", "8,16", "64,16"
        args.checkpointed_pairs = 16
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    args.sweep = [int(x) for x in args.sweep.split(",") if x.strip()]
    args.cache = [int(x) for x in args.cache.split(",")]
    args.only = [x.strip() for x in args.only.split(",")] if args.only else None
    if len(args.batch_sizes) != 2 or len(args.cache) != 2:
        p.error("--batch-sizes takes two sizes and --cache pairs,chunk")
    return args


def run(args, shards: str) -> list[dict]:
    base = ["--llm", args.llm, "--layers", str(args.layers), "--device", args.device]
    base += ["--shards", shards, "--repeats", str(args.repeats)]
    if args.peak_tflops:
        base += ["--peak-tflops", str(args.peak_tflops)]
    rows = []
    for name, pairs, flags in plan(args):
        peers = [] if name == "default" else ["--no-peers"]
        argv = [*base, "--batch-size", str(pairs), *flags, *peers]
        print(f"  {name}, {pairs} pairs: {' '.join(flags) or '(no flags)'}", file=sys.stderr)
        result = run_row("benchmarks.trainer", {"row": "trainer", "argv": argv})
        result.pop("times", None)
        rows.append({"name": name, "pairs_asked": pairs, "flags": flags, **result})
    return rows


def _cell(row: dict, key: str, fmt: str = "{}") -> str:
    value = row.get(key)
    return "-" if value is None else fmt.format(value)


def table(rows: list[dict]) -> str:
    """The README's Markdown table of the rows."""
    head = (
        "| row | pairs | s/step | tokens/s (real) | padding | TFLOP/s real | MFU real "
        "| MFU processed | peak GPU MB | peak RSS MB | trainer/bare |"
    )
    lines = [head, "|---|" + "---:|" * 10]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['pairs_asked']} | error: {r['error'][:120]} |")
            continue
        cells = [
            r["name"],
            str(r["pairs"]),
            _cell(r, "trainer_s", "{:.3f}"),
            _cell(r, "tokens_per_s", "{:,.0f}"),
            _cell(r, "padded_fraction", "{:.1%}"),
            _cell(r, "tflops_per_s_real"),
            _cell(r, "mfu_real", "{:.1%}"),
            _cell(r, "mfu_processed", "{:.1%}"),
            _cell(r, "peak_memory_mb", "{:,.0f}") if "mfu" in r else "-",
            _cell(r, "peak_rss_mb", "{:,.0f}"),
            _cell(r, "ratio", "{:.3f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = _parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks._machine import machine
    from benchmarks.trainer import write_shards

    if args.llm is None:
        from benchmarks._harness import make_gemma

        args.llm = "hf:" + make_gemma(Path(args.work))
    largest = max(*args.batch_sizes, *args.sweep, args.cache[0])
    with tempfile.TemporaryDirectory(prefix="bench-levers-") as tmp:
        shards = os.path.join(tmp, "shards")
        write_shards(shards, largest)
        rows = run(args, shards)
    report = {
        "command": " ".join(["python -m benchmarks.trainer_levers", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "smoke": args.smoke,
        "flops_rule": next((r["flops_rule"] for r in rows if "flops_rule" in r), None),
        "rows": rows,
    }
    print(table(rows))
    print(f"FLOPs: {report['flops_rule']} (a gradient-cache step's recompute is not counted)")
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    report = main()
    sys.exit(1 if any("error" in r for r in report["rows"]) else 0)
