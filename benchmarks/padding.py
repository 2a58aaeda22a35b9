"""Padded tokens per layout on real token shards: how much of the work is padding.

Draws the batches a training run would draw (the trainer's own loader and
encoders: bucketing, prefixes, caps, bitext) and counts, per side, the real
tokens and the slots each layout makes the model process:

- ``padded``: right-padded rows (``B x L_max``; ``--pad-multiple`` rounds ``L_max`` up);
- ``packed``: best-fit rows as wide as the longest sequence (``trainer.packing``);
- ``varlen``: one flat row (only ``--pad-multiple`` rounding).

Padded fraction = (slots - real tokens) / slots. Defaults are the demo's
training settings (``pipelines/demo.py``: 12 seen languages, batch 16,
bitext ratio 0.2, length jitter 0.3, first 384 speech tokens, 80 steps)::

    python -m benchmarks.padding --shards demo-out/tokens --bitext demo-out/bitext
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

SEEN = "fr,de,es,it,ca,pt,nl,sv,et,sl,id,tr"


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", required=True, help="a tokenize --out folder")
    p.add_argument("--bitext", help="a bitext --out folder")
    p.add_argument("--langs", default=SEEN)
    p.add_argument("--llm", default="gemma-3-270m", help="for its tokenizer (1 layer is loaded)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=16384)
    p.add_argument("--length-jitter", type=float, default=0.3)
    p.add_argument("--max-speech-tokens", type=int, default=384)
    p.add_argument("--bitext-ratio", type=float, default=0.2)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--pad-multiple", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/padding.json")
    return p.parse_args(argv)


def measure(args) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from trainer.configs import DualEncoderConfig, TrainConfig
    from trainer.data import DataConfig
    from trainer.packing import pack, pad_to_multiple
    from trainer.train import Trainer

    with tempfile.TemporaryDirectory(prefix="bench-padding-") as tmp:
        config = TrainConfig(
            out=os.path.join(tmp, "run"),
            model=DualEncoderConfig(
                llm=args.llm, layers=1, max_speech_tokens=args.max_speech_tokens
            ),
            data=DataConfig(
                shards=args.shards,
                bitext=args.bitext,
                langs=tuple(args.langs.split(",")) if args.langs else None,
                batch_size=args.batch_size,
                max_tokens=args.max_tokens,
                bitext_ratio=args.bitext_ratio if args.bitext else 0.0,
                length_jitter=args.length_jitter,
                seed=args.seed,
            ),
            steps=args.steps,
            device="cpu",
            progress=False,
        )
        trainer = Trainer(config)
        pad = trainer.model.pad_id
        m = args.pad_multiple
        counts = {
            side: {"real": 0, "padded": 0, "packed": 0, "varlen": 0} for side in ("speech", "text")
        }
        for _ in range(args.steps):
            speech, text, _ = trainer.encode_cpu(trainer.loader.next_batch())
            for side, enc in (("speech", speech), ("text", text)):
                c = counts[side]
                c["real"] += enc.n_tokens
                c["padded"] += pad_to_multiple(enc, m, pad).input_ids.numel()
                c["packed"] += pack(enc, layout="rows", multiple=m, pad_id=pad).n_slots
                c["varlen"] += pack(enc, layout="flat", multiple=m, pad_id=pad).n_slots
        trainer.close()
    counts["total"] = {k: counts["speech"][k] + counts["text"][k] for k in counts["speech"]}
    fractions = {
        side: {
            layout: round(1 - c["real"] / c[layout], 4) for layout in ("padded", "packed", "varlen")
        }
        for side, c in counts.items()
    }
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    return {"settings": settings, "tokens": counts, "padded_fraction": fractions}


def main(argv=None) -> dict:
    args = _parse(argv)
    result = measure(args)
    print(f"padded share of processed tokens, {args.steps} batches of {args.shards}:")
    print(
        f"  {'side':<7} {'real':>9} " + " ".join(f"{k:>16}" for k in ("padded", "packed", "varlen"))
    )
    for side, c in result["tokens"].items():
        f = result["padded_fraction"][side]
        cells = " ".join(f"{c[k]:>9} ({f[k]:5.1%})" for k in ("padded", "packed", "varlen"))
        print(f"  {side:<7} {c['real']:>9} {cells}")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
