"""The full-depth retrieval experiment's summary (``benchmarks.retrieval_full``):
per arm, the seen/unseen test R@1 averaged over seeds with a 95 % interval
over queries (bootstrap, queries shared by the seeds) and over seeds (t), and
the LLM - random differences paired by query; printed as a table."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from datastore import storage

if TYPE_CHECKING:
    from benchmarks.retrieval_full import Plan


def _hits(record: dict, langs) -> dict[str, list[float]]:
    """Per language, each test query's R@1 outcome (queries in id order).

    The ranks are inline (the curve's ledger) or in the run's ``eval-test``."""
    ranks = record.get("ranks") or json.loads(
        storage.read_text(storage.join(record["test_dir"], "ranks.json"))
    )
    return {x: [float(r == 0) for r in ranks[x]["ranks"]] for x in langs}


def _seed_mean(per_seed: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Each query's outcome averaged over seeds (the seeds share the test queries)."""
    langs = per_seed[0]
    return {
        x: [sum(v) / len(v) for v in zip(*(h[x] for h in per_seed), strict=True)] for x in langs
    }


def _over_seeds(values: list[float]):
    """t interval over the seeds' values; None for one seed (no spread to measure)."""
    from trainer import intervals

    return intervals.t_interval(values) if len(values) > 1 else None


def _figure(per_seed_hits: list[dict[str, list[float]]], per_seed_values: list[float]) -> dict:
    from trainer import intervals

    averaged = _seed_mean(per_seed_hits)
    return {
        "mean": sum(per_seed_values) / len(per_seed_values),
        "per_seed": per_seed_values,
        "ci95_queries": intervals.bootstrap_stratified_mean(averaged),
        "ci95_seeds": _over_seeds(per_seed_values),
        "n_queries": sum(len(v) for v in averaged.values()),
        "n_langs": len(averaged),
    }


def summarize(plan: Plan, records: dict[str, list[dict]]) -> dict:
    """Per arm: seen/unseen R@1 and BLEU over seeds with both intervals; LLM - random."""
    from trainer import intervals

    rows, hits = {}, {}
    for arm, recs in records.items():
        hits[arm] = {g: [_hits(r, getattr(plan, g)) for r in recs] for g in ("seen", "unseen")}
        bleu = [r["test"]["bleu"] for r in recs if r["test"]["bleu"] is not None]
        rows[arm] = {
            "seeds": [r["seed"] for r in recs],
            "chosen_steps": [r["chosen_step"] for r in recs],
            "train_s": [round(r["train_s"]) for r in recs],
            **{g: _figure(hits[arm][g], [r["test"][g] for r in recs]) for g in ("seen", "unseen")},
            "bleu": {
                "mean": sum(bleu) / len(bleu),
                "per_seed": bleu,
                "ci95_seeds": _over_seeds(bleu),
            }
            if bleu
            else None,
        }
    diffs = {}
    for arm in ("llm", "llm-bitext"):
        if arm not in rows or "random" not in rows:
            continue
        n = min(len(records[arm]), len(records["random"]))  # paired by seed
        diffs[f"{arm} - random"] = {}
        for g in ("seen", "unseen"):
            a, b = _seed_mean(hits[arm][g][:n]), _seed_mean(hits["random"][g][:n])
            d = {x: [p - q for p, q in zip(a[x], b[x], strict=True)] for x in a}
            per_seed = [
                records[arm][i]["test"][g] - records["random"][i]["test"][g] for i in range(n)
            ]
            diffs[f"{arm} - random"][g] = {
                "mean": sum(per_seed) / n,
                "ci95_queries": intervals.bootstrap_stratified_mean(d),
                "ci95_seeds": _over_seeds(per_seed),
                "seeds": n,
            }
    return {"arms": rows, "differences": diffs}


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(bounds) -> str:
    return "-" if not bounds else f"[{pct(bounds[0])}, {pct(bounds[1])}]"


def _cell(figure: dict) -> str:
    """A mean in % with its interval over queries, then over seeds."""
    return f"{pct(figure['mean'])} {_ci(figure['ci95_queries'])} {_ci(figure['ci95_seeds'])}"


def print_table(summary: dict) -> None:
    print(
        f"{'arm':<12}{'seeds':>6}  {'R@1 seen % [queries CI] [seeds CI]':<42}"
        f"{'R@1 unseen % [queries CI] [seeds CI]':<42}{'BLEU':>6}"
    )
    for arm, r in summary["arms"].items():
        cells = [_cell(r[g]) for g in ("seen", "unseen")]
        bleu = f"{r['bleu']['mean']:.1f}" if r["bleu"] else "-"
        print(f"{arm:<12}{len(r['seeds']):>6}  {cells[0]:<42}{cells[1]:<42}{bleu:>6}")
    for name, d in summary["differences"].items():
        for g, v in d.items():
            print(
                f"{name} ({g}): {pct(v['mean'])} points, queries CI {_ci(v['ci95_queries'])}, "
                f"seeds CI {_ci(v['ci95_seeds'])}"
            )


ARM_LABELS = {
    "random": "`random` (Gemma's architecture, random weights)",
    "llm": "`llm` (Gemma 3 270M's weights)",
    "llm-bitext": "`llm-bitext` (+ WikiMatrix bitext)",
}


def markdown_table(summary: dict) -> str:
    """The summary as the Markdown tables benchmarks/README.md quotes: per arm the
    seed mean with both intervals (queries; seeds), each seed's figure, and the
    paired LLM - random differences."""
    head = (
        "| arm | seeds (step chosen on dev) | R@1 seen % [queries CI] [seeds CI] "
        "| R@1 unseen % [queries CI] [seeds CI] | BLEU [seeds CI] |\n"
        "|---|---|---:|---:|---:|"
    )
    lines = [head]
    for arm, r in summary["arms"].items():
        seeds = ", ".join(f"{s} ({c})" for s, c in zip(r["seeds"], r["chosen_steps"], strict=True))
        cells = [
            f"{_cell(r[g])}<br>per seed: {', '.join(pct(v) for v in r[g]['per_seed'])}"
            for g in ("seen", "unseen")
        ]
        b = r["bleu"]
        bleu = "-" if not b else f"{b['mean']:.1f} {_bleu_ci(b['ci95_seeds'])}"
        lines.append(f"| {ARM_LABELS.get(arm, arm)} | {seeds} | {cells[0]} | {cells[1]} | {bleu} |")
    if summary["differences"]:
        lines += [
            "",
            "| paired difference (points) | seeds | seen [queries CI] [seeds CI] "
            "| unseen [queries CI] [seeds CI] |",
            "|---|---:|---:|---:|",
        ]
        for name, d in summary["differences"].items():
            cells = [_cell(d[g]) for g in ("seen", "unseen")]
            lines.append(f"| {name} | {d['seen']['seeds']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _bleu_ci(bounds) -> str:
    return "-" if not bounds else f"[{bounds[0]:.1f}, {bounds[1]:.1f}]"


def curve_markdown(by_steps: dict[int, dict]) -> str:
    """A learning curve as two Markdown tables: arm x step count (seed means with
    both intervals, the steps dev chose, BLEU) and the paired differences."""
    lines = [
        "| steps | arm | seeds (step chosen on dev) | R@1 seen % [queries CI] [seeds CI] "
        "| R@1 unseen % [queries CI] [seeds CI] | BLEU [seeds CI] |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for steps, summary in by_steps.items():
        for arm, r in summary["arms"].items():
            seeds = ", ".join(
                f"{s} ({c})" for s, c in zip(r["seeds"], r["chosen_steps"], strict=True)
            )
            b = r["bleu"]
            bleu = "-" if not b else f"{b['mean']:.1f} {_bleu_ci(b['ci95_seeds'])}"
            lines.append(
                f"| {steps} | `{arm}` | {seeds} | {_cell(r['seen'])} | {_cell(r['unseen'])} "
                f"| {bleu} |"
            )
    lines += [
        "",
        "| steps | paired difference (points) | seeds | seen [queries CI] [seeds CI] "
        "| unseen [queries CI] [seeds CI] |",
        "|---:|---|---:|---:|---:|",
    ]
    for steps, summary in by_steps.items():
        for name, d in summary["differences"].items():
            lines.append(
                f"| {steps} | {name} | {d['seen']['seeds']} | {_cell(d['seen'])} "
                f"| {_cell(d['unseen'])} |"
            )
    return "\n".join(lines)
