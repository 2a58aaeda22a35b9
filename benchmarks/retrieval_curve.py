"""The LLM-initialisation claim as a learning curve: arms x step counts.

:mod:`benchmarks.retrieval_full` tested the claim at one depth of training (24
steps of 16 pairs, all 18 layers) and found LLM initialisation no better than
random. 24 steps may be too few for the pretrained geometry to meet the new
audio rows, so here every arm (``random``, ``llm``, ``llm-bitext``; the same
data, settings and seeds as there) trains longer on a cheaper backbone cut
(``--layers``, ``--max-speech-tokens``: stated in the table) and is read at
several step counts spanning 10x (``--curve``, default 30, 60, 120, 300).

One run per arm and seed gives the whole curve: at each step count ``S`` the
run is evaluated on **dev** (seen languages only) at ``S/2`` and ``S``, the
better is chosen, and **test** is evaluated once for that choice. Three seeds
at every step count; intervals as in ``retrieval_full`` (bootstrap over
queries of the seed-averaged outcome, t over seeds; LLM - random paired by
query). Every stage is cached in ``--work`` (data shared with
``retrieval_full``), so an interrupted curve resumes where it stopped::

    python -m benchmarks.retrieval_curve                         # hours, resumable
    python -m benchmarks.retrieval_curve --measure 3             # s/step only
    python -m benchmarks.retrieval_curve --markdown              # the tables benchmarks/README.md quotes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time

from benchmarks.retrieval_full import (
    ARMS,
    Plan,
    _bleu,
    _configs,
    _evaluate,
    _means,
    default_seen,
    keep_ledger_numerics,
    measure,
    prepare_data,
    read_ledger,
    write_ledger,
)
from benchmarks.retrieval_summary import curve_markdown, pct, print_table, summarize
from datastore import storage

CURVE = (30, 60, 120, 300)
# Finished runs, kept in the repository: the work folder (checkpoints, ~1 GB a
# run) lives on one machine, while the curve takes several sessions' background
# time. A run found here is never trained again; its test ranks travel with it.
LEDGER = "benchmarks/retrieval_curve_runs"


def checkpoints(curve: tuple[int, ...]) -> list[int]:
    """Every step a run is evaluated at on dev: each count and its half."""
    return sorted({s for c in curve for s in (c // 2, c)})


def run_name(plan: Plan, arm: str, seed: int, curve: tuple[int, ...]) -> str:
    return (
        f"{arm}-curve{'-'.join(map(str, curve))}-{plan.max_speech_tokens}tok"
        f"-L{plan.layers or 'all'}-{plan.precision}-s{seed}"
    )


def ledger_records(plan: Plan, arms, curve: tuple[int, ...]) -> dict[str, list[dict]]:
    """Every finished run in the ledger, per arm in seed order (no data, no training)."""
    records: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in plan.seeds:
        for arm in arms:
            file = storage.join(LEDGER, f"{run_name(plan, arm, seed, curve)}.json")
            if storage.exists(file):
                records[arm].append(json.loads(storage.read_text(file)))
    return {arm: recs for arm, recs in records.items() if recs}


def run_curve(plan: Plan, data: dict, arm: str, seed: int, curve: tuple[int, ...]) -> dict:
    """One run of ``max(curve)`` steps: dev at every checkpoint, test once per step count.

    Cached in ``result.json``; an interrupted run resumes from its last checkpoint."""
    from trainer.checkpoint import CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, read_config
    from trainer.train import train

    name = run_name(plan, arm, seed, curve)
    ledger_file = storage.join(LEDGER, f"{name}.json")
    record = read_ledger(ledger_file, data)
    if record is not None:
        return record
    run = storage.join(plan.work, "curve-runs", name)
    result_file = storage.join(run, "result.json")
    if storage.exists(result_file):
        return _to_ledger(ledger_file, json.loads(storage.read_text(result_file)), data, run)
    config = _configs(plan, data, arm, seed, run)
    record = {"arm": arm, "seed": seed, "train_s": 0.0, "dev": {}, "at": {}}
    for step in checkpoints(curve):
        folder = storage.join(run, f"step-{step}")
        if not storage.exists(storage.join(folder, CONFIG_FILE)):
            try:
                done = int(read_config(run)["step"])
            except Exception:  # no run yet, or one killed before its first checkpoint
                done = 0
            start = time.perf_counter()
            train(config, resume=done > 0, stop_after=step - done)
            record["train_s"] += time.perf_counter() - start
            storage.makedirs(folder)
            for file in (MODEL_FILE, CONFIG_FILE):  # a loadable run folder of this step
                storage.write_bytes(
                    storage.join(folder, file), storage.read_bytes(storage.join(run, file))
                )
        record["dev"][step] = _means(plan, _evaluate(plan, data, folder, "dev"))
    for count in curve:
        chosen = max((count // 2, count), key=lambda s: (record["dev"][s]["seen"], s))
        folder = storage.join(run, f"step-{chosen}")
        test = _evaluate(plan, data, folder, "test")
        record["at"][count] = {
            "chosen_step": chosen,
            "test": {**_means(plan, test), "bleu": _bleu(plan, test)},
            "test_dir": storage.join(folder, "eval-test"),
        }
    storage.delete(storage.join(run, OPTIMIZER_FILE))  # the curve never resumes a done run
    storage.write_text(result_file, json.dumps(record, indent=2))
    return _to_ledger(ledger_file, record, data, run)


def _to_ledger(ledger_file: str, record: dict, data: dict, run: str) -> dict:
    """The record with each step count's test ranks and each checkpoint's dev ranks
    inline (the ablations pair their variants with these runs by query), written to
    the ledger."""
    record = json.loads(json.dumps(record))  # str keys, a copy
    for at in record["at"].values():
        at["ranks"] = json.loads(storage.read_text(storage.join(at.pop("test_dir"), "ranks.json")))
    record["dev_ranks"] = dev_ranks(run)
    return write_ledger(ledger_file, record, data)


def dev_ranks(run: str) -> dict[str, dict]:
    """Per checkpoint step: the dev evaluation's per-query ranks (``ranks.json``)."""
    out = {}
    for ranks in storage.glob(storage.join(run, "step-*", "eval-dev", "ranks.json")):
        step = ranks.rsplit("step-", 1)[1].split("/", 1)[0]
        out[step] = json.loads(storage.read_text(ranks))
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def backfill_dev_ranks(plan: Plan, data: dict, arms, curve: tuple[int, ...]) -> list[str]:
    """Add dev ranks to ledger runs finished before the ledger kept them, where their
    run folder is still on this machine; returns the files rewritten."""
    done = []
    for seed in plan.seeds:
        for arm in arms:
            name = run_name(plan, arm, seed, curve)
            file = storage.join(LEDGER, f"{name}.json")
            run = storage.join(plan.work, "curve-runs", name)
            if not storage.exists(run):
                continue
            record = read_ledger(file, data)  # None: not there; other data: stops
            if record is None or record.get("dev_ranks"):
                continue
            record.pop("codebook_sha256")
            record["dev_ranks"] = dev_ranks(run)
            if record["dev_ranks"]:
                write_ledger(file, record, data)
                done.append(file)
    return done


