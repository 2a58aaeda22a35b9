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
  clip's frames, nearest centroid. This is the peer of the target "the job
  runs >= 3x an unbatched speech2unit-style loop".

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
``datastore.shards.write_table`` (same zstd; ours adds file metadata, the
sha256 and the atomic temp + fsync + rename), and the job's write path
(``WriteShards``' bucket writer: sort, ``table_from_rows``, write) against
``pa.Table.from_pylist`` + ``pq.write_table`` from the same row dicts.
Targets: >= 0.8 of raw pyarrow for both.

Layout: this module is the entry (flags, report, the ``--worker`` side of
``benchmarks._harness``); ``tokenize_rows`` holds the rows a worker process
runs, ``tokenize_speech`` the throughput and memory parts, ``tokenize_shards``
the shard-writing part.

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
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import tokenize_shards, tokenize_speech
from benchmarks._harness import ROOT, worker_main, write_json
from benchmarks._machine import machine
from benchmarks.tokenize_speech import ENCODER_ROWS, LANGS, K

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "tokenize.json"
PARTS = ("throughput", "memory", "shards")
TARGETS = {**tokenize_speech.TARGETS, **tokenize_shards.TARGETS}


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
        from benchmarks import tokenize_rows

        return worker_main(tokenize_rows.WORKERS, args.worker, tokenize_rows.PREIMPORTS)
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
            corpus = tokenize_speech.prepare_corpus(work, per_lang, voices)
            info = json.loads((corpus / "corpus.json").read_text())
            report["corpus"] = {
                "langs": sorted(info.get("languages", {}) or LANGS),
                "per_lang": per_lang,
                "voices": voices,
                "utterances": info["totals"]["utterances"],
                "audio_s": info["totals"]["seconds"],
            }
        if "throughput" in parts:
            report["throughput"], found = tokenize_speech.bench_throughput(args, work, corpus)
            checks += found
            done = [r for r in report["throughput"] if "audio_s" in r]
            if done:
                report["corpus"]["audio_s"] = done[0]["audio_s"]
        if "memory" in parts:
            report["memory"], found = tokenize_speech.bench_memory(args, work, corpus)
            checks += found
        if "shards" in parts:
            report["shards"], found = tokenize_shards.bench_shards(args, work)
            checks += found
    report["checks"] = checks
    report["targets"] = TARGETS
    report["machine"] = {**machine(), "load_average_before": load_before}
    report["command"] = "python -m benchmarks.tokenize " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print_report(report)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
