"""Demo settings sweep: train + evaluate training variants on one demo's tokens.

Why: the demo's training settings (``pipelines/demo.py``) were picked by
comparing variants on the same token and bitext shards, one seed each; this
is the script that did it, so the figures in benchmarks/README.md can be re-run.
Every variant trains Gemma 3 270M's first 4 layers on the seen languages
(batch 16, bitext ratio 0.2 when ``--bitext`` is given) and is evaluated on
the **dev** split only (queries: dev recordings; candidates: every dev + test
sentence of the language, so the pool is not 5 sentences); one JSON line per
variant is appended to ``--results``. Settings are chosen there: with
``--test-best`` the variant with the best mean dev R@1 over the seen languages
(ties: unseen) is then evaluated once on the test split, same pool, and that
line (``"split": "test"``) is the figure to report. No other variant ever
meets the test split. ``--quick`` trains every variant 10 steps on 2 layers
(a smoke run of the procedure, not a measurement).

A variant is ``NAME=JSON``: TrainConfig fields, plus ``"model"``, ``"data"``
and ``"loss"`` dicts for DualEncoderConfig / DataConfig / LossConfig fields;
``--run NAME=RUN_DIR`` adds a run trained elsewhere on the same tokens (the
demo's own ``demo-out/run``), evaluated on dev like the others::

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


POOL = ("dev", "test")  # candidates of every query, dev or test


def _eval(run: str, split: str, args) -> dict:
    from datastore import storage
    from trainer.evaluate import EvalConfig, evaluate

    seen = tuple(args.seen.split(","))
    return evaluate(
        EvalConfig(
            run=run,
            shards=args.tokens,
            out=storage.join(run, f"report-{split}"),
            split=split,
            pool_splits=POOL,
            langs=(*seen, *args.unseen.split(",")),
            seen=seen,
        )
    )


def _line(name: str, split: str, report: dict, **extra) -> dict:
    return {
        "variant": name,
        "split": split,
        **extra,
        "r_at_1_seen": round(report["mean_r_at_1_seen"], 3),
        "r_at_1_seen_ci95": [round(x, 3) for x in report["mean_r_at_1_seen_ci95"]],
        "r_at_1_unseen": round(report["mean_r_at_1_unseen"], 3),
        "r_at_1_unseen_ci95": [round(x, 3) for x in report["mean_r_at_1_unseen_ci95"]],
        "n_queries_seen": report["n_queries_seen"],
        "n_queries_unseen": report["n_queries_unseen"],
        "bleu": report["mean_bleu"] and round(report["mean_bleu"], 1),
        "r_at_1": {k: round(v, 3) for k, v in report["r_at_1"].items()},
    }


def run_variant(name: str, spec: dict, args) -> dict:
    """Train one variant; its dev figures (never test)."""
    from datastore import storage
    from trainer.configs import DualEncoderConfig, LossConfig, TrainConfig
    from trainer.data import DataConfig
    from trainer.train import train

    spec = dict(spec)
    layers = 2 if args.quick else args.layers
    model = DualEncoderConfig(llm=args.llm, layers=layers, **spec.pop("model", {}))
    data_fields = {"batch_size": 16, "bitext_ratio": 0.2 if args.bitext else 0.0}
    data_fields.update(spec.pop("data", {}))
    seen = tuple(args.seen.split(","))
    data = DataConfig(shards=args.tokens, bitext=args.bitext, langs=seen, seed=0, **data_fields)
    steps = spec.pop("steps", 150)
    if args.quick:
        steps = 10
        spec["warmup_steps"] = min(spec.get("warmup_steps", 2), 2)
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
    return _line(name, "dev", _eval(run, "dev", args), train_s=round(train_s), run=run)


def best_on_dev(lines: list[dict]) -> dict:
    """The variant with the best mean dev R@1 on the seen languages (ties: unseen)."""
    dev = [x for x in lines if x["split"] == "dev"]
    return max(dev, key=lambda x: (x["r_at_1_seen"], x["r_at_1_unseen"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", required=True, help="a tokenize --out folder (demo-out/tokens)")
    p.add_argument("--bitext", help="a bitext --out folder (demo-out/bitext)")
    p.add_argument("--variant", action="append", default=[], help="NAME=JSON (repeatable)")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        help="NAME=RUN_DIR: a run already trained on these tokens (e.g. demo-out/run, the "
        "demo's own settings), evaluated on dev like the variants (repeatable)",
    )
    p.add_argument("--seen", default=",".join(SEEN), help="languages trained on (and 'seen')")
    p.add_argument("--unseen", default=",".join(UNSEEN), help="languages only evaluated")
    p.add_argument("--llm", default="gemma-3-270m")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--work", default="benchmarks/results/demo-sweep", help="run folders")
    p.add_argument("--results", default="benchmarks/results/demo_sweep.jsonl")
    p.add_argument("--test-best", action="store_true", help="then test the dev-chosen variant")
    p.add_argument("--quick", action="store_true", help="10 steps, 2 layers: a smoke run")
    args = p.parse_args(argv)
    variants = []
    for item in args.variant:
        name, sep, spec = item.partition("=")
        if not sep:
            p.error(f"--variant wants NAME=JSON, got {item!r}")
        variants.append((name, json.loads(spec or "{}")))
    runs = []
    for item in args.run:
        name, sep, run = item.partition("=")
        if not sep:
            p.error(f"--run wants NAME=RUN_DIR, got {item!r}")
        runs.append((name, run))
    if not variants and not runs:
        p.error("give at least one --variant or --run")
    lines = [_write(args, run_variant(name, spec, args)) for name, spec in variants]
    lines += [
        _write(args, _line(name, "dev", _eval(run, "dev", args), run=run)) for name, run in runs
    ]
    if args.test_best:
        chosen = best_on_dev(lines)
        test = _eval(chosen["run"], "test", args)
        _write(args, _line(chosen["variant"], "test", test, chosen_on="dev", of=len(lines)))
    return 0


def _write(args, line: dict) -> dict:
    print(json.dumps(line), flush=True)
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(line) + "\n")
    return line


if __name__ == "__main__":
    raise SystemExit(main())
