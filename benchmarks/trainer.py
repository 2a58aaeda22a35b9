"""Trainer step throughput against a bare forward/backward of the same model and batch.

The peer, measured in the same run and interleaved with it (these machines
are noisy): the same DualEncoder, the same already-encoded batch (in the
configured layout), the same autocast, forward + loss + backward and nothing
else. The trainer step adds what a real step does: tokenising and laying out
the batch, lr schedule, gradient clipping, the AdamW update, metrics.
Target: trainer / bare throughput >= 0.9. A second peer, a minimal
hand-written loop (fwd + bwd + clip + AdamW), isolates the trainer's own
overhead from the optimizer's. The data loader's cost per batch is reported
on its own. Timings are best-of-N (noise only adds time).

Every row also reports model FLOPs, stated in the output: ``6 x dense
parameters x tokens`` plus attention, ``12 x width x L x min(L, window)``
per layer and sequence (QK^T and AV, forward + backward, the whole score
matrix), counted twice: on the real tokens (each utterance's own length) and
on the slots the layout makes the kernels process (padded rows, packed rows,
or the flat varlen row). On CUDA: TFLOP/s and MFU against ``--peak-tflops``
or the card's dense bf16 peak, and peak memory (``max_memory_allocated``).
A gradient-cache step (``--cache-chunk``) re-runs the forward pass; model
FLOPs do not count that recompute (as MFU never counts activation
recomputation), and it has no bare peer (the full batch may not fit).

    python -m benchmarks.trainer --quick                     # Gemma truncated to 1 layer
    python -m benchmarks.trainer --layers 4 --batch-size 16  # the demo's model depth
    python -m benchmarks.trainer --device cuda --llm hf:DIR --layers 18 \\
        --batch-sizes 32,128,512 --layout varlen --param-dtype bf16 --compile --pad-multiple 64
    python -m benchmarks.trainer --device cuda --llm hf:DIR --layers 18 \\
        --batch-size 4096 --cache-chunk 128 --layout varlen --param-dtype bf16

One setting per process (``--worker``, :mod:`benchmarks._harness`): the lever
table of :mod:`benchmarks.trainer_levers` runs each row that way.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import sys
import tempfile
import time

from benchmarks._harness import worker_main, write_json

# Dense bf16 peaks (TFLOP/s, no sparsity) by device-name fragment.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 125.0}  # fmt: skip
FLOPS_RULE = (
    "6 x {dense:,} dense params x tokens + 12 x {width} (heads x head dim) x L x min(L, window) "
    "per layer and sequence"
)


def _parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--llm", default="gemma-3-270m")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--max-speech-tokens", type=int, default=1024, help="the demo uses 384")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batch-sizes", help="comma-separated sweep (overrides --batch-size)")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--param-dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--layout", default="padded", choices=("padded", "packed", "varlen"))
    p.add_argument("--pad-multiple", type=int, default=1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--optimizer", default="fused", choices=("fused", "foreach"), help="AdamW")
    p.add_argument("--cache-chunk", type=int, help="gradient cache: rows per chunk")
    p.add_argument("--activation-checkpointing", action="store_true", help="recompute layers")
    p.add_argument("--no-peers", action="store_true", help="time the trainer step only")
    p.add_argument("--check", action="store_true", help="layout vs padded embeddings (eval)")
    p.add_argument("--device", default="auto")
    p.add_argument("--shards", help="token shards to draw the batch from (default: synthetic)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--peak-tflops", type=float, help="device bf16 peak for MFU (CUDA)")
    p.add_argument("--out", default="benchmarks/results/trainer.json")
    p.add_argument("--quick", action="store_true", help="1 layer, batch 8, 5 repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.layers, args.batch_size, args.repeats = 1, 8, 5
    sizes = args.batch_sizes or str(args.batch_size)
    args.sizes = [int(x) for x in sizes.split(",") if x.strip()]
    return args


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flop_model(model) -> dict:
    """What the FLOP count needs from the backbone: dense params, width, layer windows."""
    cfg = model.backbone.config
    dense = sum(p.numel() for n, p in model.backbone.named_parameters() if "embed_tokens" not in n)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    types = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
    window = getattr(cfg, "sliding_window", None)
    windows = [window if t == "sliding_attention" and window else None for t in types]
    return {
        "dense": int(dense),
        "width": int(cfg.num_attention_heads * head_dim),
        "windows": windows,
    }


def sequence_flops(fm: dict, lengths) -> float:
    """Model FLOPs (forward + backward) of sequences of these lengths, each on its own."""
    total = 0.0
    for n in lengths:
        n = int(n)
        total += 6.0 * fm["dense"] * n
        for w in fm["windows"]:
            total += 12.0 * fm["width"] * n * (min(n, w) if w else n)
    return total


def processed_lengths(encoded) -> list[int]:
    """The lengths the kernels see: every row's width, or (flat varlen row) every segment's."""
    if hasattr(encoded, "cu_seqlens") and encoded.input_ids.shape[0] == 1:
        bounds = encoded.cu_seqlens.tolist()
        return [b - a for a, b in itertools.pairwise(bounds)]
    rows, width = encoded.input_ids.shape
    return [width] * rows


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _make_trainer(args, shards: str, run: str, batch_size: int):
    from trainer.configs import DualEncoderConfig, TrainConfig
    from trainer.train import Trainer, debug_config

    base = debug_config(shards, run, steps=10_000).to_dict()
    base["model"] = DualEncoderConfig(
        llm=args.llm, layers=args.layers, max_speech_tokens=args.max_speech_tokens
    ).__dict__
    base["data"].update(batch_size=batch_size, max_tokens=10**9, shuffle_buffer=10**6)
    base.update(
        precision=args.precision,
        param_dtype=args.param_dtype,
        device=args.device,
        warmup_steps=10,
        layout=args.layout,
        pad_multiple=args.pad_multiple,
        compile=args.compile,
        cache_chunk=args.cache_chunk,
        optimizer=args.optimizer,
        activation_checkpointing=args.activation_checkpointing,
    )
    return Trainer(TrainConfig.from_dict(base))


def _check(trainer, batch) -> dict:
    """Embeddings of the batch in the configured layout vs plain padded rows (eval mode)."""
    import torch

    model = trainer.model
    speech, _, _ = trainer.encode_cpu(batch)
    model.eval()
    with torch.no_grad(), trainer._autocast():
        padded = model.embed(speech.to(trainer.device)).float()
        laid = model.embed(trainer.layout(speech)).float()
    model.train()
    cos = torch.nn.functional.cosine_similarity(padded, laid, dim=-1)
    return {"max_abs_diff": float((padded - laid).abs().max()), "min_cosine": float(cos.min())}


def measure(args, batch_size: int, shards: str, tmp: str) -> dict:
    import torch

    from trainer.gradcache import split_rows
    from trainer.loss import dual_encoder_loss

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer = _make_trainer(args, shards, os.path.join(tmp, f"run-{batch_size}"), batch_size)
    load_s = time.perf_counter() - started
    model, device = trainer.model, trainer.device

    t0 = time.perf_counter()
    batches = [trainer.loader.next_batch() for _ in range(8)]
    loader_ms = (time.perf_counter() - t0) / len(batches) * 1000
    batch = max(batches, key=len)
    t0 = time.perf_counter()
    speech_cpu, text_cpu, _ = trainer.encode_cpu(batch)
    speech, text, groups = trainer.encode(batch)
    encode_ms = (time.perf_counter() - t0) * 1000

    def bare_step():
        model.train()
        with trainer._autocast():
            s, t, scale = model(speech, text)
        out = dual_encoder_loss(s, t, logit_scale=scale, groups=groups)
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]

    def bare_update():  # a minimal hand-written loop: fwd + bwd + clip + AdamW
        model.train()
        with trainer._autocast():
            s, t, scale = model(speech, text)
        dual_encoder_loss(s, t, logit_scale=scale, groups=groups).loss.backward()
        if trainer.master is not None:
            trainer.master.grads_to_masters()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        trainer.optimizer.step()
        if trainer.master is not None:
            trainer.master.masters_to_model()
        trainer.optimizer.zero_grad(set_to_none=True)

    def trainer_step():
        trainer.train_step([batch])

    with_peers = not (args.no_peers or args.cache_chunk)
    peers = [("trainer", trainer_step)]
    if with_peers:
        peers = [("bare", bare_step), ("bare_update", bare_update), *peers]
    for _, fn in peers:  # warm-up (allocator, autocast caches, AdamW state, compile)
        fn()
    times = {name: [] for name, _ in peers}
    for _ in range(args.repeats):
        for name, fn in peers:
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
        print(
            f"  pass: {', '.join(f'{k} {v[-1]:.2f} s' for k, v in times.items())}", file=sys.stderr
        )
    step, step_med = min(times["trainer"]), statistics.median(times["trainer"])
    tokens = speech.n_tokens + text.n_tokens
    fm = flop_model(model)
    lengths = [*speech_cpu.attention_mask.sum(1).tolist(), *text_cpu.attention_mask.sum(1).tolist()]
    flops_real = sequence_flops(fm, lengths)
    processed = []
    for side in (speech_cpu, text_cpu):  # a gradient-cache step lays out each chunk alone
        chunks = split_rows(side, args.cache_chunk) if args.cache_chunk else [side]
        for chunk in chunks:
            processed += processed_lengths(trainer.layout(chunk))
    flops_processed = sequence_flops(fm, processed)
    padded = sum(processed)
    result = {
        "llm": args.llm,
        "layers": args.layers,
        "batch_size": batch_size,
        "pairs": len(batch),
        "speech_tokens": speech.n_tokens,
        "text_tokens": text.n_tokens,
        "padded_tokens": padded,
        "padded_fraction": round(1 - tokens / padded, 4),
        "precision": args.precision,
        "param_dtype": args.param_dtype,
        "optimizer": args.optimizer,
        "layout": args.layout,
        "pad_multiple": args.pad_multiple,
        "compile": args.compile,
        "cache_chunk": args.cache_chunk,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "loader_ms_per_batch": round(loader_ms, 2),
        "encode_ms": round(encode_ms, 2),
        "trainer_s": round(step, 4),
        "trainer_median_s": round(step_med, 4),
        "tokens_per_s": round(tokens / step, 1),
        "flops_rule": FLOPS_RULE.format(**fm),
        "flops_real": flops_real,
        "flops_processed": flops_processed,
        "peak_memory_mb": _peak_memory_mb(device),
        "times": {k: [round(x, 4) for x in v] for k, v in times.items()},
    }
    if with_peers:
        bare, bare_med = min(times["bare"]), statistics.median(times["bare"])
        update = min(times["bare_update"])
        result.update(
            bare_s=round(bare, 4),
            ratio=round(bare / step, 3),
            bare_median_s=round(bare_med, 4),
            ratio_median=round(bare_med / step_med, 3),
            bare_update_s=round(update, 4),
            ratio_vs_bare_update=round(update / step, 3),
        )
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        result["peak_tflops"] = peak
        for kind, flops in (("real", flops_real), ("processed", flops_processed)):
            result[f"tflops_per_s_{kind}"] = round(flops / step / 1e12, 2)
            result[f"mfu_{kind}"] = round(flops / step / (peak * 1e12), 4) if peak else None
        result["mfu"] = result["mfu_real"]  # MFU counts the real (unpadded) tokens' FLOPs
    if args.check:
        result["check"] = _check(trainer, batch)
    trainer.close()
    return result


def write_shards(folder: str, largest_batch: int) -> None:
    """Synthetic token shards, ~150 tokens per utterance (like Whisper layer-3 tokens,
    deduplicated), enough for batches of ``largest_batch`` pairs."""
    from testing.synthetic_shards import write_synthetic_shards

    per_lang = 4 * largest_batch if largest_batch <= 512 else 2 * largest_batch
    write_synthetic_shards(folder, langs=("fr", "de"), per_lang=per_lang, k=256, words=(10, 16))


def main(argv=None) -> dict:
    args = _parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="bench-trainer-")
    shards = args.shards
    if not shards:
        shards = os.path.join(tmp.name, "shards")
        write_shards(shards, max(args.sizes))
    rows = []
    for size in args.sizes:
        row = measure(args, size, shards, tmp.name)
        _report(row)
        rows.append(row)
    result = rows[0] if len(rows) == 1 else {**rows[-1], "rows": rows}
    if args.out:
        write_json(args.out, result)
    tmp.cleanup()
    return result


def _report(r: dict) -> None:
    levers = (
        f"layout {r['layout']}, params {r['param_dtype']}, compile {r['compile']}, "
        f"pad multiple {r['pad_multiple']}, cache chunk {r['cache_chunk']}"
    )
    print(
        f"trainer step: {r['llm']} x{r['layers']} layers, {r['device']}, "
        f"{r['threads']} threads, {r['precision']}; {levers}"
    )
    print(
        f"batch: {r['pairs']} pairs, {r['speech_tokens']} speech + {r['text_tokens']} text tokens "
        f"({r['padded_tokens']} processed, {r['padded_fraction']:.1%} padding)"
    )
    rows = [("trainer step, best (s/step)", r["trainer_s"])]
    if "ratio" in r:
        rows += [
            ("bare fwd+bwd, best (s/step)", r["bare_s"]),
            ("ratio trainer/bare throughput", r["ratio"]),
            ("ratio of medians", r["ratio_median"]),
            ("bare fwd+bwd+clip+AdamW, best (s)", r["bare_update_s"]),
            ("ratio trainer/bare-update", r["ratio_vs_bare_update"]),
        ]
    rows += [
        ("trainer tokens/s (real)", r["tokens_per_s"]),
        ("model GFLOP/step, real tokens", round(r["flops_real"] / 1e9, 1)),
        ("model GFLOP/step, processed", round(r["flops_processed"] / 1e9, 1)),
        ("peak memory (MB)", r["peak_memory_mb"]),
        ("loader (ms/batch)", r["loader_ms_per_batch"]),
        ("encode batch (ms)", r["encode_ms"]),
        ("model load (s)", r["load_s"]),
    ]
    if "mfu" in r:
        rows += [
            (
                "TFLOP/s real / processed",
                f"{r['tflops_per_s_real']} / {r['tflops_per_s_processed']}",
            ),
            ("MFU real / processed", f"{r['mfu_real']} / {r['mfu_processed']}"),
        ]
    if "check" in r:
        rows.append(("layout vs padded: max |diff|, min cos", str(r["check"])))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print(f"  FLOPs: {r['flops_rule']}")
    if "ratio" in r:
        print("PASS" if r["ratio"] >= 0.9 else "BELOW TARGET (0.9)")


def _worker(spec: dict) -> dict:
    """One setting in this process (``spec["argv"]``: this module's flags)."""
    return main([*spec["argv"], "--out", ""])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(worker_main({"trainer": _worker}, sys.argv[2]))
    main()
