"""The evaluation report: ``report.json``, ``report.md`` and ``r_at_1.png``.

``report.json`` follows DESIGN's contract (R@k as fractions in [0, 1]);
extra keys (``chance_r_at_1``, ``pool_size``) sit beside the contract keys so
every figure can be read next to its chance level, and so do the 95 %
intervals of R@1 (``r_at_1_ci95`` per language, ``mean_r_at_1_seen_ci95`` /
``mean_r_at_1_unseen_ci95``; percentile bootstrap over queries, see
:mod:`trainer.intervals`; ``interval`` names the method, resamples and seed)
and the query counts behind each mean (``n_queries_seen``,
``n_queries_unseen``).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field

from datastore import storage
from trainer import intervals


@dataclass
class LanguageResult:
    r_at_1: float
    r_at_5: float
    mrr: float
    n_queries: int
    pool_size: int
    bleu: float | None = None  # speech -> English translation retrieval
    hits: list[float] | None = None  # per query: 1.0 when its sentence ranked first


@dataclass
class Report:
    results: dict[str, LanguageResult]
    seen: list[str]
    unseen: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        langs = sorted(self.results)
        r = self.results
        bleu = {lang: r[lang].bleu for lang in langs if r[lang].bleu is not None}
        return {
            "r_at_1": {lang: r[lang].r_at_1 for lang in langs},
            "r_at_5": {lang: r[lang].r_at_5 for lang in langs},
            "mrr": {lang: r[lang].mrr for lang in langs},
            "seen": sorted(self.seen),
            "unseen": sorted(self.unseen),
            "mean_r_at_1_seen": _mean(r[lang].r_at_1 for lang in self.seen if lang in r),
            "mean_r_at_1_unseen": _mean(r[lang].r_at_1 for lang in self.unseen if lang in r),
            "bleu": bleu,
            "mean_bleu": _mean(bleu.values()),
            "n_queries": {lang: r[lang].n_queries for lang in langs},
            "pool_size": {lang: r[lang].pool_size for lang in langs},
            "chance_r_at_1": {lang: _chance(r[lang].pool_size) for lang in langs},
            **self._intervals(langs),
        }

    def _intervals(self, langs: list[str]) -> dict:
        hits = {lang: self.results[lang].hits for lang in langs}
        known = {lang: h for lang, h in hits.items() if h is not None}

        def group(names: list[str]) -> dict[str, list[float]]:
            return {lang: known[lang] for lang in names if lang in known}

        def pair(bounds):
            return list(bounds) if bounds is not None else None

        return {
            "r_at_1_ci95": {lang: pair(intervals.bootstrap_mean(h)) for lang, h in known.items()},
            "mean_r_at_1_seen_ci95": pair(intervals.bootstrap_stratified_mean(group(self.seen))),
            "mean_r_at_1_unseen_ci95": pair(
                intervals.bootstrap_stratified_mean(group(self.unseen))
            ),
            "n_queries_seen": sum(self.results[x].n_queries for x in self.seen if x in langs),
            "n_queries_unseen": sum(self.results[x].n_queries for x in self.unseen if x in langs),
            "interval": {
                "method": "percentile bootstrap over queries (stratified by language for means)",
                "level": intervals.LEVEL,
                "resamples": intervals.RESAMPLES,
                "seed": intervals.SEED,
            },
        }


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def _chance(pool: int) -> float | None:
    return 1.0 / pool if pool else None


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.1f}"


def _ci(bounds) -> str:
    return "-" if not bounds else f"{_fmt(bounds[0])}-{_fmt(bounds[1])}"


def markdown(report: dict) -> str:
    """A table a person reads: R@1 beside its 95 % interval and chance, per language, seen first."""
    cis = report.get("r_at_1_ci95", {})
    lines = [
        "| lang | group | R@1 % | 95 % CI | chance % | R@5 % | MRR | queries | pool | BLEU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    seen = set(report["seen"])
    order = sorted(report["r_at_1"], key=lambda lang: (lang not in seen, lang))
    for lang in order:
        lines.append(
            f"| {lang} | {'seen' if lang in seen else 'unseen'} | {_fmt(report['r_at_1'][lang])} "
            f"| {_ci(cis.get(lang))} | {_fmt(report['chance_r_at_1'][lang])} | {_fmt(report['r_at_5'][lang])} "
            f"| {report['mrr'][lang]:.3f} | {report['n_queries'][lang]} | {report['pool_size'][lang]} "
            f"| {_fmt(report['bleu'].get(lang), pct=False)} |"
        )
    method = report.get("interval") or {}
    lines += [
        "",
        f"Mean R@1 seen: {_fmt(report['mean_r_at_1_seen'])} % "
        f"(95 % CI {_ci(report.get('mean_r_at_1_seen_ci95'))}) over {len(report['seen'])} "
        f"languages, {report.get('n_queries_seen', '-')} queries; "
        f"unseen: {_fmt(report['mean_r_at_1_unseen'])} % "
        f"(95 % CI {_ci(report.get('mean_r_at_1_unseen_ci95'))}) over {len(report['unseen'])}, "
        f"{report.get('n_queries_unseen', '-')} queries; "
        f"mean BLEU (speech -> English retrieval): {_fmt(report['mean_bleu'], pct=False)}.",
    ]
    if method:
        lines.append(
            f"Intervals: {method['method']}, {method['resamples']} resamples, seed {method['seed']}."
        )
    return "\n".join(lines) + "\n"


def plot_r_at_1(report: dict, uri: str) -> None:
    """Bar chart of R@1 per language, coloured seen/unseen, chance as ticks."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = set(report["seen"])
    langs = sorted(report["r_at_1"], key=lambda lang: (lang not in seen, -report["r_at_1"][lang]))
    values = [100 * report["r_at_1"][lang] for lang in langs]
    chance = [100 * (report["chance_r_at_1"][lang] or 0) for lang in langs]
    colors = ["#1f77b4" if lang in seen else "#ff7f0e" for lang in langs]
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(langs) + 2), 4))
    ax.bar(range(len(langs)), values, color=colors)
    ax.scatter(range(len(langs)), chance, marker="_", color="black", s=80, label="chance", zorder=3)
    ax.set_xticks(range(len(langs)), langs, rotation=90, fontsize=7)
    ax.set_ylabel("speech -> transcript R@1 (%)")
    ax.set_ylim(0, 100)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color="#1f77b4"),
        plt.Rectangle((0, 0), 1, 1, color="#ff7f0e"),
        ax.collections[0],
    ]
    ax.legend(handles, ["seen in training", "unseen", "chance"], loc="upper right", fontsize=8)
    ax.set_title("R@1 per language")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    storage.write_bytes(uri, buf.getvalue())


def write_report(report: Report, out_dir: str) -> dict:
    data = report.as_dict()
    storage.makedirs(out_dir)
    storage.write_text(
        storage.join(out_dir, "report.json"), json.dumps(data, indent=2, sort_keys=True)
    )
    storage.write_text(storage.join(out_dir, "report.md"), markdown(data))
    if data["r_at_1"]:
        plot_r_at_1(data, storage.join(out_dir, "r_at_1.png"))
    return data
