"""The speech parts of ``benchmarks.tokenize`` (throughput and memory): the
mini-FLEURS corpus and codebooks they share, and the driver side of their
rows (each row a fresh process, ``benchmarks/tokenize_rows.py``). What they
measure and why: ``benchmarks/tokenize.py``'s docstring.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

from benchmarks._harness import best_of, run_row, target

ENCODER_ROWS = {
    "whisper-base": ("job", "bare", "unbatched", "speech2unit"),
    "mfcc": ("job", "bare", "unbatched"),
}
INFO_ROWS = ("unbatched",)  # no target: left out of --quick
# Encoders whose job/bare ratio is reported, not checked: mfcc encodes at several
# hundred x real time, so on mini-FLEURS the ratio measures Beam's fixed start-up
# (pipeline construction, ~19 stages on the embedded runner: ~1.5 s), not throughput.
CHEAP_ENCODERS = {"mfcc"}
TARGETS = {
    "job_vs_bare": 0.8,  # job throughput >= 0.8 x the bare loop's
    "job_vs_speech2unit": 3.0,  # >= 3 x the per-file speech2unit-style loop
    "rss_growth_10x": 0.20,  # peak RSS at 10x utterances <= 1.2 x at 1x
}
LANGS = ("fr", "de", "es", "sw")  # + English, which mini-FLEURS always speaks
K = 1024  # the paper's codebook size (--quick: 256, fitted on fewer frames)


def run_fresh(spec: dict) -> dict:
    """One row in a fresh ``python -m benchmarks.tokenize --worker`` process,
    from an empty output folder; its result plus the tree's peak RSS."""
    if spec.get("out"):
        shutil.rmtree(spec["out"], ignore_errors=True)
    return run_row("benchmarks.tokenize", spec)


def prepare_corpus(work: Path, per_lang: int, voices: int) -> Path:
    """mini-FLEURS under ``work/corpus`` (kept when an earlier run made the same one)."""
    from corpora.synth.synth import SynthConfig, synthesize_corpus

    out = work / "corpus"
    stamp = work / "corpus.stamp.json"
    want = {"langs": LANGS, "per_lang": per_lang, "voices": voices}
    if stamp.exists() and json.loads(stamp.read_text()) == json.loads(json.dumps(want)):
        return out
    synthesize_corpus(
        SynthConfig(out=str(out), langs=LANGS, per_lang=per_lang, voices=voices, seed=0)
    )
    stamp.write_text(json.dumps(want))
    return out


def prepare_codebook(
    work: Path, corpus: Path, encoder: str, threads: int | None, k: int = K
) -> Path:
    """A codebook of ``k`` centroids fitted by the fit-codebook job on the French utterances."""
    from kmeans import Codebook
    from pipelines import fit_codebook
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    out = work / f"codebook-{encoder}-k{k}"
    with contextlib.suppress(FileNotFoundError, ValueError):
        Codebook.load(str(out))
        return out
    config = fit_codebook.FitCodebookJobConfig(
        manifest=ManifestConfig(format="fleurs", input=str(corpus / "fleurs"), langs=("fr",)),
        encoder=EncoderConfig(name=encoder, threads=threads),
        k=k,
        out=str(out),
        sample_frames=50_000,
    )
    with contextlib.redirect_stdout(sys.stderr):
        fit_codebook.run(config)
    return out


def repeated_manifest(corpus: Path, path: Path, base: int, times: int) -> int:
    """A JSONL manifest listing the first ``base`` FLEURS utterances ``times`` times
    under new ids (the same audio: the corpus grows, nothing else changes)."""
    from datastore.records import AudioExample
    from tokenizer.manifests import ManifestConfig, read_manifest

    fleurs = corpus / "fleurs"
    examples = [
        e
        for e in read_manifest(ManifestConfig(format="fleurs", input=str(fleurs)))
        if isinstance(e, AudioExample)
    ][:base]
    lines = []
    for copy in range(times):
        for e in examples:
            rel = os.path.relpath(e.uri.removeprefix("file://"), fleurs)
            obj = {"id": f"{e.id}#{copy}", "audio": rel, "text": e.text}
            lines.append(json.dumps({**obj, "lang": e.lang, "split": e.split}))
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def token_agreement(a: dict | None, b: dict | None) -> float | None:
    """Fraction of equal tokens over utterances both rows tokenized (same lengths)."""
    if not a or not b:
        return None
    same = total = 0
    for key, tokens in a.items():
        other = b.get(key)
        if other is None or len(other) != len(tokens):
            continue
        same += sum(x == y for x, y in zip(tokens, other, strict=True))
        total += len(tokens)
    return same / total if total else None


