"""What the folder contract costs a reader: sha256 of every listed shard.

Readers check each listed file's size always (a stat) and, in train and eval,
its sha256 (``datastore.shards.read_shard(verify=True)``: the file is read
whole once, hashed, then decoded from memory). This writes a token-shard
folder of about ``--gb`` GB (random tokens, which Parquet cannot compress
away: ~1 KB a row) and reads it back through the shard reader, turn by turn:

- ``size``: the default read (size checked);
- ``sha256``: the verified read;
- ``hash only``: ``hashlib.sha256`` over the same files (the floor of the check).

Reported: seconds per GB and ``sha256 / size`` (the peer, measured in the same run).

Usage::

    python -m benchmarks.folder_verify             # ~1 GB, best of 2
    python -m benchmarks.folder_verify --gb 0.2
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import ROOT, write_json
from benchmarks._machine import machine

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "folder_verify.json"


def write_folder(out: Path, gb: float) -> int:
    """A tokenize-like folder of ~``gb`` GB; returns its bytes (cached)."""
    from datastore import shards

    if (out / "_index.json").exists():
        return sum(s["bytes"] for s in shards.Index.read(str(out)).shards)
    rng = np.random.default_rng(0)
    rows_per_shard, infos, n = 20_000, [], 0
    target = int(gb * 1e9)
    while sum(i.bytes for i in infos) < target:
        rows = [
            {"id": f"u{n + i:09d}", "sentence_id": None, "speaker": None, "corpus": "c",
             "split": "train", "lang": "fr", "source_lang": None, "modality": "speech",
             "audio": f"/data/clips/{n + i}.wav", "offset_s": None, "duration_s": 5.0,
             "n_frames": 500, "tokens": rng.integers(0, 1024, 500).astype(np.int16),
             "durations": None, "text": "x" * 80, "translation": None, "tgt_lang": None,
             "codebook": "cb"}
            for i in range(rows_per_shard)
        ]  # fmt: skip
        infos += shards.write_partition(
            rows,
            out_dir=str(out),
            kind="tokens",
            partition={"corpus": "c", "split": "train", "lang": "fr"},
            config=shards.WriteConfig(rows_per_shard=rows_per_shard),
            first_index=len(infos),
        )
        n += rows_per_shard
    shards.Index(
        job="tokenize",
        config={},
        counts={"input": n, "accepted": n, "rejected": 0},
        shards=shards.shard_dicts(infos),
    ).write(str(out))
    return sum(i.bytes for i in infos)


def read_all(out: Path, verify: bool) -> int:
    from datastore import shards

    rows = 0
    for _, table in shards.iter_shards(str(out), "tokens", columns=["id", "tokens"], verify=verify):
        rows += table.num_rows
    return rows


def hash_only(out: Path) -> int:
    n = 0
    for path in sorted(out.rglob("*.parquet")):
        n += len(hashlib.sha256(path.read_bytes()).digest())
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "results" / "folder-verify-work"))
    p.add_argument("--json", default=str(DEFAULT_JSON))
    args = p.parse_args(argv)
    out = Path(args.work) / f"tokens-{args.gb:g}gb"
    size = write_folder(out, args.gb)
    rows = {"size": lambda: read_all(out, False), "sha256": lambda: read_all(out, True),
            "hash only": lambda: hash_only(out)}  # fmt: skip
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    gb = size / 1e9
    print(f"{'read':<12}{'s':>8}{'s/GB':>8}   ({gb:.2f} GB of shards)")
    for name, seconds in best.items():
        print(f"{name:<12}{seconds:>8.2f}{seconds / gb:>8.2f}")
    ratio = best["sha256"] / best["size"]
    print(f"sha256 / size: {ratio:.2f}")
    write_json(args.json, {"machine": machine(), "gb": gb, "seconds": best, "ratio": ratio,
                           "command": " ".join(["python -m benchmarks.folder_verify", *(argv or sys.argv[1:])])})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
