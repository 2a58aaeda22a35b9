"""Where a training step's time and memory go, before any lever is added.

Takes :mod:`benchmarks.trainer`'s flags (model, depth, batch, precision,
layout, gradient cache, ``--shards``) and reports, for one batch:

- **activations held per token**: the bytes still allocated after one forward
  of the whole batch with autograd on (what the backward pass holds, plus the
  autocast cache of bf16 weight casts), from the profiler's memory events,
  divided by the batch's real tokens (CUDA: the allocator's count). This is the figure that decides how many pairs
  fit (GPU issue: <= 0.35 MB per token);
- **time by kind of work** in one trainer step (``torch.profiler``, self time
  of each operator, after a warm-up step): matmuls, attention, norms,
  element-wise, the optimizer, the rest; and the ten costliest operators.

::

    python -m benchmarks.trainer_profile --layers 4 --max-speech-tokens 384 \\
        --batch-size 16 --precision fp32 --cache-chunk 4 --shards TOKENS   # the demo's step
    python -m benchmarks.trainer_profile --layers 18 --max-speech-tokens 300 \\
        --batch-size 8 --precision bf16      # memory per token, all 18 layers
    ... --no-lean-norms                      # the peer: Gemma's RMSNorm as transformers has it
    ... --activation-checkpointing           # each layer recomputed in the backward pass
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from benchmarks._harness import write_json
from benchmarks.trainer import (
    _make_trainer,
    _parse,
    flop_model,
    processed_lengths,
    sequence_flops,
    write_shards,
)

# Operator name fragments -> kind of work (first match wins; the rest is "other").
KINDS = (
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("matmul", ("mm", "matmul", "linear", "addmm", "bmm")),
    ("optimizer", ("adam", "clip_grad", "_foreach_norm")),
    ("norm", ("rsqrt", "pow", "mean", "norm")),
    ("embedding", ("embedding", "index_select", "where", "masked_fill")),
    ("element-wise", ("mul", "add", "gelu", "tanh", "sub", "div", "exp", "neg", "sum", "copy_", "to", "cat")),
)  # fmt: skip


def kind_of(op: str) -> str:
    name = op.removeprefix("aten::").lower()
    for kind, fragments in KINDS:
        if any(f in name for f in fragments):
            return kind
    return "other"


def saved_activations(trainer, batch) -> dict:
    """What is still allocated after one forward of the batch (with grad): what the
    backward pass holds, plus the autocast cache of weight casts and the outputs.

    CPU: the profiler's memory events (bytes allocated minus freed), so custom
    autograd functions and checkpointed layers count too; CUDA: the allocator's
    count before and after."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    speech, text, _ = trainer.encode(batch)
    trainer.model.train()
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
    with (
        profile(activities=[ProfilerActivity.CPU], profile_memory=not cuda) as prof,
        trainer._autocast(),
    ):
        outputs = trainer.model(speech, text)
    if cuda:
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated() - before
    else:
        held = sum(e.self_cpu_memory_usage for e in prof.key_averages())
    del outputs
    tokens = speech.n_tokens + text.n_tokens
    return {
        "tokens": tokens,
        "activations_mb": round(held / 2**20, 1),
        "activations_mb_per_token": round(held / 2**20 / tokens, 4),
    }


def step_flops(trainer, batch) -> float:
    """Model FLOPs of one step on the lengths the kernels process (no recompute counted)."""
    from trainer.gradcache import split_rows

    lengths = []
    for side in trainer.encode_cpu(batch)[:2]:
        chunk = trainer.config.cache_chunk
        for part in split_rows(side, chunk) if chunk else [side]:
            lengths += processed_lengths(trainer.layout(part))
    return sequence_flops(flop_model(trainer.model), lengths)


def profile_step(trainer, batch) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    trainer.train_step([batch])  # warm-up: allocator, AdamW state
    step_s = trainer.train_step([batch])["step_s"]  # unprofiled
    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        trainer.train_step([batch])
    # Where the device spends the step: kernels' self time on CUDA, operators' on CPU.
    ops = [
        (e.key, (e.self_device_time_total if cuda else e.self_cpu_time_total) / 1e6)
        for e in prof.key_averages()
    ]
    total = sum(s for _, s in ops)
    by_kind: dict[str, float] = {}
    for op, s in ops:
        by_kind[kind_of(op)] = by_kind.get(kind_of(op), 0.0) + s
    top = sorted(ops, key=lambda x: -x[1])[:10]
    return {
        "threads": torch.get_num_threads(),
        "step_s": step_s,
        "gflop_per_s": round(step_flops(trainer, batch) / step_s / 1e9, 1),
        "profiled_self_s": round(total, 3),
        "by_kind_s": {k: round(v, 3) for k, v in sorted(by_kind.items(), key=lambda x: -x[1])},
        "top_ops_s": [(op, round(s, 3)) for op, s in top],
    }


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    lean = "--no-lean-norms" not in argv  # the peer: Gemma's own RMSNorm autograd
    argv = [a for a in argv if a != "--no-lean-norms"]
    if "--out" not in argv:
        argv += ["--out", "benchmarks/results/trainer_profile.json"]
    args = _parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if not lean:
        from trainer import train as train_module

        train_module.use_lean_norms = lambda backbone: 0
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        shards = args.shards or os.path.join(tmp, "shards")
        if not args.shards:
            write_shards(shards, args.batch_size)
        trainer = _make_trainer(args, shards, os.path.join(tmp, "run"), args.batch_size)
        batch = max((trainer.loader.next_batch() for _ in range(8)), key=len)
        result = {
            "llm": args.llm,
            "layers": args.layers,
            "pairs": len(batch),
            "precision": args.precision,
            "cache_chunk": args.cache_chunk,
            "activation_checkpointing": args.activation_checkpointing,
            "lean_norms": lean,
            "layout": args.layout,
            **saved_activations(trainer, batch),
            **profile_step(trainer, batch),
        }
        trainer.close()
    print(json.dumps(result, indent=2))
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
