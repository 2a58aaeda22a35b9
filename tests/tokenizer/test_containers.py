"""Reading Parquet cells in groups: a row group's audio column is read a few rows
at a time, never held whole, and every example comes back exactly once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datastore.records import PARQUET, AudioExample, Reason, Reject
from tokenizer import containers
from tokenizer.audio_config import AudioConfig

ROWS, CELL = 40, 500_000  # one row group of 20 MB of audio bytes
AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def write(path, rows=ROWS, nulls=()):
    rng = np.random.default_rng(0)
    cells = [
        None if i in nulls else {"bytes": rng.bytes(CELL), "path": f"{i}.wav"} for i in range(rows)
    ]
    table = pa.table({"audio": pa.array(cells, AUDIO)})
    pq.write_table(table, path, row_group_size=rows, compression="none", use_dictionary=False)


def example(path, row: int) -> AudioExample:
    uri = containers.parquet_ref(str(path), 0, row, "audio")
    return AudioExample(
        id=f"u{row}", uri=uri, text="t", lang="fr", split="train", corpus="c", audio_kind=PARQUET
    )


def group(path, rows) -> containers.MemberGroup:
    examples = [example(path, r) for r in rows]
    return containers.make_group(containers.group_key(examples[0]), examples)


def test_a_row_group_is_not_held_whole(tmp_path):
    path = tmp_path / "a.parquet"
    write(path)
    base = pa.total_allocated_bytes()
    peak = 0
    got = []
    for e, payload in containers.iter_group(group(path, range(ROWS)), AudioConfig()):
        peak = max(peak, pa.total_allocated_bytes() - base)
        got.append((e.id, len(payload)))
    assert got == [(f"u{r}", CELL) for r in range(ROWS)]
    # The whole column is ROWS * CELL = 20 MB; a batch of rows plus the buffer is ~5 MB.
    assert peak < ROWS * CELL / 4, peak


def test_every_example_once_with_its_bytes_or_a_reject(tmp_path):
    path = tmp_path / "a.parquet"
    write(path, rows=10, nulls={3})
    wanted = [9, 3, 0, 12]  # 12: past the row group
    out = dict((e.id, p) for e, p in containers.iter_group(group(path, wanted), AudioConfig()))
    assert sorted(out) == ["u0", "u12", "u3", "u9"]
    assert isinstance(out["u0"], bytes) and isinstance(out["u9"], bytes)
    assert all(isinstance(out[i], Reject) for i in ("u3", "u12"))
    assert {out[i].reason for i in ("u3", "u12")} == {Reason.MISSING_FILE}


def test_an_unreadable_file_rejects_every_example(tmp_path):
    path = tmp_path / "a.parquet"
    write(path, rows=10)
    path.write_bytes(path.read_bytes()[:-100])  # footer gone
    out = list(containers.iter_group(group(path, [1, 2]), AudioConfig()))
    assert [(e.id, p.reason) for e, p in out] == [
        ("u1", Reason.DECODE_ERROR),
        ("u2", Reason.DECODE_ERROR),
    ]
