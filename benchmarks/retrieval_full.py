"""LLM init vs random init at full depth, with settings chosen on dev and intervals.

The paper's central claim: a dual encoder initialised from a multilingual LLM
matches speech and text in languages never seen with speech. Here: Gemma 3
270M with all its layers, trained on the CoVoST 2 source languages of
mini-FLEURS ("seen"), evaluated on those and on unseen languages, three arms
with the same steps, data and seeds:

- ``random``: the Gemma 3 270M architecture, random weights;
- ``llm``: Gemma 3 270M's weights;
- ``llm-bitext``: the same plus WikiMatrix bitext (speech -> English
  retrieval BLEU is the paper's S2TT figure).

Every arm uses the demo's training settings (lr 3e-5, spread-out weight 0.1,
audio rows from aligned characters, length jitter 0.3, batch 16), the first
192 speech tokens of each utterance, and the same data order per seed. The
random arm's backbone is one fixed random draw (``gemma-3-270m-random``); the
seed changes the new parameters and the data order, in every arm.

Retrieval pools are all of a language's dev + test sentences (every query
ranks them all). The only setting chosen is the checkpoint: each run is
evaluated on **dev** (seen languages only: no unseen speech enters any
decision) after half and after all its steps, keeps the step with the better
mean dev R@1, and **test** is evaluated once per run, at that step.
Intervals (95 %): a bootstrap over queries of the seed-averaged outcome of
each query (languages resampled separately; :mod:`trainer.intervals`) and a
t interval over the seeds' means; LLM - random is paired by query and by seed.
Every stage is cached in ``--work`` (a run's ``result.json``, the data
folders' ``_index.json``), so an interrupted experiment resumes where it
stopped (a run cut mid-training restarts from its half-way checkpoint, or
from step 0 when it had not reached it)::

    python -m benchmarks.retrieval_full                      # hours on 2 shared CPU cores
    python -m benchmarks.retrieval_full --measure 3          # s/step only, then exit
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass

from benchmarks.retrieval_summary import markdown_table, pct, print_table, summarize
from datastore import storage
from tokenizer import languages

UNSEEN = ("am", "bn", "el", "fi", "hi", "ko", "pl", "sw", "th", "vi")
PIVOT = "en"
ARMS = {  # name -> (llm, bitext)
    "random": ("gemma-3-270m-random", False),
    "llm": ("gemma-3-270m", False),
    "llm-bitext": ("gemma-3-270m", True),
}


@dataclass(frozen=True, kw_only=True)
class Plan:
    """One experiment: what every arm shares (only ``llm`` and bitext differ)."""

    work: str = "benchmarks/results/retrieval-full-work"
    seen: tuple[str, ...] = ()
    unseen: tuple[str, ...] = UNSEEN
    k: int = 256
    codebook_langs: int = 6  # fit on the first N seen languages' training speech
    layers: int | None = None  # None: all of Gemma's 18
    steps: int = 24  # what the shared 2-core VM allowed (benchmarks/README.md)
    batch_size: int = 16
    lr: float = 3e-5  # the demo's settings (pipelines/demo.py)
    spread_out_weight: float = 0.1
    audio_init: str = "aligned"
    max_speech_tokens: int = 192  # the demo keeps 384: halved to afford more steps
    length_jitter: float = 0.3
    bitext_ratio: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2)
    # This VM's current CPU (AMD EPYC, AVX2, no AVX-512/AMX) has no native bf16:
    # `python -m benchmarks.bf16_cpu` timed a 640 -> 2,048 layer 3.6x slower in bf16
    # autocast than in fp32. Fixed, not "auto": every run of the table alike.
    precision: str = "fp32"
    smoke: bool = False  # every arm on the tiny random "debug" LM: checks the procedure only

    def __post_init__(self) -> None:
        if self.steps < 2:
            raise ValueError("steps must be >= 2 (dev compares half and all of them)")
        if not self.seen or len(self.unseen) < 1:
            raise ValueError("need seen and unseen languages")

    @property
    def checkpoints(self) -> tuple[int, int]:
        return (self.steps // 2, self.steps)


def default_seen() -> tuple[str, ...]:
    return tuple(sorted(x.short for x in languages.usable() if x.seen))


def _done(folder: str) -> bool:
    return storage.exists(storage.join(folder, "_index.json"))


def prepare_data(plan: Plan) -> dict[str, str]:
    """Corpus, Whisper-base L3 codebook, tokens (seen: train; all: dev + test), bitext."""
    from corpora.bitext import BitextConfig
    from corpora.synth.synth import SynthConfig, synthesize_corpus
    from pipelines import bitext, fit_codebook, tokenize
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    corpus = storage.join(plan.work, "corpus")
    if not storage.exists(storage.join(corpus, "corpus.json")):
        langs = (*plan.seen, *plan.unseen, PIVOT)
        synthesize_corpus(SynthConfig(out=corpus, langs=langs, voices=1))
    fleurs = storage.join(corpus, "fleurs")
    enc = EncoderConfig(name="whisper-base")
    cb = storage.join(plan.work, "codebook")
    if not _done(cb):
        fit_codebook.run(
            fit_codebook.FitCodebookJobConfig(
                manifest=ManifestConfig(
                    format="fleurs",
                    input=fleurs,
                    langs=plan.seen[: plan.codebook_langs],
                    splits=("train",),
                ),
                encoder=enc,
                k=plan.k,
                out=cb,
            )
        )
    tokens = storage.join(plan.work, "tokens")
    marker = storage.join(tokens, "_complete")
    if not storage.exists(marker):
        jobs = [(plan.seen, ("train",)), ((*plan.seen, *plan.unseen, PIVOT), ("dev", "test"))]
        for i, (langs, splits) in enumerate(jobs):
            tokenize.run(
                tokenize.TokenizeJobConfig(
                    manifest=ManifestConfig(
                        format="fleurs", input=fleurs, langs=langs, splits=splits
                    ),
                    encoder=enc,
                    codebook=cb,
                    out=tokens,
                    dedup=True,
                    skip_existing=i > 0,  # the second job appends to the first one's shards
                )
            )
        storage.write_text(marker, "")
    bt = storage.join(plan.work, "bitext")
    if not _done(bt):
        bitext.run(
            bitext.BitextJobConfig(
                input=storage.join(corpus, "wikimatrix", "*.tsv.gz"),
                out=bt,
                filters=BitextConfig(min_score=1.04, langs=frozenset((*plan.seen, PIVOT))),
            )
        )
    return {"corpus": corpus, "codebook": cb, "tokens": tokens, "bitext": bt}


def codebook_sha256(data: dict) -> str:
    """The codebook's own sha256 (``Codebook.sha256``): it names the tokens every
    run kept in a ledger (curve, ablations) must share."""
    from kmeans import Codebook

    return Codebook.load(data["codebook"]).sha256


def keep_ledger_numerics() -> None:
    """Train as the ledger's runs were trained: with transformers' own RMSNorm.

    The trainer's lean RMSNorm (2026-12-08) gives the same outputs and the same
    gradients up to rounding, but over hundreds of steps rounding alone moves a
    run as far as another seed would; runs compared by query with the ledger's
    must not differ in anything but their setting."""
    from trainer import train

    train.use_lean_norms = lambda backbone: 0


def read_ledger(ledger_file: str, data: dict) -> dict | None:
    """A finished run kept in the repository (None: not there yet); one made on
    another codebook stops the experiment rather than mix data."""
    if not storage.exists(ledger_file):
        return None
    record = json.loads(storage.read_text(ledger_file))
    want = codebook_sha256(data)
    if record["codebook_sha256"] != want:
        raise SystemExit(
            f"{ledger_file} was trained on codebook {record['codebook_sha256'][:12]}, "
            f"this machine's data has {want[:12]}: move the ledger aside"
        )
    return record


def write_ledger(ledger_file: str, record: dict, data: dict) -> dict:
    """Keep a finished run in the repository, stamped with its codebook's sha256."""
    record = {**record, "codebook_sha256": codebook_sha256(data)}
    storage.write_text(ledger_file, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def _configs(plan: Plan, data: dict, arm: str, seed: int, out: str):
    from trainer.configs import DualEncoderConfig, LossConfig, TrainConfig
    from trainer.data import DataConfig

    llm, use_bitext = ARMS[arm]
    llm = "debug" if plan.smoke else llm
    return TrainConfig(
        out=out,
        model=DualEncoderConfig(
            llm=llm, layers=plan.layers, max_speech_tokens=plan.max_speech_tokens
        ),
        data=DataConfig(
            shards=data["tokens"],
            bitext=data["bitext"] if use_bitext else None,
            bitext_ratio=plan.bitext_ratio if use_bitext else 0.0,
            langs=plan.seen,
            batch_size=plan.batch_size,
            length_jitter=plan.length_jitter,
            seed=seed,
        ),
        loss=LossConfig(spread_out_weight=plan.spread_out_weight),
        steps=plan.steps,
        lr=plan.lr,
        warmup_steps=min(10, plan.steps // 4),
        save_every=plan.steps,
        audio_init=plan.audio_init,
        seed=seed,
        precision=plan.precision,
        progress=False,
        log_every=5,
    )


def _evaluate(plan: Plan, data: dict, run: str, split: str) -> dict:
    """R@1 of ``split``'s queries against every dev + test sentence of their language."""
    from trainer.evaluate import EvalConfig, evaluate

    out = storage.join(run, f"eval-{split}")
    if storage.exists(storage.join(out, "ranks.json")):  # written after report.json
        return json.loads(storage.read_text(storage.join(out, "report.json")))
    return evaluate(
        EvalConfig(
            run=run,
            shards=data["tokens"],
            out=out,
            split=split,
            pool_splits=("dev", "test"),
            # dev decides on the seen languages alone (and costs a fifth of a test pass);
            # test: every language, English for the BLEU pool.
            langs=plan.seen if split == "dev" else (*plan.seen, *plan.unseen, PIVOT),
            seen=plan.seen,
            write_ranks=True,
        )
    )


def _means(plan: Plan, report: dict) -> dict:
    r = report["r_at_1"]
    out = {"seen": sum(r[x] for x in plan.seen) / len(plan.seen)}
    if all(x in r for x in plan.unseen):
        out["unseen"] = sum(r[x] for x in plan.unseen) / len(plan.unseen)
    return out


def run_one(plan: Plan, data: dict, arm: str, seed: int) -> dict:
    """Train one arm/seed; dev at half and all steps; test once at the step dev chose.

    The choice uses the seen languages' dev R@1 (the unseen languages' speech
    stays out of every decision); ties keep the later step. Cached in
    ``result.json``; a run interrupted mid-training resumes from its checkpoint.
    """
    from trainer.checkpoint import CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, read_config
    from trainer.train import train

    # Cached by everything a rerun with other flags could change.
    name = (
        f"{arm}-{plan.steps}steps-{plan.max_speech_tokens}tok-L{plan.layers or 'all'}"
        f"-{plan.precision}-s{seed}"
    )
    run = storage.join(plan.work, "smoke" if plan.smoke else "runs", name)
    result_file = storage.join(run, "result.json")
    if storage.exists(result_file):
        return json.loads(storage.read_text(result_file))
    half_step, full_step = plan.checkpoints
    half = storage.join(run, f"step-{half_step}")
    config = _configs(plan, data, arm, seed, run)
    record = {"arm": arm, "seed": seed, "train_s": 0.0, "dev": {}}
    start = time.perf_counter()
    if not storage.exists(storage.join(half, CONFIG_FILE)):
        try:
            step = int(read_config(run)["step"])
        except Exception:  # no run yet, or one killed before its first checkpoint
            storage.delete(run)
            step = 0
        if step < half_step:
            train(config, resume=step > 0, stop_after=half_step - step)
        storage.makedirs(half)
        for name in (MODEL_FILE, CONFIG_FILE):  # a loadable run folder of the half-way model
            storage.write_bytes(
                storage.join(half, name), storage.read_bytes(storage.join(run, name))
            )
    record["train_s"] += time.perf_counter() - start
    record["dev"][half_step] = _means(plan, _evaluate(plan, data, half, "dev"))
    start = time.perf_counter()
    train(config, resume=True)
    record["train_s"] += time.perf_counter() - start
    record["dev"][full_step] = _means(plan, _evaluate(plan, data, run, "dev"))
    chosen = max(plan.checkpoints, key=lambda s: (record["dev"][s]["seen"], s))
    record["chosen_step"] = chosen
    test = _evaluate(plan, data, run if chosen == full_step else half, "test")
    record["test"] = {**_means(plan, test), "bleu": _bleu(plan, test)}
    record["test_dir"] = storage.join(run if chosen == full_step else half, "eval-test")
    storage.delete(
        storage.join(run, OPTIMIZER_FILE)
    )  # 0.8 GB a run; the experiment never resumes a done run
    storage.write_text(result_file, json.dumps(record, indent=2))
    return record


def _bleu(plan: Plan, report: dict) -> float | None:
    """Mean speech -> English retrieval BLEU over the seen and unseen languages."""
    values = [report["bleu"][x] for x in (*plan.seen, *plan.unseen) if x in report["bleu"]]
    return sum(values) / len(values) if values else None


def measure(plan: Plan, data: dict, steps: int) -> dict:
    """Seconds per training step of the LLM arm (every arm costs the same), from the
    trainer's own per-step times (``metrics.jsonl``), the first step left out."""
    from trainer.checkpoint import METRICS_FILE
    from trainer.train import train

    out = storage.join(plan.work, "measure")
    storage.delete(out)
    train(_configs(plan, data, "llm", 0, out), stop_after=steps + 1)
    lines = storage.read_text(storage.join(out, METRICS_FILE)).splitlines()
    times = [json.loads(x)["step_s"] for x in lines if x.strip()][1:]
    storage.delete(out)
    return {"steps": len(times), "s_per_step": sum(times) / len(times), "each": times}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=Plan.work, help="cached stages and runs")
    p.add_argument("--json", default="benchmarks/results/retrieval_full.json")
    p.add_argument("--steps", type=int, default=Plan.steps)
    p.add_argument("--seeds", type=int, nargs="+", default=list(Plan.seeds))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--layers", type=int, help="Gemma layers kept (default: all 18)")
    p.add_argument("--measure", type=int, metavar="N", help="time N steps, print s/step, exit")
    p.add_argument("--smoke", action="store_true", help="the tiny debug LM in every arm")
    p.add_argument("--max-speech-tokens", type=int, default=Plan.max_speech_tokens)
    p.add_argument("--precision", choices=("bf16", "fp32"), default=Plan.precision)
    p.add_argument(
        "--markdown", action="store_true", help="also print the tables benchmarks/README.md quotes"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    plan = Plan(
        max_speech_tokens=args.max_speech_tokens,
        precision=args.precision,
        work=args.work,
        seen=default_seen(),
        steps=args.steps,
        seeds=tuple(args.seeds),
        layers=args.layers,
        smoke=args.smoke,
    )
    start = time.perf_counter()
    data = prepare_data(plan)
    print(f"data ready ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.measure:
        print(json.dumps(measure(plan, data, args.measure)), flush=True)
        return 0
    records: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    for seed in plan.seeds:  # seed-major: a cut-short experiment has every arm's first seeds
        for arm in args.arms:
            t0 = time.perf_counter()
            rec = run_one(plan, data, arm, seed)
            records[arm].append(rec)
            print(
                f"{time.strftime('%H:%M:%S')} {arm} seed {seed}: step {rec['chosen_step']}, "
                f"test R@1 seen {pct(rec['test']['seen'])} unseen {pct(rec['test']['unseen'])} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    summary = summarize(plan, records)
    print_table(summary)
    if args.markdown:
        print(markdown_table(summary))
    result = {
        "plan": asdict(plan),
        **summary,
        "runs": records,
        "wall_s": time.perf_counter() - start,
    }
    out = args.json.replace(".json", "-smoke.json") if plan.smoke else args.json
    storage.write_text(out, json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
