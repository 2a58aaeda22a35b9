"""The mini-FLEURS retrieval benchmark: the paper's findings, in miniature.

Train on the CoVoST 2 source languages present in mini-FLEURS ("seen"),
evaluate speech -> transcript R@1 on every language of its test split, and
compare, with real components at a size a CPU can run:

- LLM-initialised dual encoder vs the same architecture randomly initialised
  (``gemma-3-270m`` vs ``gemma-3-270m-random``), several seeds: the paper's
  claim is about languages never seen with speech, so the unseen mean carries
  the comparison;
- transcripts only vs transcripts + WikiMatrix bitext: speech -> English
  translation retrieval BLEU;
- ``whisper-base`` (layer 3) codebook vs the weight-free ``mfcc`` one.

It chooses nothing: every configuration is fixed by its flags and reported
on the test split (settings are chosen on dev: ``benchmarks.demo_sweep``;
the full-depth, three-seed version with intervals is
``benchmarks.retrieval_full``). Stages are cached in ``--work``: a stage whose output folder has its
``_index.json`` (or a run its final checkpoint) is not redone, so a long run
can be resumed. Prints a table and writes JSON.

    python -m benchmarks.retrieval --quick          # ~10 min on 2 CPU cores
    python -m benchmarks.retrieval                  # all >= 80 languages, 3 seeds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass

from datastore import storage
from tokenizer import languages
from trainer.audio_init import AUDIO_INITS

QUICK_SEEN = ("fr", "de", "es", "it")
QUICK_UNSEEN = ("sw", "hi", "vi", "am")


@dataclass(frozen=True)
class Plan:
    work: str
    all_langs: bool
    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    voices: int
    k: int
    layers: int
    steps: int
    batch_size: int
    seeds: tuple[int, ...]
    spread_out_weight: float = 1.0  # the trainer's defaults; the demo uses 0.1 + aligned
    audio_init: str = "random"

    @property
    def run_suffix(self) -> str:
        """Run folders of non-default training settings are kept apart in the cache."""
        if (self.spread_out_weight, self.audio_init) == (1.0, "random"):
            return ""
        return f"-sp{self.spread_out_weight:g}-{self.audio_init}"


def make_plan(args) -> Plan:
    common = {
        "work": args.work,
        "k": 256,
        "batch_size": 16,
        "spread_out_weight": args.spread_out_weight,
        "audio_init": args.audio_init,
    }
    if args.quick:
        return Plan(
            **common,
            all_langs=False,
            seen=QUICK_SEEN,
            unseen=QUICK_UNSEEN,
            voices=2,
            layers=2,
            steps=args.steps or 60,
            seeds=(0,),
        )
    return Plan(
        **common,
        all_langs=True,
        seen=tuple(sorted(x.short for x in languages.usable() if x.seen)),
        unseen=(),
        voices=1,
        layers=args.layers,
        steps=args.steps or 150,
        seeds=tuple(args.seeds),
    )


def _done(folder: str) -> bool:
    return storage.exists(storage.join(folder, "_index.json"))


def prepare_data(plan: Plan, encoder: str) -> dict[str, str]:
    """Corpus (shared), codebook, tokens (train: seen; test: all) and bitext for one encoder."""
    from corpora.bitext import BitextConfig
    from corpora.synth.synth import SynthConfig, synthesize_corpus
    from pipelines import bitext, fit_codebook, tokenize
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    corpus = storage.join(plan.work, "corpus")
    if not storage.exists(storage.join(corpus, "corpus.json")):
        langs = () if plan.all_langs else (*plan.seen, *plan.unseen, "en")
        synthesize_corpus(
            SynthConfig(out=corpus, langs=langs, all=plan.all_langs, voices=plan.voices)
        )
    fleurs = storage.join(corpus, "fleurs")
    enc = EncoderConfig(name=encoder)
    cb = storage.join(plan.work, f"codebook-{encoder}")
    if not _done(cb):
        fit_codebook.run(
            fit_codebook.FitCodebookJobConfig(
                manifest=ManifestConfig(
                    format="fleurs", input=fleurs, langs=plan.seen, splits=("train",)
                ),
                encoder=enc,
                k=plan.k,
                out=cb,
            )
        )
    tokens = storage.join(plan.work, f"tokens-{encoder}")
    marker = storage.join(tokens, "_complete")
    if not storage.exists(marker):
        for i, (langs, split) in enumerate([(plan.seen, "train"), (None, "test")]):
            tokenize.run(
                tokenize.TokenizeJobConfig(
                    manifest=ManifestConfig(
                        format="fleurs", input=fleurs, langs=langs, splits=(split,)
                    ),
                    encoder=enc,
                    codebook=cb,
                    out=tokens,
                    dedup=True,
                    skip_existing=i > 0,  # the test split is appended to the train shards
                )
            )
        storage.write_text(marker, "")
    bt = storage.join(plan.work, "bitext")
    if not _done(bt):
        bitext.run(
            bitext.BitextJobConfig(
                input=storage.join(corpus, "wikimatrix", "*.tsv.gz"),
                out=bt,
                filters=BitextConfig(min_score=1.04, langs=frozenset((*plan.seen, "en"))),
            )
        )
    return {"corpus": corpus, "codebook": cb, "tokens": tokens, "bitext": bt}


def train_and_eval(
    plan: Plan, name: str, data: dict, *, llm: str, seed: int, use_bitext: bool
) -> dict:
    from trainer.configs import DualEncoderConfig, LossConfig, TrainConfig
    from trainer.data import DataConfig
    from trainer.evaluate import EvalConfig, evaluate
    from trainer.train import train

    run = storage.join(plan.work, "runs", f"{name}{plan.run_suffix}-s{seed}")
    report_dir = storage.join(run, "report")
    report_file = storage.join(report_dir, "report.json")
    if storage.exists(report_file):
        return json.loads(storage.read_text(report_file))
    storage.delete(run)
    start = time.perf_counter()
    train(
        TrainConfig(
            out=run,
            model=DualEncoderConfig(llm=llm, layers=plan.layers),
            data=DataConfig(
                shards=data["tokens"],
                bitext=data["bitext"] if use_bitext else None,
                bitext_ratio=0.2 if use_bitext else 0.0,
                langs=plan.seen,
                batch_size=plan.batch_size,
                seed=seed,
            ),
            loss=LossConfig(spread_out_weight=plan.spread_out_weight),
            audio_init=plan.audio_init,
            steps=plan.steps,
            save_every=plan.steps,
            seed=seed,
        )
    )
    train_s = time.perf_counter() - start
    report = evaluate(EvalConfig(run=run, shards=data["tokens"], out=report_dir, seen=plan.seen))
    report["train_s"] = train_s
    storage.write_text(report_file, json.dumps(report, indent=2, sort_keys=True))
    return report


def _mean_sd(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(name: str, reports: list[dict]) -> dict:
    seen, seen_sd = _mean_sd([r["mean_r_at_1_seen"] for r in reports])
    unseen, unseen_sd = _mean_sd([r["mean_r_at_1_unseen"] for r in reports])
    bleu, bleu_sd = _mean_sd([r["mean_bleu"] for r in reports])
    chance = _mean_sd([statistics.fmean(r["chance_r_at_1"].values()) for r in reports])[0]
    first = reports[0]
    return {
        "config": name,
        "seeds": len(reports),
        "r_at_1_seen": seen,
        "r_at_1_seen_sd": seen_sd,
        "r_at_1_unseen": unseen,
        "r_at_1_unseen_sd": unseen_sd,
        "bleu": bleu,
        "bleu_sd": bleu_sd,
        "chance_r_at_1": chance,
        "n_seen": len(first["seen"]),
        "n_unseen": len(first["unseen"]),
        "train_s": statistics.fmean(r.get("train_s", float("nan")) for r in reports),
    }


def print_table(rows: list[dict]) -> None:
    head = f"{'config':<34}{'seeds':>6}{'R@1 seen %':>16}{'R@1 unseen %':>16}{'BLEU':>12}{'chance %':>10}{'train s':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['config']:<34}{r['seeds']:>6}"
            f"{100 * r['r_at_1_seen']:>10.1f} ±{100 * r['r_at_1_seen_sd']:>4.1f}"
            f"{100 * r['r_at_1_unseen']:>10.1f} ±{100 * r['r_at_1_unseen_sd']:>4.1f}"
            f"{r['bleu']:>7.1f} ±{r['bleu_sd']:>3.1f}{100 * r['chance_r_at_1']:>10.1f}{r['train_s']:>9.0f}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 languages, 1 seed, 2 layers")
    parser.add_argument("--work", default="benchmarks/results/retrieval-work", help="cached stages")
    parser.add_argument("--json", default="benchmarks/results/retrieval.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="training steps per run (150; quick 60)")
    parser.add_argument("--layers", type=int, default=4, help="Gemma layers kept (full mode)")
    parser.add_argument("--skip-mfcc", action="store_true")
    parser.add_argument(
        "--spread-out-weight", type=float, default=1.0, help="1.0 (trainer); the demo uses 0.1"
    )
    parser.add_argument(
        "--audio-init", choices=AUDIO_INITS, default="random", help="audio rows' start"
    )
    args = parser.parse_args(argv)
    plan = make_plan(args)
    start = time.perf_counter()
    whisper = prepare_data(plan, "whisper-base")
    runs = {
        "LLM init, whisper, transcripts": [
            train_and_eval(plan, "llm", whisper, llm="gemma-3-270m", seed=s, use_bitext=False)
            for s in plan.seeds
        ],
        "random init, whisper, transcripts": [
            train_and_eval(
                plan, "random", whisper, llm="gemma-3-270m-random", seed=s, use_bitext=False
            )
            for s in plan.seeds
        ],
        "LLM init, whisper, + bitext": [
            train_and_eval(
                plan, "llm-bitext", whisper, llm="gemma-3-270m", seed=plan.seeds[0], use_bitext=True
            )
        ],
    }
    if not args.skip_mfcc:
        mfcc = prepare_data(plan, "mfcc")
        runs["LLM init, mfcc, transcripts"] = [
            train_and_eval(
                plan, "llm-mfcc", mfcc, llm="gemma-3-270m", seed=plan.seeds[0], use_bitext=False
            )
        ]
    rows = [summarize(name, reports) for name, reports in runs.items()]
    print_table(rows)
    result = {"plan": asdict(plan), "rows": rows, "wall_s": time.perf_counter() - start}
    storage.write_text(args.json, json.dumps(result, indent=2))
    print(f"wrote {args.json} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
