"""Load benchmark: the tokenize job over thousands of short utterances on Beam's
embedded multi-process runner, with bounded memory.

What it shows: the job finishes, every record is a row or a reject (counts
reconcile, reasons as planted), and memory stays bounded: the peak RSS of
the whole process tree (launcher + runner + SDK worker processes, sampled
with psutil) is reported per corpus size, so a size 5x larger with about the
same peak is the evidence. The peer, timed in the same run, is a bare
single-process loop over the same files (read + decode + MFCC + nearest
centroid, no Beam): ``job / peer`` is Beam's overhead, including process start
and the two workers sharing the cores with this machine's other load.

The corpus is generated, not synthesized speech (espeak at 5,000 utterances
would dominate the run): every utterance is its own WAV file of 0.3-1.2 s
(two random partials + noise, 16 kHz PCM 16), four languages, and every
``--bad-every``-th record is broken (0-byte file, random bytes, missing
file), so the reject path is loaded too. The codebook (k=64) is fitted with
``kmeans.fit`` on MFCC frames of 300 clips: the benchmark is about the
tokenize job, which fit-codebook shares its read/decode/encode stages with.

Usage::

    python -m benchmarks.load                       # sizes 1000 and 5000 (~3 min on 2 busy cores)
    python -m benchmarks.load --sizes 5000 --workers 2 --json out.json
    python -m benchmarks.load --sizes 5000 --omp-threads 1   # one torch thread per worker
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import MB, ROOT, run_logged, write_json
from benchmarks._machine import machine

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "load.json"
SR = 16000
LANGS = ("fr", "de", "sw", "en")
BAD_KINDS = ("empty_audio", "decode_error", "missing_file")  # the reason each planted kind gets


def write_corpus(folder: Path, n: int, bad_every: int, seed: int = 0) -> dict[str, Any]:
    """``n`` records in ``folder/manifest.jsonl``; returns what the job must report."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    lines, bad, good_files, audio_s = [], {k: 0 for k in BAD_KINDS}, [], 0.0
    for i in range(n):
        name = f"utt{i:05d}.wav"
        path = clips / name
        if bad_every and i % bad_every == bad_every - 1:
            kind = BAD_KINDS[(i // bad_every) % len(BAD_KINDS)]
            bad[kind] += 1
            if kind == "empty_audio":
                path.write_bytes(b"")
            elif kind == "decode_error":
                path.write_bytes(rng.bytes(4000))
        else:
            seconds = float(rng.uniform(0.3, 1.2))
            t = np.arange(round(seconds * SR)) / SR
            f1, f2 = rng.uniform(120, 400), rng.uniform(500, 2500)
            wave = 0.2 * np.sin(2 * np.pi * f1 * t) + 0.1 * np.sin(2 * np.pi * f2 * t)
            wave += 0.01 * rng.standard_normal(len(t))
            sf.write(str(path), wave.astype(np.float32), SR, subtype="PCM_16")
            good_files.append(str(path))
            audio_s += len(t) / SR
        lang = LANGS[i % len(LANGS)]
        lines.append(
            json.dumps(
                {
                    "id": f"utt{i:05d}",
                    "audio": f"clips/{name}",
                    "text": f"utterance {i}",
                    "lang": lang,
                    "split": "train",
                }
            )
        )
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return {
        "manifest": str(folder / "manifest.jsonl"),
        "records": n,
        "good": len(good_files),
        "bad": {k: v for k, v in bad.items() if v},
        "good_files": good_files,
        "audio_seconds": audio_s,
    }


def fit_codebook(files: list[str], out: Path, k: int = 64) -> str:
    import kmeans
    from tokenizer.audio import load_waveform
    from tokenizer.audio_config import AudioConfig
    from tokenizer.encoders import build_encoder

    enc = build_encoder("mfcc")
    waves = [load_waveform(f, AudioConfig()) for f in files[:300]]
    frames = np.concatenate(enc.encode(waves))
    ident = enc.identity()
    cb = kmeans.fit(frames, k, seed=0).with_metadata(
        encoder=ident.encoder, layer=ident.layer, mode=ident.mode, frame_rate=50.0
    )
    cb.save(str(out))
    return str(out)


def bare_loop(files: list[str], codebook_dir: str) -> float:
    """The peer: the same per-file work in one process on one thread, no Beam.

    One torch thread: on 2 busy cores torch's default (one thread per core)
    made the nearest-centroid step up to 20x slower and erratic."""
    import torch

    from kmeans import Codebook
    from tokenizer.audio import load_waveform
    from tokenizer.audio_config import AudioConfig
    from tokenizer.encoders import build_encoder

    enc, cb, cfg = build_encoder("mfcc"), Codebook.load(codebook_dir), AudioConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        for f in files:
            cb.assign(enc.encode([load_waveform(f, cfg)])[0])
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def run_job(
    corpus: dict, codebook: str, out: Path, workers: int, omp_threads: int | None
) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "pipelines.cli", "tokenize", "--format", "jsonl",
        "--input", corpus["manifest"], "--encoder", "mfcc", "--codebook", codebook,
        "--out", str(out), "--direct_running_mode=multi_processing",
        f"--direct_num_workers={workers}",
    ]  # fmt: skip
    env = {}
    if omp_threads:  # caps torch's threads in every worker (the nearest-centroid step)
        env["OMP_NUM_THREADS"] = str(omp_threads)
    log = out.parent / f"{out.name}.log"
    status, wall, rss = run_logged(cmd, log, env)
    if status != 0:
        raise RuntimeError(f"tokenize exited {status}; see {log}")
    return {
        "wall_s": wall,
        "peak_rss_tree_mb": rss.peak / MB,
        "peak_rss_single_mb": rss.peak_single / MB,
        "processes": rss.max_procs,
        "log": str(log),
    }


def check_output(out: Path, corpus: dict) -> dict[str, Any]:
    """The job's own index and shards agree with what was planted."""
    import pyarrow.dataset as ds

    index = json.loads((out / "_index.json").read_text())
    rows = ds.dataset(str(out / "tokens"), format="parquet", partitioning="hive").count_rows()
    expected = {
        "input": corpus["records"],
        "accepted": corpus["good"],
        "rejected": sum(corpus["bad"].values()),
    }
    ok = (
        index["counts"] == expected
        and rows == corpus["good"]
        and index["rejects_by_reason"] == corpus["bad"]
    )
    return {
        "counts": index["counts"],
        "rejects_by_reason": index["rejects_by_reason"],
        "rows": rows,
        "as_planted": ok,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'utterances':>10} {'audio s':>8} {'job s':>7} {'utt/s':>7} {'peer s':>7} "
        f"{'job/peer':>8} {'tree RSS MB':>11} {'max proc MB':>11} {'procs':>5} {'rejects':>7} "
        f"{'ok':>3}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['records']:>10} {r['audio_seconds']:>8.0f} {r['wall_s']:>7.1f} "
            f"{r['records'] / r['wall_s']:>7.1f} {r['peer_s']:>7.1f} {r['job_over_peer']:>8.2f} "
            f"{r['peak_rss_tree_mb']:>11.0f} {r['peak_rss_single_mb']:>11.0f} "
            f"{r['processes']:>5} {r['counts']['rejected']:>7} {'yes' if r['as_planted'] else 'NO':>3}"
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=__doc__.split("\n")[0]
    )
    p.add_argument("--sizes", default="1000,5000", help="comma-separated corpus sizes")
    p.add_argument("--workers", type=int, default=2, help="--direct_num_workers")
    p.add_argument(
        "--omp-threads", type=int, help="OMP_NUM_THREADS for the job (default: as inherited)"
    )
    p.add_argument("--bad-every", type=int, default=100, help="plant a bad record every N")
    p.add_argument("--workdir", help="keep corpora and outputs here (default: a temp dir)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    info = machine(with_torch=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="speechtok-load-") as tmp:
        work = Path(args.workdir or tmp)
        for n in sizes:
            folder = work / f"corpus-{n}"
            corpus = write_corpus(folder, n, args.bad_every)
            codebook = fit_codebook(corpus["good_files"], folder / "codebook")
            print(f"{n} utterances: running tokenize on {args.workers} worker processes...")
            job = run_job(corpus, codebook, folder / "out", args.workers, args.omp_threads)
            # Best of two passes: the peer is short, so one busy moment would skew it.
            peer = min(bare_loop(corpus["good_files"], codebook) for _ in range(2))
            checked = check_output(folder / "out", corpus)
            rows.append(
                {
                    "records": n,
                    "audio_seconds": corpus["audio_seconds"],
                    **job,
                    "peer_s": peer,
                    "job_over_peer": job["wall_s"] / peer,
                    **checked,
                }
            )
    print()
    print_table(rows)
    result = {
        "benchmark": "load",
        "command": "python -m benchmarks.load "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "runner": f"FnApiRunner multi_processing, {args.workers} workers",
        "omp_threads": args.omp_threads,
        "peer": "bare single-process loop: load_waveform + mfcc + Codebook.assign per file "
        "(one torch thread, best of 2)",
        "rows": rows,
    }
    write_json(args.json, result)
    return 0 if all(r["as_planted"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