def best_rows(args, work: Path, corpus: Path, encoder: str, codebook: Path, names) -> dict:
    """Each row's fastest pass (``best_of``), with the first pass's tokens (only
    it keeps them) and the row's highest peak RSS over all its passes."""
    tokens: dict[str, dict] = {}
    peaks: dict[str, float] = {}

    def run(name: str, repeat: int) -> dict:
        spec = {
            "row": name,
            "encoder": encoder,
            "format": "fleurs",
            "input": str(corpus / "fleurs"),
            "codebook": str(codebook),
            "out": str(work / f"out-{encoder}-{name}"),
            "threads": args.threads,
            "keep_tokens": repeat == 0,
        }
        print(f"  {encoder} {name} ...", file=sys.stderr, flush=True)
        result = run_fresh(spec)
        if "error" not in result:
            if result.get("tokens"):
                tokens.setdefault(name, result["tokens"])
            peaks[name] = max(peaks.get(name, 0.0), result["peak_rss_mb"])
        return result

    best = best_of(names, args.repeats, run)
    for name, result in best.items():
        if "error" not in result:
            result.update(tokens=tokens.get(name), peak_rss_mb=peaks[name])
    return best


def bench_throughput(args, work: Path, corpus: Path) -> tuple[list[dict], list[dict]]:
    rows: list[dict] = []
    checks: list[dict] = []
    for encoder in args.encoders:
        codebook = prepare_codebook(work, corpus, encoder, args.threads, args.k)
        names = [n for n in ENCODER_ROWS[encoder] if not (args.quick and n in INFO_ROWS)]
        best = best_rows(args, work, corpus, encoder, codebook, names)
        job = best.get("job")
        for name in names:
            r = best[name]
            row = {"encoder": encoder, "row": name, **{k: v for k, v in r.items() if k != "tokens"}}
            if "error" not in r:
                row["x_real_time"] = r["audio_s"] / r["wall_s"]
                if job and "error" not in job:
                    row["job_vs_row"] = row_ratio(job, r)
                    row["token_agreement_with_job"] = token_agreement(job["tokens"], r["tokens"])
            rows.append(row)
        if job and "error" not in job:
            bare = best.get("bare")
            if bare and "error" not in bare:
                extra = job["wall_s"] - bare["wall_s"]
                job_row = next(r for r in rows if r["encoder"] == encoder and r["row"] == "job")
                job_row["job_extra_s_over_bare"] = extra
                note = (
                    f"info only: {encoder} is so cheap that the {extra:.1f} s the job spends "
                    "beyond the bare loop (Beam start-up) is most of its wall time"
                    if encoder in CHEAP_ENCODERS
                    else ""
                )
                checks.append(
                    target(
                        f"{encoder}: job / bare",
                        row_ratio(job, bare),
                        TARGETS["job_vs_bare"],
                        note=note,
                    )
                )
            s2u = best.get("speech2unit")
            if s2u and "error" not in s2u:
                checks.append(
                    target(
                        f"{encoder}: job / speech2unit",
                        row_ratio(job, s2u),
                        TARGETS["job_vs_speech2unit"],
                    )
                )
    return rows, checks


def row_ratio(job: dict, peer: dict) -> float:
    """Job throughput over the peer's (audio seconds per wall second each)."""
    return (job["audio_s"] / job["wall_s"]) / (peer["audio_s"] / peer["wall_s"])


def bench_memory(args, work: Path, corpus: Path) -> tuple[list[dict], list[dict]]:
    encoder = args.memory_encoder
    codebook = prepare_codebook(work, corpus, encoder, args.threads, args.k)
    rows = []
    for times in (1, 10):
        manifest = work / f"scale-{times}x.jsonl"
        n = repeated_manifest(corpus, manifest, args.memory_utts, times)
        spec = {
            "row": "job",
            "encoder": encoder,
            "format": "jsonl",
            "input": str(manifest),
            "audio_root": str(corpus / "fleurs"),
            "codebook": str(codebook),
            "out": str(work / f"out-memory-{times}x"),
            "threads": args.threads,
        }
        print(f"  memory: job on {n} utterances ...", file=sys.stderr, flush=True)
        result = run_fresh(spec)
        result.pop("tokens", None)
        rows.append({"encoder": encoder, "scale": times, "manifest_lines": n, **result})
    checks = []
    if all("error" not in r for r in rows):
        growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1.0
        rows[1]["rss_growth"] = growth
        checks.append(
            target(
                f"{encoder}: peak RSS growth 1x -> 10x",
                growth,
                TARGETS["rss_growth_10x"],
                more_is_better=False,
            )
        )
    return rows, checks
