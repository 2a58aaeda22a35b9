"""Trainer step throughput against a bare forward/backward of the same model and batch.

The peer, measured in the same run and interleaved with it (these machines
are noisy): the same DualEncoder, the same already-encoded batch, the same
autocast, forward + loss + backward and nothing else. The trainer step adds
what a real step does: tokenising the batch, lr schedule, gradient clipping,
the AdamW update, metrics. Target: trainer / bare throughput >= 0.9. A second
peer, a minimal hand-written loop (fwd + bwd + clip + AdamW), isolates the
trainer's own overhead from the optimizer's. The data loader's cost per batch
is reported on its own. Timings are best-of-N (noise only adds time).

On CUDA it also reports tokens/s and model FLOPs utilisation in bf16
(6 x dense parameters x tokens + attention, against ``--peak-tflops`` or the
card's dense bf16 peak).

    python -m benchmarks.trainer --quick                   # Gemma truncated to 1 layer
    python -m benchmarks.trainer --layers 4 --batch-size 16  # the prototype's setting
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

# Dense bf16 peaks (TFLOP/s, no sparsity) by device-name fragment.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 125.0,
}


def _parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--llm", default="gemma-3-270m")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--device", default="auto")
    p.add_argument("--shards", help="token shards to draw the batch from (default: synthetic)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--peak-tflops", type=float, help="device bf16 peak for MFU (CUDA)")
    p.add_argument("--out", default="benchmarks/results/trainer.json")
    p.add_argument("--quick", action="store_true", help="1 layer, batch 8, 5 repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.layers, args.batch_size, args.repeats = 1, 8, 5
    return args


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flops_per_step(model, speech, text) -> float:
    """6 x dense parameters x padded tokens + attention (QK^T and AV, fwd + bwd)."""
    cfg = model.backbone.config
    dense = sum(p.numel() for n, p in model.backbone.named_parameters() if "embed_tokens" not in n)
    width = cfg.num_attention_heads * getattr(
        cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads
    )
    flops = 0.0
    for enc in (speech, text):
        batch, length = enc.input_ids.shape
        flops += 6.0 * dense * batch * length
        flops += 12.0 * cfg.num_hidden_layers * batch * length * length * width
    return flops


def main(argv=None) -> dict:
    args = _parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from trainer.loss import dual_encoder_loss
    from trainer.model import DualEncoderConfig
    from trainer.synthetic import write_synthetic_shards
    from trainer.train import TrainConfig, Trainer, debug_config

    tmp = tempfile.TemporaryDirectory(prefix="bench-trainer-")
    shards = args.shards
    if not shards:
        shards = os.path.join(tmp.name, "shards")
        # ~150 tokens per utterance: like Whisper layer-3 tokens, deduplicated.
        write_synthetic_shards(
            shards, langs=("fr", "de"), per_lang=4 * args.batch_size, k=256, words=(10, 16)
        )
    base = debug_config(shards, os.path.join(tmp.name, "run"), steps=10_000).to_dict()
    base["model"] = DualEncoderConfig(llm=args.llm, layers=args.layers).__dict__
    base["data"].update(batch_size=args.batch_size, max_tokens=10**9, shuffle_buffer=10**6)
    base.update(precision=args.precision, device=args.device, warmup_steps=10)
    started = time.perf_counter()
    trainer = Trainer(TrainConfig.from_dict(base))
    load_s = time.perf_counter() - started
    model, device = trainer.model, trainer.device

    t0 = time.perf_counter()
    batches = [trainer.loader.next_batch() for _ in range(8)]
    loader_ms = (time.perf_counter() - t0) / len(batches) * 1000
    batch = max(batches, key=len)
    t0 = time.perf_counter()
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
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    def trainer_step():
        trainer.train_step([batch])

    peers = (("bare", bare_step), ("bare_update", bare_update), ("trainer", trainer_step))
    for _, fn in peers:  # warm-up (allocator, autocast caches, AdamW state)
        fn()
    times = {name: [] for name, _ in peers}
    for _ in range(args.repeats):
        for name, fn in peers:
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    # Best of N: on a shared machine noise only ever adds time (timeit's rule); medians kept too.
    bare, step = min(times["bare"]), min(times["trainer"])
    bare_med, step_med = statistics.median(times["bare"]), statistics.median(times["trainer"])
    update = min(times["bare_update"])
    tokens = speech.n_tokens + text.n_tokens
    padded = speech.input_ids.numel() + text.input_ids.numel()
    result = {
        "llm": args.llm,
        "layers": args.layers,
        "pairs": len(batch),
        "speech_tokens": speech.n_tokens,
        "text_tokens": text.n_tokens,
        "padded_tokens": padded,
        "precision": args.precision,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "loader_ms_per_batch": round(loader_ms, 2),
        "encode_ms": round(encode_ms, 2),
        "bare_s": round(bare, 4),
        "trainer_s": round(step, 4),
        "ratio": round(bare / step, 3),
        "bare_median_s": round(bare_med, 4),
        "trainer_median_s": round(step_med, 4),
        "ratio_median": round(bare_med / step_med, 3),
        "bare_update_s": round(update, 4),
        "ratio_vs_bare_update": round(update / step, 3),
        "tokens_per_s": round(tokens / step, 1),
        "times": {k: [round(x, 4) for x in v] for k, v in times.items()},
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        flops = _flops_per_step(model, speech, text)
        result["tflops_per_s"] = round(flops / step / 1e12, 2)
        result["mfu"] = round(flops / step / (peak * 1e12), 4) if peak else None
    _report(result)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    trainer.close()
    tmp.cleanup()
    return result


def _report(r: dict) -> None:
    print(
        f"trainer step vs bare forward/backward: {r['llm']} x{r['layers']} layers, {r['device']}, "
        f"{r['threads']} threads, {r['precision']}"
    )
    print(
        f"batch: {r['pairs']} pairs, {r['speech_tokens']} speech + {r['text_tokens']} text tokens "
        f"({r['padded_tokens']} padded)"
    )
    rows = [
        ("bare fwd+bwd, best (s/step)", r["bare_s"]),
        ("trainer step, best (s/step)", r["trainer_s"]),
        ("ratio trainer/bare throughput", r["ratio"]),
        ("ratio of medians", r["ratio_median"]),
        ("bare fwd+bwd+clip+AdamW, best (s)", r["bare_update_s"]),
        ("ratio trainer/bare-update", r["ratio_vs_bare_update"]),
        ("trainer tokens/s", r["tokens_per_s"]),
        ("loader (ms/batch)", r["loader_ms_per_batch"]),
        ("encode batch (ms)", r["encode_ms"]),
        ("model load (s)", r["load_s"]),
    ]
    if "mfu" in r:
        rows += [("TFLOP/s", r["tflops_per_s"]), ("MFU", r["mfu"])]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print("PASS" if r["ratio"] >= 0.9 else "BELOW TARGET (0.9)")


if __name__ == "__main__":
    main()
