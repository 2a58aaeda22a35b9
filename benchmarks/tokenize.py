"""Tokenize benchmark: the Beam job against Beam-free peers, memory scaling,
and shard writing against raw pyarrow, in one run.

Throughput (seconds of audio per wall second) on mini-FLEURS (espeak-ng
speech in the FLEURS layout), per encoder, every row a fresh subprocess whose
whole process tree the driver samples for peak RSS (psutil):

- ``job``: ``pipelines.tokenize.run`` on the embedded runner (FnApiRunner,
  in-process), from the FLEURS manifest to shards, rejects and
  ``_index.json`` (planning, pipeline start-up, model load, writing: all in);
- ``bare``: the same library pieces without Beam: ``read_manifest``,
  ``audio.prepare``, clips grouped exactly as the job's ``BatchElements``
  groups them (centisecond weights up to 4 x ``max_batch_seconds``),
  ``Encoder.encode`` per group, ``token_row`` with the same codebook; rows
  kept in memory, not written (the job's writing counts against it);
- ``unbatched``: one utterance at a time through the same encoder (read the
  file, ``encode([clip])``, assign): batching's contribution alone;
- ``speech2unit`` (whisper-base only): what fairseq's speech2unit
  ``quantize_with_kmeans.py`` does, ported naively to Whisper: per file,
  ``WhisperFeatureExtractor`` (the 30 s padded window), the *full* 6-layer
  encoder forward with ``output_hidden_states``, the layer-L states cut to the
  clip's frames, nearest centroid. This is the peer the issue's "3x an
  unbatched speech2unit-style loop" target is checked against.

Each row's clock starts after the imports (the same modules are imported
first in every row, Beam's included) and stops when its rows exist, so model
loading counts for every row, and so do the job's planning (which builds the
encoder once more to check the codebook), pipeline construction and runner
start-up: the fixed costs a small corpus feels most. Rows take turns within each repeat (the
machine is shared) and each row's best wall time counts; targets are ratios
within one run: ``job >= 0.8 x bare`` and ``job >= 3 x speech2unit``.
``job / unbatched`` is reported, not targeted: on a CPU whose cores are not
contended, unpadded Whisper gains nothing from batching (see
``benchmarks/encoders.py``), so that ratio sits near 1.

Memory: the job's peak RSS (process tree) on a JSONL manifest listing the
corpus once (1x) and ten times under new ids (10x): growth must stay < 20%.

Shard writing: the same token table written by raw ``pq.write_table`` and by
``tokenizer.shards.write_table`` (same zstd; ours adds file metadata, the
sha256 and the atomic temp + fsync + rename), and the job's write path
(``WriteShards``' bucket writer: sort, ``table_from_rows``, write) against
``pa.Table.from_pylist`` + ``pq.write_table`` from the same row dicts.
Targets: >= 0.8 of raw pyarrow for both.

Usage::

    python -m benchmarks.tokenize --quick           # ~2-3 min on 2 busy cores
    python -m benchmarks.tokenize                   # 100 utterances, best of 3
    python -m benchmarks.tokenize --threads 1 --parts throughput --encoders whisper-base
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._machine import machine

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "tokenize.json"
PARTS = ("throughput", "memory", "shards")
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
    "write_vs_pyarrow": 0.8,  # shard writing >= 0.8 x raw pyarrow
}
LANGS = ("fr", "de", "es", "sw")  # + English, which mini-FLEURS always speaks
K = 1024  # the paper's codebook size (--quick: 256, fitted on fewer frames)
MB = 2**20


# -- workers (one row per process) ----------------------------------------------
def _manifest(spec: dict):
    from tokenizer.manifests import ManifestConfig

    return ManifestConfig(
        format=spec["format"], input=spec["input"], audio_root=spec.get("audio_root")
    )


def _encoder_config(spec: dict):
    from tokenizer.encoders import EncoderConfig

    return EncoderConfig(name=spec["encoder"], threads=spec.get("threads"))


def worker_job(spec: dict) -> dict:
    import pyarrow.dataset as ds

    from pipelines import tokenize as job

    config = job.TokenizeJobConfig(
        manifest=_manifest(spec),
        encoder=_encoder_config(spec),
        codebook=spec["codebook"],
        out=spec["out"],
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the result line
        index = job.run(config)
    wall = time.perf_counter() - start
    table = ds.dataset(
        os.path.join(spec["out"], "tokens"), format="parquet", partitioning="hive"
    ).to_table(columns=["id", "duration_s", "tokens"])
    ids, tokens = table.column("id").to_pylist(), table.column("tokens").to_pylist()
    return {
        "wall_s": wall,
        "audio_s": float(sum(table.column("duration_s").to_pylist())),
        "utterances": table.num_rows,
        "rejected": index.counts["rejected"],
        "tokens": dict(zip(ids, tokens, strict=True)) if spec.get("keep_tokens") else None,
    }


def _decoded(spec: dict):
    """(example, waveform) pairs of the manifest, in manifest order, as the job decodes them."""
    from tokenizer.audio import AudioConfig, prepare
    from tokenizer.records import AudioExample

    config = AudioConfig()
    for item in _read_manifest(spec):
        if isinstance(item, AudioExample):
            result = prepare(item, config)
            if isinstance(result, list):
                yield from result


def _read_manifest(spec: dict):
    from tokenizer.manifests import read_manifest

    return read_manifest(_manifest(spec))


def _rows_result(start: float, rows: list[dict], spec: dict) -> dict:
    return {
        "wall_s": time.perf_counter() - start,
        "audio_s": float(sum(r["duration_s"] for r in rows)),
        "utterances": len(rows),
        "tokens": {r["id"]: r["tokens"].tolist() for r in rows}
        if spec.get("keep_tokens")
        else None,
    }


def worker_bare(spec: dict) -> dict:
    from kmeans import Codebook
    from kmeans.postprocess import frames_to_tokens
    from tokenizer.assign import token_row
    from tokenizer.encoders import build_encoder
    from tokenizer.model_handler import clip_weight
    from tokenizer.speech_model import BATCH_OVER_ENCODER_BATCH

    start = time.perf_counter()
    codebook = Codebook.load(spec["codebook"])
    encoder = build_encoder(spec["encoder"], threads=spec.get("threads"))
    # BatchElements with min = max = target: flush before an element would overflow.
    target = max(1, round(BATCH_OVER_ENCODER_BATCH * encoder.config.max_batch_seconds * 100))
    rows: list[dict] = []
    batch: list[tuple] = []
    weight = 0

    def flush() -> None:
        features = encoder.encode([wave for _, wave in batch])
        for (example, wave), feats in zip(batch, features, strict=True):
            tokens = frames_to_tokens(codebook, feats)
            rows.append(token_row(example, tokens, codebook.id, n_samples=len(wave)))

    for example, wave in _decoded(spec):
        size = clip_weight((example.id, wave))
        if batch and weight + size > target:
            flush()
            batch, weight = [], 0
        batch.append((example, wave))
        weight += size
    if batch:
        flush()
    return _rows_result(start, rows, spec)


def worker_unbatched(spec: dict) -> dict:
    from kmeans import Codebook
    from kmeans.postprocess import frames_to_tokens
    from tokenizer.assign import token_row
    from tokenizer.encoders import build_encoder

    start = time.perf_counter()
    codebook = Codebook.load(spec["codebook"])
    encoder = build_encoder(spec["encoder"], threads=spec.get("threads"))
    rows = []
    for example, wave in _decoded(spec):  # one file read, encoded and assigned at a time
        feats = encoder.encode([wave])[0]
        tokens = frames_to_tokens(codebook, feats)
        rows.append(token_row(example, tokens, codebook.id, n_samples=len(wave)))
    return _rows_result(start, rows, spec)


def worker_speech2unit(spec: dict) -> dict:
    """fairseq speech2unit's per-file loop with a naive Whisper port (module doc)."""
    import numpy as np
    import torch
    from transformers import WhisperFeatureExtractor

    from kmeans import Codebook
    from tokenizer.encoders.whisper import SAMPLES_PER_FRAME, whisper_module_from_tensors
    from tokenizer.encoders.whisper_convert import load_encoder_weights, whisper_base_weights

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    codebook = Codebook.load(spec["codebook"])
    layer = int(codebook.metadata["layer"])
    tensors, heads = load_encoder_weights(whisper_base_weights())
    model = whisper_module_from_tensors(tensors, heads).float().eval()
    extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    ids, audio_s, tokens = [], 0.0, []
    for example, wave in _decoded(spec):
        mel = extractor(wave, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            hidden = model(mel, output_hidden_states=True).hidden_states[layer]
        n_frames = -(-len(wave) // SAMPLES_PER_FRAME)
        feats = np.ascontiguousarray(hidden[0, :n_frames].numpy())
        ids.append(example.id)
        tokens.append(codebook.assign(feats).astype(np.int16).tolist())
        audio_s += len(wave) / 16000
    return {
        "wall_s": time.perf_counter() - start,
        "audio_s": audio_s,
        "utterances": len(ids),
        "tokens": dict(zip(ids, tokens, strict=True)) if spec.get("keep_tokens") else None,
    }


WORKERS = {
    "job": worker_job,
    "bare": worker_bare,
    "unbatched": worker_unbatched,
    "speech2unit": worker_speech2unit,
}


PREIMPORTS = (
    "apache_beam.ml.inference.base",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "torch",
    "transformers.models.whisper.modeling_whisper",
    "transformers.models.whisper.feature_extraction_whisper",
    "kmeans.kernels",
    "kmeans.postprocess",
    "pipelines.tokenize",
    "tokenizer.model_handler",
    "tokenizer.encoders.whisper_convert",
)


def preimport() -> None:
    """Import what any row uses before its clock starts, the same set in every row:
    interpreter start-up is not throughput, and Beam's lazy ``apache_beam.ml``
    import (which pulls in torch) would otherwise land inside the job's clock only."""
    import importlib

    for name in PREIMPORTS:
        importlib.import_module(name)


def run_worker(spec: dict) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    preimport()
    result = WORKERS[spec["row"]](spec)
    result["cpu_s"] = sum(os.times()[:4])  # this process and its reaped children
    return result


# -- driver side ------------------------------------------------------------------
class TreePeak:
    """Samples the summed RSS of a process and its descendants until it exits."""

    def __init__(self, pid: int, interval: float = 0.02):
        import psutil

        self._proc = psutil.Process(pid)
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_case(spec: dict) -> dict:
    """Run one row in a fresh process; returns its result plus the tree's peak RSS."""
    if spec.get("out"):  # every pass starts from an empty output folder
        shutil.rmtree(spec["out"], ignore_errors=True)
    cmd = [sys.executable, "-m", "benchmarks.tokenize", "--worker", json.dumps(spec)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = TreePeak(proc.pid)
    out, err = proc.communicate()
    peak = sampler.stop()
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-6:]
        return {**spec, "error": " | ".join(tail)}
    result = json.loads(out.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start
    result["peak_rss_mb"] = peak / MB
    return result


def prepare_corpus(work: Path, per_lang: int, voices: int) -> Path:
    """mini-FLEURS under ``work/corpus`` (kept when an earlier run made the same one)."""
    from tokenizer.synth.synth import SynthConfig, synthesize_corpus

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
    from tokenizer.encoders import EncoderConfig
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
    from tokenizer.manifests import ManifestConfig, read_manifest
    from tokenizer.records import AudioExample

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


def bench_throughput(args, work: Path, corpus: Path) -> tuple[list[dict], list[dict]]:
    rows: list[dict] = []
    checks: list[dict] = []
    for encoder in args.encoders:
        codebook = prepare_codebook(work, corpus, encoder, args.threads, args.k)
        names = [n for n in ENCODER_ROWS[encoder] if not (args.quick and n in INFO_ROWS)]
        best: dict[str, dict] = {}
        for repeat in range(args.repeats):
            for name in names:
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
                result = run_case(spec)
                if "error" in result:
                    print(f"  {encoder} {name}: ERROR {result['error']}", file=sys.stderr)
                    best.setdefault(name, result)
                    continue
                print(
                    f"  pass {repeat + 1} {encoder} {name}: {result['wall_s']:.2f} s "
                    f"(peak {result['peak_rss_mb']:.0f} MB)",
                    file=sys.stderr,
                    flush=True,
                )
                kept = best.get(name)
                tokens = (kept or {}).get("tokens") or result.get("tokens")
                peak = max(result["peak_rss_mb"], (kept or {}).get("peak_rss_mb", 0.0))
                if kept is None or "error" in kept or result["wall_s"] < kept["wall_s"]:
                    best[name] = result
                best[name].update(tokens=tokens, peak_rss_mb=peak)
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
                    check(f"{encoder}: job / bare", row_ratio(job, bare), "job_vs_bare", note=note)
                )
            s2u = best.get("speech2unit")
            if s2u and "error" not in s2u:
                checks.append(
                    check(
                        f"{encoder}: job / speech2unit", row_ratio(job, s2u), "job_vs_speech2unit"
                    )
                )
    return rows, checks


def row_ratio(job: dict, peer: dict) -> float:
    """Job throughput over the peer's (audio seconds per wall second each)."""
    return (job["audio_s"] / job["wall_s"]) / (peer["audio_s"] / peer["wall_s"])


def check(
    name: str, value: float | None, target: str, more_is_better: bool = True, note: str = ""
) -> dict:
    """One target; with a ``note`` it is informational (``ok`` None, never a miss)."""
    limit = TARGETS[target]
    ok = value is not None and (value >= limit if more_is_better else value <= limit)
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "more_is_better": more_is_better,
        "ok": None if note else ok,
        "note": note or None,
    }


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
        result = run_case(spec)
        result.pop("tokens", None)
        rows.append({"encoder": encoder, "scale": times, "manifest_lines": n, **result})
    checks = []
    if all("error" not in r for r in rows):
        growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1.0
        rows[1]["rss_growth"] = growth
        checks.append(
            check(f"{encoder}: peak RSS growth 1x -> 10x", growth, "rss_growth_10x", False)
        )
    return rows, checks


def token_rows(n: int, seed: int = 0) -> list[dict]:
    """Row dicts shaped like the job's (int16 token arrays of 2-20 s at 50 Hz, k=1024)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    langs = ("fr", "de", "sw")
    rows = []
    for i in range(n):
        n_frames = int(rng.integers(100, 1000))
        lang = langs[i % len(langs)]
        rows.append(
            {
                "id": f"{lang}/{i:08d}",
                "sentence_id": str(i // 3),
                "speaker": f"f{i % 5}",
                "corpus": "fleurs",
                "split": "train",
                "lang": lang,
                "source_lang": f"{lang}_xx",
                "modality": "speech",
                "audio": f"/data/fleurs/{lang}/audio/train/{i:08d}.wav",
                "duration_s": n_frames / 50.0,
                "n_frames": n_frames,
                "tokens": rng.integers(0, K, n_frames).astype(np.int16),
                "durations": None,
                "text": "Tous les êtres humains naissent libres et égaux en dignité. " * 2,
                "translation": None,
                "tgt_lang": None,
                "codebook": "whisper-base-L3-k1024-00000000",
            }
        )
    return rows


def bench_shards(args, work: Path) -> tuple[list[dict], list[dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.common import WriteShards
    from tokenizer import schema, shards

    rows = token_rows(args.shard_rows)
    config = shards.WriteConfig()
    table = shards.table_from_rows(sorted(rows, key=lambda r: r["id"]), schema.TOKENS_DIR)
    metadata = {schema.META_ENCODER: "whisper-base", schema.META_VERSION: schema.SCHEMA_VERSION}
    out = work / "shards"
    out.mkdir(parents=True, exist_ok=True)
    writer = WriteShards(str(out), schema.TOKENS_DIR, config, metadata)
    partition = "tokens/corpus=fleurs/split=train/lang=xx"

    def raw_table() -> None:
        pq.write_table(table, out / "raw.parquet", compression=config.compression)

    def ours_table() -> None:
        shards.write_table(table, str(out / "ours.parquet"), config, metadata)

    def raw_rows() -> None:
        t = pa.Table.from_pylist(rows, schema=schema.TOKEN_SCHEMA)
        pq.write_table(t, out / "raw-rows.parquet", compression=config.compression)

    def job_path() -> None:
        writer._write_bucket(((partition, 0), rows))  # the job's own per-bucket writer

    peers = {
        "pyarrow.write_table": raw_table,
        "shards.write_table": ours_table,
        "pyarrow from rows": raw_rows,
        "job write path": job_path,
    }
    best = dict.fromkeys(peers, float("inf"))
    for _ in range(args.shard_repeats):
        for name, fn in peers.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    size = (out / "raw.parquet").stat().st_size
    table_mb = table.nbytes / MB
    result = []
    for name, seconds in best.items():
        result.append(
            {
                "row": name,
                "rows": len(rows),
                "wall_s": seconds,
                "rows_per_s": len(rows) / seconds,
                "table_mb_per_s": table_mb / seconds,
            }
        )
    by = {r["row"]: r for r in result}
    for r in result:
        r["vs_pyarrow_table"] = best["pyarrow.write_table"] / r["wall_s"]
    checks = [
        check(
            "shards.write_table / pyarrow.write_table (same table)",
            best["pyarrow.write_table"] / best["shards.write_table"],
            "write_vs_pyarrow",
        ),
        check(
            "job write path / pyarrow from the same row dicts",
            best["pyarrow from rows"] / best["job write path"],
            "write_vs_pyarrow",
        ),
    ]
    by["pyarrow.write_table"]["parquet_mb"] = size / MB
    return result, checks


# -- report ---------------------------------------------------------------------
def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict) -> None:
    if report.get("throughput"):
        print(
            f"\nthroughput ({report['corpus']['utterances']} utterances, "
            f"{report['corpus']['audio_s']:.0f} s of audio; best of {report['repeats']})"
        )
        header = (
            f"{'encoder':<14}{'row':<13}{'wall s':>8}{'x real time':>13}{'job/row':>9}"
            f"{'peak MB':>9}{'same tok':>10}"
        )
        print(header)
        print("-" * len(header))
        for r in report["throughput"]:
            if "error" in r:
                print(f"{r['encoder']:<14}{r['row']:<13}ERROR {r['error']}")
                continue
            print(
                f"{r['encoder']:<14}{r['row']:<13}{r['wall_s']:>8.2f}{r['x_real_time']:>13.1f}"
                f"{_fmt(r.get('job_vs_row'), '9.2f')}{r['peak_rss_mb']:>9.0f}"
                f"{_fmt(r.get('token_agreement_with_job'), '10.3f')}"
            )
    if report.get("memory"):
        print("\nmemory (tokenize job, process tree peak RSS)")
        for r in report["memory"]:
            if "error" in r:
                print(f"  {r['scale']:>2}x ERROR {r['error']}")
                continue
            print(
                f"  {r['scale']:>2}x  {r['manifest_lines']:>6} utterances  {r['audio_s']:>8.0f} s audio"
                f"  {r['wall_s']:>7.1f} s  peak {r['peak_rss_mb']:>7.0f} MB"
            )
    if report.get("shards"):
        print("\nshard writing (one shard, zstd)")
        for r in report["shards"]:
            print(
                f"  {r['row']:<22}{r['rows']:>8} rows {r['wall_s']:>8.3f} s "
                f"{r['rows_per_s']:>10.0f} rows/s  {r['vs_pyarrow_table']:>6.2f} x pyarrow table"
            )
    if report.get("checks"):
        print("\ntargets:")
        for c in report["checks"]:
            op = ">=" if c["more_is_better"] else "<="
            mark = "info" if c["ok"] is None else "ok  " if c["ok"] else "MISS"
            line = f"  {mark} {c['target']} = {_fmt(c['value'], '.3f')} ({op} {c['limit']:g})"
            print(line + (f"  [{c['note']}]" if c.get("note") else ""))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.tokenize", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="small corpus, one pass (~2-3 min)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    p.add_argument("--encoders", default=",".join(ENCODER_ROWS), help="whisper-base,mfcc")
    p.add_argument("--per-lang", type=int, help="sentences per language (default 10; quick 3)")
    p.add_argument("--voices", type=int, help="recordings per sentence (default 2; quick 1)")
    p.add_argument("--repeats", type=int, help="passes per row, best kept (default 3; quick 1)")
    p.add_argument("--threads", type=int, help="torch threads in every row (default: torch's)")
    p.add_argument("--memory-encoder", default="whisper-base")
    p.add_argument(
        "--memory-utts", type=int, help="utterances at 1x (default: the corpus; quick 10)"
    )
    p.add_argument(
        "--shard-rows", type=int, help="rows in the shard table (default 50000; quick 10000)"
    )
    p.add_argument(
        "--shard-repeats", type=int, help="writes per peer, best kept (default 5; quick 3)"
    )
    p.add_argument("--work", help="keep corpus, codebooks and outputs here (default: a temp dir)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parts = [p for p in args.parts.split(",") if p]
    args.encoders = [e for e in args.encoders.split(",") if e]
    bad = [p for p in parts if p not in PARTS] + [e for e in args.encoders if e not in ENCODER_ROWS]
    if bad:
        print(f"unknown parts/encoders: {bad}", file=sys.stderr)
        return 2
    per_lang = args.per_lang or (3 if args.quick else 10)
    args.k = 256 if args.quick else K
    voices = args.voices or (1 if args.quick else 2)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.memory_utts = args.memory_utts or (10 if args.quick else 10**9)
    args.shard_rows = args.shard_rows or (10_000 if args.quick else 50_000)
    args.shard_repeats = args.shard_repeats or (3 if args.quick else 5)
    load_before = list(os.getloadavg())
    with contextlib.ExitStack() as stack:
        if args.work:
            work = Path(args.work).resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tok-bench-")))
        report: dict[str, Any] = {"benchmark": "tokenize", "repeats": args.repeats}
        checks: list[dict] = []
        if "throughput" in parts or "memory" in parts:
            corpus = prepare_corpus(work, per_lang, voices)
            info = json.loads((corpus / "corpus.json").read_text())
            report["corpus"] = {
                "langs": sorted(info.get("languages", {}) or LANGS),
                "per_lang": per_lang,
                "voices": voices,
                "utterances": info["totals"]["utterances"],
                "audio_s": info["totals"]["seconds"],
            }
        if "throughput" in parts:
            report["throughput"], found = bench_throughput(args, work, corpus)
            checks += found
            done = [r for r in report["throughput"] if "audio_s" in r]
            if done:
                report["corpus"]["audio_s"] = done[0]["audio_s"]
        if "memory" in parts:
            report["memory"], found = bench_memory(args, work, corpus)
            checks += found
        if "shards" in parts:
            report["shards"], found = bench_shards(args, work)
            checks += found
    report["checks"] = checks
    report["targets"] = TARGETS
    report["machine"] = {**machine(), "load_average_before": load_before}
    report["command"] = "python -m benchmarks.tokenize " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print_report(report)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
