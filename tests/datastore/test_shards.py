import random

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastore import schema, shards


def token_row(i, lang="fr"):
    return {
        "id": f"{lang}/{i:04d}",
        "sentence_id": str(i // 2),
        "speaker": None,
        "corpus": "fleurs",
        "split": "test",
        "lang": lang,
        "source_lang": f"{lang}_{lang}",
        "modality": "speech",
        "audio": f"/a/{i}.wav",
        "duration_s": 1.5,
        "n_frames": 3,
        "tokens": [i % 7, 3, 1],
        "durations": None,
        "text": f"text {i}",
        "translation": None,
        "tgt_lang": None,
        "codebook": "mfcc-L0-k8-deadbeef",
    }


def test_write_partition_round_trip_and_determinism(tmp_path):
    rows = [token_row(i) for i in range(25)]
    part = {"corpus": "fleurs", "split": "test", "lang": "fr"}
    cfg = shards.WriteConfig(rows_per_shard=10, row_group_rows=4)
    a = shards.write_partition(
        rows,
        out_dir=str(tmp_path / "a"),
        kind="tokens",
        partition=part,
        config=cfg,
        metadata={schema.META_ENCODER: "mfcc"},
    )
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    b = shards.write_partition(
        shuffled,
        out_dir=str(tmp_path / "b"),
        kind="tokens",
        partition=part,
        config=cfg,
        metadata={schema.META_ENCODER: "mfcc"},
    )
    assert [i.rows for i in a] == [10, 10, 5]
    assert [i.path for i in a] == [
        f"tokens/corpus=fleurs/split=test/lang=fr/part-0000{n}.parquet" for n in range(3)
    ]
    assert [i.sha256 for i in a] == [i.sha256 for i in b]  # input order does not matter
    f = pq.ParquetFile(tmp_path / "a" / a[0].path)
    assert (
        f.metadata.num_row_groups == 3 and f.schema_arrow.metadata[schema.META_ENCODER] == b"mfcc"
    )
    table = ds.dataset(
        str(tmp_path / "a" / "tokens"), format="parquet", partitioning="hive"
    ).to_table()
    assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in rows)
    assert table.column("tokens").to_pylist()[3] == [3, 3, 1]


def test_bad_rows_are_refused(tmp_path):
    row = token_row(1)
    row["tokens"] = None
    with pytest.raises(ValueError, match="tokens"):
        shards.write_partition(
            [row],
            out_dir=str(tmp_path),
            kind="tokens",
            partition={"corpus": "fleurs", "split": "test", "lang": "fr"},
        )
    with pytest.raises(ValueError, match="not in partition"):  # a row of another partition
        shards.write_partition(
            [token_row(1)],
            out_dir=str(tmp_path),
            kind="tokens",
            partition={"corpus": "c", "split": "s", "lang": "l"},
        )
    assert not list(tmp_path.rglob("*.parquet"))


def test_index_reconciles_and_sweep(tmp_path):
    idx = shards.Index(
        job="tokenize", config={"k": 8}, counts={"input": 3, "accepted": 2, "rejected": 0}
    )
    with pytest.raises(RuntimeError, match="reconcile"):
        idx.write(str(tmp_path))
    assert not (tmp_path / schema.INDEX_FILE).exists()
    idx.counts["rejected"] = 1
    idx.write(str(tmp_path))
    assert shards.Index.read(str(tmp_path)).counts == {"input": 3, "accepted": 2, "rejected": 1}
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / ".tmp-123-part-00000.parquet").write_bytes(b"partial")
    assert shards.sweep_temp_files(str(tmp_path)) == 1
    assert not list((tmp_path / "tokens").iterdir())


def _write_folder(out, parts, rows_per_part=3):
    """Token shards for each (split, lang) in ``parts`` plus an index listing them."""
    infos = []
    for split, lang in parts:
        rows = [
            {**token_row(i, lang), "split": split, "id": f"{lang}/{split}/{i}"}
            for i in range(rows_per_part)
        ]
        infos += shards.write_partition(
            rows,
            out_dir=str(out),
            kind="tokens",
            partition={"corpus": "fleurs", "split": split, "lang": lang},
        )
    n = sum(i.rows for i in infos)
    index = shards.Index(
        job="tokenize",
        config={},
        counts={"input": n, "accepted": n, "rejected": 0},
        shards=shards.shard_dicts(infos),
    )
    index.write(str(out))
    return index