def at_count(records: dict[str, list[dict]], count: int) -> dict[str, list[dict]]:
    """Each run's record at one step count, shaped as ``retrieval_full``'s runs."""
    out = {}
    for arm, recs in records.items():
        out[arm] = [
            {"arm": arm, "seed": r["seed"], "train_s": r["train_s"], **r["at"][str(count)]}
            for r in recs
        ]
    return out


def train_curve(plan: Plan, args, curve: tuple[int, ...], start: float) -> dict | None:
    """Train (or read from the ledger) every run; None when only measuring."""
    data = prepare_data(plan)
    print(f"data ready ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.measure:
        print(json.dumps(measure(plan, data, args.measure)), flush=True)
        return None
    records: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    for seed in plan.seeds:  # seed-major: a cut-short curve has every arm's first seeds
        for arm in args.arms:
            t0 = time.perf_counter()
            rec = json.loads(json.dumps(run_curve(plan, data, arm, seed, curve)))  # str keys
            records[arm].append(rec)
            figures = ", ".join(
                f"{c}: {pct(rec['at'][str(c)]['test']['seen'])}/"
                f"{pct(rec['at'][str(c)]['test']['unseen'])}"
                for c in curve
            )
            print(
                f"{time.strftime('%H:%M:%S')} {arm} seed {seed} (test R@1 seen/unseen by "
                f"steps) {figures} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    return records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=Plan.work, help="cached stages and runs")
    p.add_argument("--json", default="benchmarks/results/retrieval_curve.json")
    p.add_argument("--curve", default=",".join(map(str, CURVE)), help="step counts")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--layers", type=int, default=4, help="Gemma layers kept (4: see premise)")
    p.add_argument("--max-speech-tokens", type=int, default=96)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="fp32")
    p.add_argument("--measure", type=int, metavar="N", help="time N steps, print s/step, exit")
    p.add_argument("--markdown", action="store_true")
    p.add_argument(
        "--backfill-dev-ranks",
        action="store_true",
        help="add dev ranks to ledger runs whose run folder is on this machine, then exit",
    )
    p.add_argument(
        "--ledger-only",
        action="store_true",
        help="tables from the runs in the ledger only: no data stages, no training",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    curve = tuple(sorted(int(c) for c in args.curve.split(",")))
    plan = Plan(
        work=args.work,
        seen=default_seen(),
        steps=max(curve),
        seeds=tuple(args.seeds),
        layers=args.layers,
        max_speech_tokens=args.max_speech_tokens,
        precision=args.precision,
    )
    keep_ledger_numerics()
    start = time.perf_counter()
    if args.backfill_dev_ranks:
        for file in backfill_dev_ranks(plan, prepare_data(plan), args.arms, curve):
            print(f"dev ranks added: {file}")
        return 0
    if args.ledger_only:
        records = ledger_records(plan, args.arms, curve)
        print("runs in the ledger: " + ", ".join(f"{a} {len(r)}" for a, r in records.items()))
    else:
        records = train_curve(plan, args, curve, start)
        if records is None:
            return 0
    summaries = {}
    for count in curve:
        summaries[count] = summarize(plan, at_count(records, count))
        print(f"\n=== {count} steps ===")
        print_table(summaries[count])
    if args.markdown:
        print("\n" + curve_markdown(summaries))
    result = {
        "plan": dataclasses.asdict(plan),
        "curve": list(curve),
        "by_steps": summaries,
        "runs": records,
        "wall_s": time.perf_counter() - start,
    }
    storage.write_text(args.json, json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
