"""An output folder before a job writes into it: start fresh or append.

Every job's output folder holds shard folders (``tokens/``, ``rejects/``,
...), ``_index.json`` written last, and sometimes files of its own (a
codebook's ``centroids.npy``). A job either starts fresh (what an earlier
run wrote is deleted first, so no stale shard stays beside the new ones
unlisted) or appends (``--skip-existing``): it keeps the shards the index
lists, deletes complete files a killed append left unlisted, skips the ids
already written and numbers new shards after the old ones. Both first sweep
the temporary files of a killed writer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

from datastore import schema, shards, storage
from datastore.outlock import LOCK_NAME
from datastore.runs import RUNS_DIR


class FolderMismatch(ValueError):
    """``--out`` holds another command's output, or rows an append cannot extend."""


def readable_index(out: str) -> shards.Index | None:
    """The folder's index for a job about to write there: None without one, and
    None for one that cannot be read (a truncated index of a killed run: the
    job replaces it; readers are the ones that refuse it)."""
    try:
        return shards.Index.read(out)
    except shards.FolderRefused:
        return None


def check_folder_job(out: str, previous: shards.Index | None, job: str) -> None:
    """Refuse an output folder another command wrote: replacing or appending to
    it would hide its files behind this job's index (a bitext folder's shards
    under a tokenize index, say)."""
    if previous is not None and previous.job != job:
        raise FolderMismatch(
            f"{out} holds the output of `speechtok {previous.job}`: `speechtok {job}` writes "
            "only its own folders; choose another --out"
        )


def delete_tree(uri: str) -> None:
    """Delete a folder and everything in it, file by file where it is needed
    (an object store has no folder to delete at once), or a single file."""
    if not storage.is_local(uri):
        for file in storage.list_files(uri):
            storage.delete(file)
    storage.delete(uri)


def start_fresh(out: str, names: Iterable[str]) -> None:
    """Delete ``names`` (shard folders or files, relative to ``out``) and the
    index an earlier run left, after sweeping temporary files and run files.
    The dataset card (``README.md``) goes too when the index says an earlier
    run wrote the folder: a rerun killed before its end must not leave the old
    run's card describing shards that are gone (a folder without our index
    keeps its README)."""
    shards.sweep_temp_files(out)
    remove_runs(out)
    ours = storage.exists(storage.join(out, schema.INDEX_FILE))
    for name in [*names, schema.INDEX_FILE, *([schema.CARD_FILE] if ours else [])]:
        delete_tree(storage.join(out, name))


def remove_runs(out: str) -> None:
    """Delete the run files of a streaming shard writer (:mod:`datastore.runs`):
    once the index is written, or what a killed run left."""
    delete_tree(storage.join(out, RUNS_DIR))


@dataclass(frozen=True)
class AppendPoint:
    """Where an append continues: the ids already written and, per partition
    folder, the first free shard number."""

    skip_ids: frozenset[str]
    first_index: dict[str, int]


def start_append(out: str, index: shards.Index, kinds: Iterable[str], id_kind: str) -> AppendPoint:
    """Ready ``out`` for an append after the run that wrote ``index``."""
    shards.sweep_temp_files(out)
    remove_runs(out)
    remove_unlisted_shards(out, index, kinds)
    return AppendPoint(existing_ids(out, index, id_kind), next_shard_indices(index))


def remove_unlisted_shards(out: str, index: shards.Index, kinds: Iterable[str]) -> list[str]:
    """Delete the shards of ``kinds`` that ``index`` does not list (complete
    files a killed append left behind); the URIs deleted."""
    listed = {s["path"] for s in index.shards}
    base = (storage.local_path(out) if storage.is_local(out) else out).rstrip("/")
    removed = []
    for kind in kinds:
        for uri in storage.list_files(storage.join(out, kind), ".parquet"):
            if uri[len(base) + 1 :] not in listed:
                storage.delete(uri)
                removed.append(uri)
    return removed


def existing_ids(out: str, index: shards.Index, kind: str) -> frozenset[str]:
    """The ids in the listed shards of ``kind``."""
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for s in index.shards:
        if s["path"].startswith(kind + "/"):
            with storage.open_read(storage.join(out, s["path"])) as f:
                ids.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    return frozenset(ids)


def next_shard_indices(index: shards.Index) -> dict[str, int]:
    """Per partition folder, the first free shard number."""
    out: dict[str, int] = {}
    for s in index.shards:
        folder, name = s["path"].rsplit("/", 1)
        number = int(name.split("-")[1].split(".")[0])
        out[folder] = max(out.get(folder, 0), number + 1)
    return out


@contextlib.contextmanager
def staging(out: str):
    """A folder to write a whole output into, published as ``out`` when the
    block ends without error (discarded otherwise).

    Local disks: the work goes to a hidden sibling (``.out.tmp-XXXX``) that is
    renamed into place, after an earlier ``out`` is renamed aside and before
    it is deleted: a reader sees the old folder or the new one, never a
    partial one (the window between the two renames is a missing folder).
    The output lock (``out/.speechtok.lock``) is hard-linked into the new
    folder first, so the job still holds ``out`` once it is published.
    Object stores have no rename: the block writes into ``out`` itself and the
    caller writes its marker file last.
    """
    if not storage.is_local(out):
        delete_tree(out)
        yield out
        return
    path = os.path.abspath(storage.local_path(out))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    lock = os.path.join(path, LOCK_NAME)
    if os.path.exists(lock):  # the job's own lock: the new folder holds it too (same inode)
        os.link(lock, os.path.join(work, LOCK_NAME))
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
        os.rename(path, os.path.join(old, name))
    os.rename(work, path)  # fails (nothing published) if another job made `out` meanwhile
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
