"""What, beyond the weights, separates the LLM arm from the random one: one ablation each.

:mod:`benchmarks.retrieval_full` found LLM initialisation behind random
initialisation after 24 steps. The arms differ only in the backbone's
weights, but several settings may suit one set of weights and not the other.
Each variant below changes one of them on the ``llm`` arm, trains as the
learning curve does (``--layers``, ``--max-speech-tokens``, the same data and
seed; ``--steps`` steps, warm-up and cosine over them) and is read on **dev**
(seen languages: the only split any choice may use). Next to the two
baselines, each line says whether the change closes the gap to ``random``:

- ``lr-new``: the new rows (audio rows, projection, logit scale) learn at 10x
  the backbone's rate instead of 100x (``--lr-new 3e-4``);
- ``audio-random``: audio rows drawn at random, at the scale of the text rows
  (the paper's start), instead of copied from the characters they align with;
- ``no-warmup``: no linear warm-up (10 steps in every arm otherwise);
- ``no-spread-out``: the spread-out term off (weight 0.1 otherwise);
- ``lr-match``: the backbone's lr raised 1.73x (5.2e-5), so AdamW moves
  Gemma's weights as far relative to their size as the random arm's
  (:mod:`benchmarks.arm_diagnostics`);
- ``spread-out-1``: the spread-out term at 1.0 (the demo's), against the
  near-collinear pooled states Gemma starts from.

Finished runs are kept in ``LEDGER`` (in the repository), so the table
survives the machine its checkpoints lived on; it prints the table
benchmarks/README.md quotes::

    python -m benchmarks.retrieval_ablations --steps 300   # ~4 s a step alone on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time

from benchmarks.retrieval_full import (
    Plan,
    _configs,
    _evaluate,
    _means,
    default_seen,
    keep_ledger_numerics,
    prepare_data,
    read_ledger,
    write_ledger,
)
from benchmarks.retrieval_summary import pct
from datastore import storage

LEDGER = "benchmarks/retrieval_ablation_runs"
# name -> (arm, TrainConfig changes, LossConfig changes)
VARIANTS = {
    "random": ("random", {}, {}),
    "llm": ("llm", {}, {}),
    "lr-new": ("llm", {"lr_new": 3e-4}, {}),
    "audio-random": ("llm", {"audio_init": "random"}, {}),
    "no-warmup": ("llm", {"warmup_steps": 0}, {}),
    "no-spread-out": ("llm", {}, {"spread_out_weight": 0.0}),
    # From benchmarks.arm_diagnostics (step 0, 4 layers): Gemma's matrices have 1.73x
    # the random draw's RMS, so the same lr moves them 1.73x less relatively; and its
    # pooled states are nearly one direction (speech-speech cosine 0.999, text 0.954).
    "lr-match": ("llm", {"lr": 5.2e-5}, {}),
    "spread-out-1": ("llm", {}, {"spread_out_weight": 1.0}),
}


def run_variant(plan: Plan, data: dict, name: str, seed: int) -> dict:
    """Train one variant for ``plan.steps`` steps and evaluate dev; cached in the ledger."""
    from trainer.checkpoint import OPTIMIZER_FILE
    from trainer.train import train

    key = f"{name}-{plan.steps}steps-{plan.max_speech_tokens}tok-L{plan.layers}-s{seed}"
    ledger_file = storage.join(LEDGER, f"{key}.json")
    record = read_ledger(ledger_file, data)
    if record is not None:
        return record
    arm, train_changes, loss_changes = VARIANTS[name]
    if not train_changes and not loss_changes:  # a baseline: the curve may have run it
        record = _from_curve(plan, data, arm, seed)
        if record is not None:
            return write_ledger(ledger_file, record, data)
    config = _configs(plan, data, arm, seed, storage.join(plan.work, "ablations", key))
    config = dataclasses.replace(
        config, loss=dataclasses.replace(config.loss, **loss_changes), **train_changes
    )
    storage.delete(config.out)  # a cut-short run restarts: it costs minutes
    start = time.perf_counter()
    train(config)
    train_s = time.perf_counter() - start
    report = _evaluate(plan, data, config.out, "dev")
    ranks = json.loads(storage.read_text(storage.join(config.out, "eval-dev", "ranks.json")))
    record = {
        "variant": name,
        "arm": arm,
        "changes": {**train_changes, **loss_changes},
        "seed": seed,
        "steps": plan.steps,
        "train_s": round(train_s),
        "dev": _means(plan, report),
        "ranks": {x: ranks[x] for x in plan.seen},
    }
    storage.delete(storage.join(config.out, OPTIMIZER_FILE))
    return write_ledger(ledger_file, record, data)


def _from_curve(plan: Plan, data: dict, arm: str, seed: int) -> dict | None:
    """A baseline as the learning curve trained it (same config, schedule over
    ``plan.steps``), read at its step-``plan.steps`` checkpoint on dev; None when the
    curve's ledger has no such run with dev ranks."""
    from benchmarks.retrieval_curve import CURVE, run_name
    from benchmarks.retrieval_curve import LEDGER as CURVE_LEDGER

    if plan.steps != max(CURVE):
        return None
    file = storage.join(CURVE_LEDGER, f"{run_name(plan, arm, seed, CURVE)}.json")
    curve = read_ledger(file, data)  # stops if the curve ran on other tokens
    if curve is None:
        return None
    ranks = curve.get("dev_ranks", {}).get(str(plan.steps))
    if ranks is None:
        return None
    return {
        "variant": arm,
        "arm": arm,
        "changes": {},
        "seed": seed,
        "steps": plan.steps,
        "train_s": round(curve["train_s"]),
        "dev": curve["dev"][str(plan.steps)],
        "ranks": {x: ranks[x] for x in plan.seen},
        "from": file,
    }


