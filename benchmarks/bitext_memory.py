"""Bitext job memory: peak RSS of the job's process tree against line count.

What it shows: ``speechtok bitext`` streams, so its memory does not grow with
the number of lines it reads. Each size gets a generated
``WikiMatrix.en-fr.tsv.gz`` of short lines in the shape that exhausted memory
before (a small gzip of many lines): a 500-line cycle of pairs, so most lines
are exact duplicates of an earlier pair (``duplicate_pair`` rejects, each
written as a reject row) and one line in ten is below the score threshold
(``low_score``). The job runs as a user runs it (``python -m pipelines.cli
bitext`` in a subprocess, embedded runner); the summed RSS of the process and
all its children is sampled with psutil every 0.1 s. The peer, in the same
run, is the smallest size: a flat peak across sizes is the evidence.
``--distinct`` makes every pair distinct instead (every line accepted), which
measures the part that does grow: the kept pairs themselves.

Targets (issue 21): 1 M lines under 300 MB, 10 M lines under 400 MB.

Usage::

    python -m benchmarks.bitext_memory                    # 1 M and 10 M lines
    python -m benchmarks.bitext_memory --quick            # 100 k and 1 M lines
    python -m benchmarks.bitext_memory --sizes 1000000 --distinct
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._harness import MB, ROOT, run_logged, write_json
from benchmarks._machine import machine

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bitext_memory.json"
CYCLE = 500  # distinct lines per cycle: one gzip window, so the file stays small
MIN_SCORE = "1.04"
TARGETS_MB = {1_000_000: 300.0, 10_000_000: 400.0}


def line(i: int, distinct: bool) -> str:
    j = i if distinct else i % CYCLE
    score = "1.00" if j % 10 == 0 else f"{1.05 + (j % 7) / 100:.2f}"
    return f"{score}\tline {j} in English.\tligne {j} en français.\n"


def write_wikimatrix(path: Path, n: int, distinct: bool) -> dict[str, int]:
    """Write ``n`` lines; returns the counts the job must report."""
    batch = 100_000
    with gzip.open(path, "wb", compresslevel=6) as f:
        for start in range(0, n, batch):
            f.write(
                "".join(line(i, distinct) for i in range(start, min(n, start + batch))).encode()
            )

    def n_low(m: int) -> int:  # lines j < m with j % 10 == 0
        return (m + 9) // 10

    if distinct:
        low, kept = n_low(n), n - n_low(n)
    else:
        full, rest = divmod(n, CYCLE)
        low = full * n_low(CYCLE) + n_low(rest)
        kept = min(n, CYCLE) - n_low(min(n, CYCLE))
    dups = n - low - kept
    return {"input": n, "accepted": kept, "low_score": low, "duplicate_pair": dups}


def run_job(glob: str, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "pipelines.cli", "bitext", "--input", glob,
        "--min-score", MIN_SCORE, "--out", str(out),
    ]  # fmt: skip
    log = out.parent / f"{out.name}.log"
    status, wall, rss = run_logged(cmd, log)
    if status != 0:
        raise RuntimeError(f"bitext exited {status}; see {log}")
    return {
        "wall_s": wall,
        "peak_rss_tree_mb": rss.peak / MB,
        "processes": rss.max_procs,
    }


def check_output(out: Path, expected: dict[str, int]) -> dict[str, Any]:
    index = json.loads((out / "_index.json").read_text())
    c, reasons = index["counts"], index["rejects_by_reason"]
    planted = {k: v for k, v in expected.items() if k not in ("input", "accepted") and v}
    ok = (
        c["input"] == expected["input"]
        and c["accepted"] == expected["accepted"]
        and reasons == planted
    )
    return {"counts": c, "rejects_by_reason": reasons, "as_planted": ok}


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'lines':>11} {'gzip KB':>8} {'accepted':>9} {'job s':>7} {'lines/s':>8} "
        f"{'tree RSS MB':>11} {'target MB':>9} {'ok':>3}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        target = f"{r['target_mb']:.0f}" if r["target_mb"] else "-"
        print(
            f"{r['lines']:>11} {r['gzip_kb']:>8.0f} {r['counts']['accepted']:>9} "
            f"{r['wall_s']:>7.1f} {r['lines'] / r['wall_s']:>8.0f} "
            f"{r['peak_rss_tree_mb']:>11.0f} {target:>9} {'yes' if r['as_planted'] else 'NO':>3}"
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bitext_memory", description=__doc__.split("\n")[0]
    )
    p.add_argument("--sizes", help="comma-separated line counts (default 1000000,10000000)")
    p.add_argument("--quick", action="store_true", help="sizes 100000,1000000")
    p.add_argument("--distinct", action="store_true", help="every pair distinct (all accepted)")
    p.add_argument("--workdir", help="keep inputs and outputs here (default: a temp dir)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default = "100000,1000000" if args.quick else "1000000,10000000"
    sizes = [int(s) for s in (args.sizes or default).split(",") if s.strip()]
    info = machine(with_torch=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="speechtok-bitext-mem-") as tmp:
        work = Path(args.workdir or tmp)
        for n in sizes:
            folder = work / f"wm-{n}{'-distinct' if args.distinct else ''}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "WikiMatrix.en-fr.tsv.gz"
            expected = write_wikimatrix(path, n, args.distinct)
            print(f"{n} lines ({path.stat().st_size / 1024:.0f} KB gzip): running bitext...")
            job = run_job(str(path), folder / "out")
            rows.append(
                {
                    "lines": n,
                    "gzip_kb": path.stat().st_size / 1024,
                    "distinct": args.distinct,
                    "target_mb": None if args.distinct else TARGETS_MB.get(n),
                    **job,
                    **check_output(folder / "out", expected),
                }
            )
    print()
    print_table(rows)
    checks = [
        {
            "name": f"peak RSS at {r['lines']} lines < {r['target_mb']:.0f} MB",
            "value": r["peak_rss_tree_mb"],
            "ok": r["peak_rss_tree_mb"] < r["target_mb"] and r["as_planted"],
        }
        for r in rows
        if r["target_mb"]
    ]
    result = {
        "benchmark": "bitext_memory",
        "command": "python -m benchmarks.bitext_memory "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "rows": rows,
        "checks": checks,
    }
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
