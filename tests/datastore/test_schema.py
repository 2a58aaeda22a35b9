import pyarrow as pa
import pytest

from datastore import schema
from datastore.records import Reason, Reject


def test_partition_path_and_shard_names():
    values = {"corpus": "fleurs", "split": "test", "lang": "fr"}
    assert (
        schema.partition_path(values, schema.TOKEN_PARTITIONS) == "corpus=fleurs/split=test/lang=fr"
    )
    assert schema.shard_name(3) == "part-00003.parquet"
    with pytest.raises(ValueError):
        schema.partition_path({**values, "lang": "a/b"}, schema.TOKEN_PARTITIONS)


def test_validate_names_the_bad_column():
    good = pa.table(
        {"id": ["a"], "source": ["m:1"], "stage": ["read"], "reason": ["bad_text"], "detail": [""]}
    )
    schema.validate(good.cast(schema.REJECT_SCHEMA), schema.REJECT_SCHEMA)
    bad = good.set_column(0, "id", pa.array([None], pa.string()))
    with pytest.raises(ValueError, match="'id'"):
        schema.validate(bad, schema.REJECT_SCHEMA)


def test_reject_reason_must_be_known():
    assert (
        Reject(id="x", source="m", stage="read", reason=Reason.PATH_ESCAPE).as_row()["reason"]
        == "path_escape"
    )
    with pytest.raises(ValueError):
        Reject(id="x", source="m", stage="read", reason="whatever")


def test_the_token_row_defines_the_columns_and_both_builders_use_it(tmp_path):
    """One definition: the file schema is TokenRow's fields less the partition
    keys, and the job's and the synthetic shards' rows have exactly its columns."""
    import dataclasses

    import numpy as np

    from datastore import shards
    from datastore.records import AudioExample
    from testing.synthetic_shards import write_synthetic_shards
    from tokenizer.assign import token_row

    fields = [f.name for f in dataclasses.fields(schema.TokenRow)]
    assert schema.TOKEN_FILE_SCHEMA.names == [f for f in fields if f not in schema.TOKEN_PARTITIONS]
    assert schema.TOKEN_SCHEMA.names == [*schema.TOKEN_FILE_SCHEMA.names, *schema.TOKEN_PARTITIONS]
    example = AudioExample(id="a", uri="/x.wav", text="t", lang="fr", split="test", corpus="c")
    row = token_row(example, (np.array([3, 4]), None), "cb", n_samples=16000)
    assert tuple(row) == schema.TOKEN_COLUMNS
    write_synthetic_shards(str(tmp_path / "syn"), langs=("fr",), per_lang=2, test_per_lang=1, k=8)
    table = shards.read_table(str(tmp_path / "syn"), schema.TOKENS_DIR)
    assert table.schema.names == list(schema.TOKEN_COLUMNS) and table.num_rows == 3


def test_the_documented_token_columns_are_the_schema():
    """docs/outputs.md's column table names exactly the token schema's columns,
    in its order (the schema is defined once; the doc only annotates it)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "outputs.md").read_text()
    table = doc.split("## Shard schema")[1].split("\n\n| column")[1].split("\n\n")[0]
    named = [
        n for line in table.splitlines()[2:] for n in re.findall(r"`(\w+)`", line.split("|")[1])
    ]
    assert named == list(schema.TOKEN_SCHEMA.names)


@pytest.mark.parametrize("stored", ["string", "dictionary"])
def test_partition_keys_stored_in_the_files_too_break_one_of_the_contract_readers(tmp_path, stored):
    """Why ``lang``/``split`` are folder names only (schema version 2): stored in
    the files as well, as ``datasets`` would need to see them, either storage
    type breaks a reader the DESIGN contract names. pq.read_table and pandas
    infer hive keys as dictionaries, pyarrow.dataset(partitioning="hive") as
    strings, and neither merges with the other type. If this test fails, the
    readers have changed and the keys can join the files (issue 30, item 8)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    for lang in ("fr", "de"):
        folder = tmp_path / f"lang={lang}"
        folder.mkdir()
        value = pa.array([lang] * 2)
        if stored == "dictionary":
            value = value.dictionary_encode()
        pq.write_table(pa.table({"id": ["a", "b"], "lang": value}), folder / "part-0.parquet")
    readers = {
        "pq.read_table": lambda: pq.read_table(tmp_path),
        "pyarrow.dataset hive": lambda: ds.dataset(tmp_path, partitioning="hive").to_table(),
    }
    failing = []
    for name, read in readers.items():
        try:
            assert sorted(read().column("lang").to_pylist()) == ["de", "de", "fr", "fr"]
        except pa.ArrowTypeError as error:
            assert "incompatible types" in str(error)
            failing.append(name)
    assert failing == (["pyarrow.dataset hive"] if stored == "dictionary" else ["pq.read_table"])
