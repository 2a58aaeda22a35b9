"""Running the CLI as a user does, and reading back what a job wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds

from tests.reliability.catalogue import Expected

REPO = Path(__file__).resolve().parents[2]


def speechtok(
    *args: str, timeout: float = 300, max_memory: int | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``speechtok ARGS`` in a fresh process (so no test state leaks in), offline.

    ``max_memory``: a data-size limit in bytes (RLIMIT_DATA: the heap and
    anonymous mappings), so a job that reads without bound fails fast instead
    of taking the machine's memory. Not RLIMIT_AS: the CUDA build of torch maps
    more than 4 GiB of shared-library address space ("libtorch_cpu.so: failed to
    map segment"), which is file-backed and costs no memory.
    ``env``: the whole environment (default: this process's).
    """
    env = {**(os.environ if env is None else env), "HF_HUB_OFFLINE": "1"}
    env.pop("SPEECHTOK_PROGRESS_INTERVAL", None)

    def limit_memory():
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (max_memory, max_memory))

    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
        preexec_fn=limit_memory if max_memory else None,
    )


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream, stream[-3000:]
        assert " ERROR " not in stream, stream[-3000:]


def read_index(out: Path) -> dict:
    return json.loads((Path(out) / "_index.json").read_text())


def read_rows(out: Path, kind: str) -> list[dict]:
    folder = Path(out) / kind
    if not folder.exists():
        return []
    partitioning = None if kind == "rejects" else "hive"
    return (
        ds.dataset(str(folder), format="parquet", partitioning=partitioning).to_table().to_pylist()
    )


def temp_files(out: Path) -> list[Path]:
    return [p for p in Path(out).rglob("*") if p.name.startswith(".tmp-")]


def assert_rejects_match(rejects: list[dict], expected: list[Expected]) -> None:
    """Each expected reject is there exactly once with its reason, and nothing else is."""
    problems = []
    claimed: set[int] = set()
    for exp in expected:
        hits = [i for i, r in enumerate(rejects) if exp.matches(r)]
        if len(hits) != 1:
            problems.append(
                f"{exp.case}: {len(hits)} matching rejects {[rejects[i] for i in hits]}"
            )
            continue
        got = rejects[hits[0]]["reason"]
        if got != exp.reason:
            problems.append(f"{exp.case}: reason {got!r}, expected {exp.reason!r}")
        claimed.add(hits[0])
    unexpected = [r for i, r in enumerate(rejects) if i not in claimed]
    if len(claimed) == len(expected) and unexpected:
        problems.append(f"unexpected rejects: {unexpected}")
    assert not problems, "\n".join(problems)
    assert len(rejects) == len(expected)


def assert_index_reconciles(
    out: Path, n_input: int, n_accepted: int, expected: list[Expected]
) -> dict:
    """Counts and per-reason tallies are exact; the index lists exactly the shards on disk."""
    index = read_index(out)
    assert index["counts"] == {
        "input": n_input,
        "accepted": n_accepted,
        "rejected": len(expected),
    }
    assert index["rejects_by_reason"] == dict(Counter(e.reason for e in expected))
    listed = {s["path"] for s in index["shards"]}
    on_disk = {p.relative_to(out).as_posix() for p in Path(out).rglob("part-*.parquet")}
    assert listed == on_disk
    assert not temp_files(out)
    return index


def relist(out: Path, rel: str) -> None:
    """Record a rewritten shard's new size and sha256 in its folder's index:
    a forgery consistent with the index, so that what a test aims at (a
    codebook check, say) is what must catch it, not the file check."""
    from datastore import shards

    index = shards.Index.read(str(out))
    size, digest = shards.file_digest(str(Path(out) / rel))
    for entry in index.shards:
        if entry["path"] == rel:
            entry.update(bytes=size, sha256=digest)
    index.write(str(out))
