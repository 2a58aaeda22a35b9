"""The model stage against the bare encoder: what assignment, dedup and copies add.

GPU issue, item 2: a tokenize job's model stage (:class:`tokenizer.speech_model.SpeechModel`:
features, nearest-centroid assignment, downsampling and run-length dedup,
host copies) should cost at most 10 % more than the bare work it wraps. The
peer, measured in the same process and interleaved with it (best of
``--repeats``): ``Encoder.encode`` on the same batch and one
nearest-centroid argmin per clip (``||c||^2 - 2 f.c``, torch, one matmul;
on ``--device cuda`` both stay on the GPU until the ids).
Both see the same decoded clips; decoding is not timed. Tokens are checked
equal (without dedup) so the two do the same work.

::

    python -m benchmarks.model_stage --audio benchmarks/results/retrieval-full-work/corpus/fleurs \\
        --codebook benchmarks/results/retrieval-full-work/codebook --clips 96 --batch-seconds 240
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

from benchmarks._harness import write_json


def _clips(folder: str, n: int):
    from tokenizer.audio import load_waveform
    from tokenizer.audio_config import AudioConfig

    found = [
        glob.glob(os.path.join(folder, "**", f"*.{x}"), recursive=True) for x in ("wav", "mp3")
    ]
    files = sorted(f for group in found for f in group)[:n]
    if not files:
        raise SystemExit(f"no .wav or .mp3 files under {folder}")
    return [load_waveform(f, AudioConfig()) for f in files]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio", required=True, help="folder searched for .wav and .mp3 clips")
    p.add_argument("--codebook", required=True, help="codebook folder (the encoder's)")
    p.add_argument("--encoder", default="whisper-base", help="registry name or hf:DIR")
    p.add_argument("--layer", type=int, help="encoder layer (default: the encoder's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clips", type=int, default=96)
    p.add_argument("--batch-seconds", type=float, default=240.0, help="audio per model call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dedup", action="store_true", help="the job's run-length dedup on")
    p.add_argument("--json", default="benchmarks/results/model_stage.json")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from kmeans import Codebook
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.speech_model import SpeechModel, TokenTask

    waves = _clips(args.audio, args.clips)
    batches, batch, seconds = [], [], 0.0
    for w in waves:
        batch.append(w)
        seconds += len(w) / 16000
        if seconds >= args.batch_seconds:
            batches.append(batch)
            batch, seconds = [], 0.0
    batches += [batch] if batch else []
    layer = {} if args.layer is None else {"layer": args.layer}
    config = EncoderConfig(
        name=args.encoder, device=args.device, max_batch_seconds=args.batch_seconds, **layer
    )
    model = SpeechModel.load(config, TokenTask(codebook=args.codebook, dedup=args.dedup))
    encoder = model.encoder
    centroids = torch.from_numpy(Codebook.load(args.codebook).centroids.astype(np.float32))
    centroids = centroids.to(args.device)
    norms = (centroids * centroids).sum(1)
    on_device = args.device != "cpu"

    def bare(batch):
        out = []
        for f in encoder.encode(batch, as_tensors=on_device):
            f = f.float() if on_device else torch.from_numpy(f)
            out.append((norms - 2 * f @ centroids.T).argmin(1).cpu().numpy())
        return out

    def sync():
        if on_device:
            torch.cuda.synchronize()

    audio_s = sum(len(w) for w in waves) / 16000
    times = {"bare": [], "model": []}
    for _ in range(args.repeats):
        for name, fn in (("bare", bare), ("model", model.run)):
            sync()
            start = time.perf_counter()
            outs = [fn(b) for b in batches]
            sync()
            times[name].append(time.perf_counter() - start)
            if name == "bare":
                bare_tokens = [t for out in outs for t in out]
            else:
                model_tokens = [t.tokens for o in outs for t in o]
    same = None
    if not args.dedup:
        same = all(np.array_equal(a, b) for a, b in zip(bare_tokens, model_tokens, strict=True))
    best = {k: min(v) for k, v in times.items()}
    result = {
        "encoder": args.encoder,
        "device": args.device,
        "clips": len(waves),
        "audio_s": round(audio_s, 1),
        "batches": len(batches),
        "batch_seconds": args.batch_seconds,
        "dedup": args.dedup,
        "threads": torch.get_num_threads(),
        "bare_s": round(best["bare"], 3),
        "model_s": round(best["model"], 3),
        "model_over_bare": round(best["model"] / best["bare"], 3),
        "target": "<= 1.10",
        "tokens_equal": same,
        "times": {k: [round(x, 3) for x in v] for k, v in times.items()},
    }
    print(json.dumps(result, indent=2))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
