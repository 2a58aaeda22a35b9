"""Demo settings sweep: train + evaluate training variants on one demo's tokens.

Why: the demo's training settings (``pipelines/demo.py``) were picked by
comparing variants on the same token and bitext shards, one seed each; this
is the script that did it, so the figures in the issue notes can be re-run.
Every variant trains Gemma 3 270M's first 4 layers on the seen languages
(batch 16, bitext ratio 0.2 when ``--bitext`` is given) and evaluates the
test split; one JSON line per variant is appended to ``--results``.

A variant is ``NAME=JSON``: TrainConfig fields, plus ``"model"``, ``"data"``
and ``"loss"`` dicts for DualEncoderConfig / DataConfig / LossConfig fields::

    python -m benchmarks.demo_sweep --tokens demo-out/tokens --bitext demo-out/bitext \\
        --variant 'lr3e-5={"lr": 3e-5, "steps": 150}' \\
        --variant 'jitter={"lr": 3e-5, "steps": 100, "data": {"length_jitter": 0.3}}'

Not part of ``make bench`` (each variant trains for minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import time

SEEN = ("fr", "de", "es", "it")
UNSEEN = ("sw", "hi", "vi", "en")


def run_variant(name: str, spec: dict, args) -> dict:
    from datastore import storage
    from trainer.data import DataConfig
    from trainer.evaluate import EvalConfig, evaluate
    from trainer.loss import LossConfig
    from trainer.model import DualEncoderConfig
    from trainer.train import TrainConfig, train

    spec = dict(spec)
    model = DualEncoderConfig(llm=args.llm, layers=args.layers, **spec.pop("model", {}))
    data_fields = {"batch_size": 16, "bitext_ratio": 0.2 if args.bitext else 0.0}
    data_fields.update(spec.pop("data", {}))
    seen = tuple(args.seen.split(","))
    data = DataConfig(shards=args.tokens, bitext=args.bitext, langs=seen, seed=0, **data_fields)
    steps = spec.pop("steps", 150)
    loss = LossConfig(**spec.pop("loss", {}))
    run = storage.join(args.work, name)
    storage.delete(run)
    start = time.perf_counter()
    train(
        TrainConfig(
            out=run,
            model=model,
            data=data,
            loss=loss,
            steps=steps,
            save_every=steps,
            progress=False,
            **spec,
        )
    )
    train_s = time.perf_counter() - start
    report = evaluate(
        EvalConfig(
            run=run,
            shards=args.tokens,
            out=storage.join(run, "report"),
            langs=(*seen, *args.unseen.split(",")),
            seen=seen,
        )
    )
    return {
        "variant": name,
        "train_s": round(train_s),
        "r_at_1_seen": round(report["mean_r_at_1_seen"], 3),
        "r_at_1_unseen": round(report["mean_r_at_1_unseen"], 3),
        "bleu": report["mean_bleu"] and round(report["mean_bleu"], 1),
        "r_at_1": {k: round(v, 3) for k, v in report["r_at_1"].items()},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", required=True, help="a tokenize --out folder (demo-out/tokens)")
    p.add_argument("--bitext", help="a bitext --out folder (demo-out/bitext)")
    p.add_argument("--variant", action="append", required=True, help="NAME=JSON (repeatable)")
    p.add_argument("--seen", default=",".join(SEEN), help="languages trained on (and 'seen')")
    p.add_argument("--unseen", default=",".join(UNSEEN), help="languages only evaluated")
    p.add_argument("--llm", default="gemma-3-270m")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--work", default="benchmarks/results/demo-sweep", help="run folders")
    p.add_argument("--results", default="benchmarks/results/demo_sweep.jsonl")
    args = p.parse_args(argv)
    variants = []
    for item in args.variant:
        name, sep, spec = item.partition("=")
        if not sep:
            p.error(f"--variant wants NAME=JSON, got {item!r}")
        variants.append((name, json.loads(spec or "{}")))
    for name, spec in variants:
        line = run_variant(name, spec, args)
        print(json.dumps(line), flush=True)
        os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
