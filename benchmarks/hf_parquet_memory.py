"""Hugging Face Parquet memory: peak RSS of tokenizing a hub-layout Parquet file.

What it shows: ``speechtok tokenize --format hf-parquet`` keeps memory
bounded whatever the file's size: the reader reads text and ids one row group
at a time, examples carry a ``FILE#row_group=R&row=N`` reference (never the
bytes) through the job's shuffles, and the decode stage reads each row
group's audio column in one pass, 8 rows at a time. The file is generated in the hub's FLEURS layout
(``id``, ``num_samples``, ``path``, ``audio`` {bytes, path}, ``transcription``,
``raw_transcription``, ``gender``, ``lang_id`` ClassLabel with the
``huggingface`` schema metadata, ``language``; row groups of 100 rows, as the
hub's Parquet converter writes audio datasets) from real speech: the WAV
clips of a ``speechtok corpus synth`` corpus (espeak-ng, French), repeated
under new ids until the file reaches the size asked for. The job runs as a
user runs it (``pipelines.cli`` in a fresh process, the embedded runner, the
mfcc encoder with a codebook fitted on the synthetic corpus); the summed RSS
of that process and its children is sampled with psutil
(``benchmarks._harness.TreePeak``). The peer in the same run is the smallest
file: the growth of the peak from it is what the file's size costs.
``--clips-per-row N`` writes the same bytes as N times fewer, longer rows
(row groups N times larger), which separates what each row costs (the
embedded runner holds every element of a shuffle in memory) from what a row
group's bytes cost.

Target: 2 GB of Parquet tokenized with peak RSS under 1 GB.

Usage::

    python -m benchmarks.hf_parquet_memory                    # 0.05 GB and 2 GB
    python -m benchmarks.hf_parquet_memory --sizes 0.05,0.5,1,2
    python -m benchmarks.hf_parquet_memory --quick            # 0.05 and 0.25 GB
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import ROOT, run_row, worker_main, write_json
from benchmarks._machine import machine

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "hf_parquet_memory.json"
GB = 1e9
ROW_GROUP_ROWS = 100
TARGET_MB = {2.0: 1024.0}
FLEURS_CODES = ("de_de", "fr_fr", "sw_ke")


def synth_corpus(work: Path) -> Path:
    """A small real-speech corpus (French, 20 sentences x 2 voices)."""
    from corpora.synth.synth import SynthConfig, synthesize_corpus

    out = work / "synth"
    if not (out / "corpus.json").exists():
        synthesize_corpus(
            SynthConfig(out=str(out), langs=("fr",), per_lang=20, voices=2, seed=0, workers=2)
        )
    return out


def clips(synth: Path, per_row: int = 1) -> list[tuple[bytes, str, int, int]]:
    """``(wav bytes, raw transcription, sentence id, samples)`` of every French
    FLEURS-layout clip; ``per_row`` > 1 joins that many consecutive clips into
    one longer recording (same bytes, fewer rows)."""
    import io

    import numpy as np
    import soundfile as sf

    out = []
    lang = synth / "fleurs" / "fr_fr"
    for tsv in sorted(lang.glob("*.tsv")):
        for line in tsv.read_text(encoding="utf-8").splitlines():
            cols = line.split("\t")
            wav = lang / "audio" / tsv.stem / cols[1]
            out.append((wav.read_bytes(), cols[2], int(cols[0]), sf.info(str(wav)).frames))
    if per_row == 1:
        return out
    joined = []
    for i in range(0, len(out) - per_row + 1, per_row):
        part = out[i : i + per_row]
        wave = np.concatenate([sf.read(io.BytesIO(p[0]), dtype="int16")[0] for p in part])
        buf = io.BytesIO()
        sf.write(buf, wave, 16000, format="WAV", subtype="PCM_16")
        joined.append((buf.getvalue(), " ".join(p[1] for p in part), part[0][2], len(wave)))
    return joined


def write_parquet(path: Path, pool: list[tuple], size_gb: float) -> dict:
    """The hub's FLEURS layout, rows cycling through ``pool`` under new ids, one
    row group of 100 rows at a time (generation memory stays one row group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {
        "id": {"dtype": "int32", "_type": "Value"},
        "audio": {"sampling_rate": 16000, "_type": "Audio"},
        "lang_id": {"names": list(FLEURS_CODES), "_type": "ClassLabel"},
    }
    schema = pa.schema(
        [
            ("id", pa.int32()),
            ("num_samples", pa.int32()),
            ("path", pa.string()),
            ("audio", audio_type),
            ("transcription", pa.string()),
            ("raw_transcription", pa.string()),
            ("gender", pa.int64()),
            ("lang_id", pa.int64()),
            ("language", pa.string()),
        ],
        metadata={b"huggingface": json.dumps({"info": {"features": features}}).encode()},
    )
    rows = written = samples = 0
    # Dictionary encoding would store each repeated clip once per row group, a file
    # far smaller than the audio it holds; real clips are all distinct, so the
    # audio column is written plain (as a writer's dictionary fallback does).
    others = [name for name in schema.names if name != "audio"] + ["audio.path"]
    with pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=others) as writer:
        while written < size_gb * GB:
            batch = [pool[(rows + i) % len(pool)] for i in range(ROW_GROUP_ROWS)]
            names = [f"{rows + i:08d}.wav" for i in range(ROW_GROUP_ROWS)]
            table = pa.table(
                {
                    "id": pa.array([b[2] for b in batch], pa.int32()),
                    "num_samples": pa.array([b[3] for b in batch], pa.int32()),
                    "path": names,
                    "audio": pa.array(
                        [{"bytes": b[0], "path": n} for b, n in zip(batch, names, strict=True)],
                        audio_type,
                    ),
                    "transcription": [b[1].lower() for b in batch],
                    "raw_transcription": [b[1] for b in batch],
                    "gender": pa.array([i % 2 for i in range(ROW_GROUP_ROWS)], pa.int64()),
                    "lang_id": pa.array([1] * ROW_GROUP_ROWS, pa.int64()),
                    "language": ["French"] * ROW_GROUP_ROWS,
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            rows += ROW_GROUP_ROWS
            samples += sum(b[3] for b in batch)
            written = path.stat().st_size  # each row group is on disk once written
    return {
        "rows": rows,
        "row_groups": rows // ROW_GROUP_ROWS,
        "file_gb": path.stat().st_size / GB,
        "audio_h": samples / 16000 / 3600,
    }


def fit_codebook(work: Path, synth: Path) -> Path:
    from pipelines.cli import main

    out = work / "cb-mfcc-k64"
    if not (out / "codebook.json").exists():
        argv = ["fit-codebook", "--format", "fleurs", "--input", str(synth / "fleurs")]
        argv += ["--encoder", "mfcc", "--k", "64", "--sample-frames", "20000", "--out", str(out)]
        assert main(argv) == 0
    return out


def _job(spec: dict) -> dict:
    """Worker side: the tokenize job through the CLI, in this (measured) process."""
    from pipelines.cli import main

    argv = ["tokenize", "--format", "hf-parquet", "--input", spec["input"]]
    argv += ["--encoder", "mfcc", "--codebook", spec["codebook"], "--out", spec["out"]]
    argv += ["--max-seconds", str(spec["max_seconds"])]
    start = time.perf_counter()
    status = main(argv)
    wall = time.perf_counter() - start
    index = json.loads((Path(spec["out"]) / "_index.json").read_text())
    return {**spec, "status": status, "wall_s": wall, "counts": index["counts"]}


WORKERS = {"job": _job}


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'asked GB':>8} {'file GB':>8} {'rows':>7} {'row groups':>10} {'audio h':>8} "
        f"{'accepted':>8} {'job s':>7} {'peak RSS MB':>11} {'target MB':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        target = f"{r['target_mb']:.0f}" if r.get("target_mb") else "-"
        if "error" in r:
            print(f"{r['size_gb']:>8} ERROR {r['error']}")
            continue
        print(
            f"{r['size_gb']:>8} {r['file_gb']:>8.2f} {r['rows']:>7} {r['row_groups']:>10} "
            f"{r['audio_h']:>8.1f} {r['counts']['accepted']:>8} {r['wall_s']:>7.1f} "
            f"{r['peak_rss_mb']:>11.0f} {target:>9}"
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.hf_parquet_memory", description=__doc__.split("\n")[0]
    )
    p.add_argument("--sizes", help="comma-separated file sizes in GB (default 0.05,2)")
    p.add_argument("--quick", action="store_true", help="sizes 0.05,0.25")
    p.add_argument(
        "--clips-per-row",
        type=int,
        default=1,
        help="join N clips per row (the same bytes in N times fewer, longer utterances)",
    )
    p.add_argument("--workdir", help="keep inputs and outputs here (default: a temp dir)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(WORKERS, args.worker)
    default = "0.05,0.25" if args.quick else "0.05,2"
    sizes = [float(s) for s in (args.sizes or default).split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="speechtok-hf-mem-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        synth = synth_corpus(work)
        pool = clips(synth, args.clips_per_row)
        codebook = fit_codebook(work, synth)
        for size in sizes:
            name = f"hf-{size}gb" + (f"-x{args.clips_per_row}" if args.clips_per_row > 1 else "")
            folder = work / name / "fr_fr" / "train"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "0000.parquet"
            made = write_parquet(path, pool, size)
            out = work / f"{name}-out"
            print(f"{size} GB ({made['rows']} rows): running tokenize...", file=sys.stderr)
            spec = {"row": "job", "input": str(path), "codebook": str(codebook), "out": str(out)}
            spec["max_seconds"] = 30.0 * args.clips_per_row  # joined clips stay accepted
            result = run_row("benchmarks.hf_parquet_memory", spec)
            target = TARGET_MB.get(size)
            rows.append(
                {
                    "size_gb": size,
                    "clips_per_row": args.clips_per_row,
                    "target_mb": target,
                    **made,
                    **result,
                }
            )
            path.unlink()  # the next size needs the disk more than this file
    print()
    print_table(rows)
    checks = [
        {
            "name": f"peak RSS at {r['size_gb']} GB < {r['target_mb']:.0f} MB, every row accepted",
            "value": r.get("peak_rss_mb"),
            "ok": "error" not in r
            and r["peak_rss_mb"] < r["target_mb"]
            and r["counts"]["accepted"] == r["rows"],
        }
        for r in rows
        if r.get("target_mb")
    ]
    write_json(
        args.json,
        {
            "benchmark": "hf_parquet_memory",
            "command": "python -m benchmarks.hf_parquet_memory "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(with_torch=False),
            "rows": rows,
            "checks": checks,
        },
    )
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