def test_reader_reads_listed_files_and_puts_keys_back(tmp_path):
    _write_folder(tmp_path, [("train", "fr"), ("train", "de"), ("test", "fr")])
    stale = tmp_path / "tokens/corpus=fleurs/split=train/lang=fr/part-00009.parquet"
    stale.write_bytes(
        (tmp_path / "tokens/corpus=fleurs/split=train/lang=fr/part-00000.parquet").read_bytes()
    )
    table = shards.read_table(str(tmp_path), "tokens")
    assert table.schema.equals(schema.TOKEN_SCHEMA) and table.num_rows == 9
    fr_train = shards.read_table(
        str(tmp_path), "tokens", columns=["lang", "id"], where={"split": ["train"], "lang": ["fr"]}
    )
    assert fr_train.column_names == ["lang", "id"]
    assert fr_train.column("id").to_pylist() == [f"fr/train/{i}" for i in range(3)]
    assert set(fr_train.column("lang").to_pylist()) == {"fr"}
    (shard, first), *_ = shards.iter_shards(str(tmp_path), "tokens", where={"lang": ["de"]})
    assert shard.partition == {"corpus": "fleurs", "split": "train", "lang": "de"}
    assert first.schema.metadata[schema.META_PARTITION] == b"corpus=fleurs/split=train/lang=de"
    with pytest.raises(ValueError, match="partitioned by"):
        shards.listed_shards(str(tmp_path), "tokens", where={"speaker": ["x"]})


def test_reader_reads_schema_1_files(tmp_path):
    """Files of schema version 1 stored the keys too and had no ``offset_s``: read
    as they are, ``offset_s`` null."""
    import pyarrow as pa

    rows = [token_row(i) for i in range(4)]
    rel = "tokens/corpus=fleurs/split=test/lang=fr/part-00000.parquet"
    (tmp_path / rel).parent.mkdir(parents=True)
    v2 = pa.Table.from_pylist(rows, schema=schema.TOKEN_SCHEMA)
    v1 = v2.drop_columns(["offset_s"])
    pq.write_table(v1, tmp_path / rel)
    shards.Index(
        job="tokenize",
        config={},
        counts={"input": 4, "accepted": 4, "rejected": 0},
        shards=[{"path": rel, "rows": 4, "bytes": 0, "sha256": ""}],
    ).write(str(tmp_path))
    table = shards.read_table(str(tmp_path), "tokens")
    assert table.to_pylist() == v2.to_pylist()
    assert table.column("offset_s").null_count == 4


def test_card_configs_follow_the_listed_partitions(tmp_path):
    from datastore import card

    index = _write_folder(tmp_path, [("train", "fr"), ("dev", "fr"), ("test", "de"), ("x-y", "de")])
    index.shards.append({"path": "rejects/part-00000.parquet", "rows": 2, "bytes": 1, "sha256": ""})
    configs = {c["config_name"]: c["data_files"] for c in card.configs(index)}
    assert list(configs) == ["default", "de", "fr", "rejects"]
    assert [f["split"] for f in configs["default"]] == ["train", "dev", "test"]  # x-y: not a name
    assert configs["de"] == [
        {"split": "test", "path": "tokens/corpus=*/split=test/lang=de/part-*.parquet"}
    ]
    assert configs["rejects"] == [{"split": "train", "path": "rejects/part-*.parquet"}]
    text = card.render(str(tmp_path), index)
    assert (
        text.startswith("---\npretty_name: ")
        and "\nconfigs:\n" in text
        and "| dev | 0 | 3 | 3 |" in text
    )


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_rows_taken_batch_by_batch_are_table_take(sizes, seed):
    """encode_table's row-group take equals Table.take (values and order)."""
    import numpy as np

    from datastore.shards import _take_rows

    batches, first = [], 0
    for n in sizes:
        ids = [f"u{first + i}" for i in range(n)]
        tokens = [list(range(i % 4)) for i in range(n)]
        batches.append(
            pa.record_batch({"id": ids, "tokens": pa.array(tokens, pa.list_(pa.int16()))})
        )
        first += n
    table = pa.Table.from_batches(batches)
    rows = np.random.default_rng(seed).permutation(first)[: max(1, first // 2)]
    starts = np.cumsum([0, *sizes])
    assert _take_rows(table.to_batches(), starts, rows).equals(table.take(rows))