def _hits(record: dict) -> dict[str, list[float]]:
    return {x: [float(r == 0) for r in v["ranks"]] for x, v in record["ranks"].items()}


def summarize(records: dict[str, dict]) -> list[dict]:
    """Each variant's dev R@1 (seen) and its difference to ``llm`` and to ``random``,
    95 % bootstrap intervals over queries (paired by query for the differences)."""
    from trainer import intervals

    hits = {name: _hits(r) for name, r in records.items()}

    def diff(a: str, b: str):
        d = {x: [p - q for p, q in zip(hits[a][x], hits[b][x], strict=True)] for x in hits[a]}
        return intervals.bootstrap_stratified_mean(d)

    rows = []
    for name, r in records.items():
        rows.append(
            {
                "variant": name,
                "changes": r["changes"],
                "dev_seen": r["dev"]["seen"],
                "ci95": intervals.bootstrap_stratified_mean(hits[name]),
                "n_queries": sum(len(v) for v in hits[name].values()),
                "vs_llm": r["dev"]["seen"] - records["llm"]["dev"]["seen"],
                "vs_llm_ci95": diff(name, "llm"),
                "vs_random": r["dev"]["seen"] - records["random"]["dev"]["seen"],
                "vs_random_ci95": diff(name, "random"),
                "train_s": r["train_s"],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    def ci(b):
        return f"[{pct(b[0])}, {pct(b[1])}]"

    lines = [
        "| variant | change | dev R@1 seen % | minus llm (points) | minus random (points) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        change = ", ".join(f"`{k}={v}`" for k, v in r["changes"].items()) or "-"
        lines.append(
            f"| {r['variant']} | {change} | {pct(r['dev_seen'])} {ci(r['ci95'])} "
            f"({r['n_queries']} q) | {pct(r['vs_llm'])} {ci(r['vs_llm_ci95'])} | "
            f"{pct(r['vs_random'])} {ci(r['vs_random_ci95'])} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=Plan.work, help="cached data and run folders")
    p.add_argument("--json", default="benchmarks/results/retrieval_ablations.json")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", type=int, default=4, help="Gemma layers kept (as the curve)")
    p.add_argument("--max-speech-tokens", type=int, default=96)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    plan = Plan(
        work=args.work,
        seen=default_seen(),
        steps=args.steps,
        layers=args.layers,
        max_speech_tokens=args.max_speech_tokens,
    )
    keep_ledger_numerics()
    data = prepare_data(plan)
    records = {}
    for name in ("random", "llm", *(v for v in args.variants if v not in ("random", "llm"))):
        t0 = time.perf_counter()
        records[name] = run_variant(plan, data, name, args.seed)
        print(
            f"{time.strftime('%H:%M:%S')} {name}: dev R@1 seen "
            f"{pct(records[name]['dev']['seen'])} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    rows = summarize(records)
    print(markdown(rows))
    storage.write_text(args.json, json.dumps({"plan": dataclasses.asdict(plan), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
