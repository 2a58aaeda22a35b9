"""The jobs' output folders, read as downstream users read them.

A token folder (built in two runs: French, then everything with
``--skip-existing``), a bitext folder with rejects, and the codebook folder
are read with pandas, ``pyarrow.parquet.read_table``, ``pyarrow.dataset``
(hive), DuckDB and polars when installed, our own shard reader and Hugging
Face ``datasets`` through the dataset card each job writes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from datastore import schema, shards
from pipelines.cli import main

KEYS = {"tokens": schema.TOKEN_PARTITIONS, "bitext": schema.BITEXT_PARTITIONS, "rejects": ()}
ROW_SCHEMAS = {
    "tokens": schema.TOKEN_SCHEMA,
    "bitext": schema.BITEXT_SCHEMA,
    "rejects": schema.REJECT_SCHEMA,
}


def _tokenize(corpus_rel: str, cb, out, *extra) -> None:
    args = ["tokenize", "--format", "fleurs", "--input", corpus_rel, "--encoder", "mfcc"]
    assert main([*args, "--codebook", str(cb), "--out", str(out), "--dedup", *extra]) == 0


@pytest.fixture(scope="module")
def outputs(mini_corpus, mfcc_codebook, tmp_path_factory):
    """``{"tok": Path, "bt": Path, "cb": Path, "first_card": str}``; the manifest path is
    relative to the working directory, as a user types it."""
    base = tmp_path_factory.mktemp("outputs")
    here = os.getcwd()
    os.chdir(mini_corpus)
    try:
        _tokenize("fleurs", mfcc_codebook, base / "tok", "--langs", "fr")
        first_card = (base / "tok" / "README.md").read_text()
        _tokenize("fleurs", mfcc_codebook, base / "tok", "--skip-existing")
    finally:
        os.chdir(here)
    wm = str(mini_corpus / "wikimatrix" / "*.tsv.gz")
    assert main(["bitext", "--input", wm, "--min-score", "1.04", "--out", str(base / "bt")]) == 0
    return {"tok": base / "tok", "bt": base / "bt", "cb": mfcc_codebook, "first_card": first_card}


def _folders(outputs):
    return [(outputs["tok"], "tokens"), (outputs["bt"], "bitext"), (outputs["bt"], "rejects")]


def _listed_rows(out: Path, kind: str) -> int:
    index = shards.Index.read(str(out))
    return sum(s["rows"] for s in index.shards if s["path"].startswith(kind + "/"))


def test_pandas_pyarrow_and_our_reader_agree(outputs):
    """Same rows, same columns in the same order, the types of the row schema
    (pandas and pq.read_table give the folder keys as dictionary/categorical)."""
    for out, kind in _folders(outputs):
        folder = str(out / kind)
        expected = ROW_SCHEMAS[kind]
        n = _listed_rows(out, kind)
        assert n > 0, (out, kind)
        ours = shards.read_table(str(out), kind)
        assert ours.schema.equals(expected) and ours.num_rows == n
        by_pq = pq.read_table(folder)
        by_ds = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
        for table in (by_pq, by_ds):
            assert table.num_rows == n and table.column_names == expected.names
            for field in expected:
                got = table.schema.field(field.name).type
                if field.name in KEYS[kind] and table is by_pq:
                    assert got == pa.dictionary(pa.int32(), pa.string())
                else:
                    assert got == field.type, (kind, field.name, got)
        df = pd.read_parquet(folder)
        assert list(df.columns) == expected.names and len(df) == n
        for key in KEYS[kind]:
            assert isinstance(df[key].dtype, pd.CategoricalDtype)
        # The same rows, whoever reads them.
        key = ["id", *KEYS[kind]]
        rows = sorted(tuple(str(r[k]) for k in key) for r in ours.select(key).to_pylist())
        assert rows == sorted(tuple(str(v) for v in t) for t in df[key].itertuples(index=False))
        assert rows == sorted(tuple(r[k] for k in key) for r in by_ds.select(key).to_pylist())


def test_token_rows_carry_their_partition_and_absolute_audio(outputs):
    table = shards.read_table(str(outputs["tok"]), "tokens")
    index = shards.Index.read(str(outputs["tok"]))
    for s in index.shards:
        if s["path"].startswith("tokens/"):
            meta = pq.read_metadata(outputs["tok"] / s["path"]).metadata
            assert (
                meta[schema.META_PARTITION].decode() == s["path"].split("/", 1)[1].rsplit("/", 1)[0]
            )
            assert meta[schema.META_VERSION] == b"2"
    for row in table.to_pylist():
        # The manifest was given relative to the working directory; the column is absolute.
        assert os.path.isabs(row["audio"]) and Path(row["audio"]).is_file(), row["audio"]
        assert f"/{row['source_lang']}/audio/{row['split']}/" in row["audio"]
        assert row["id"].startswith(row["source_lang"] + "/") and row["lang"] in row["source_lang"]


def test_duckdb_reads_the_folders(outputs):
    duckdb = pytest.importorskip("duckdb")
    for out, kind in _folders(outputs):
        hive = "true" if KEYS[kind] else "false"
        rel = duckdb.sql(
            f"SELECT * FROM read_parquet('{out / kind}/**/*.parquet', hive_partitioning={hive})"
        )
        assert sorted(rel.columns) == sorted(ROW_SCHEMAS[kind].names)
        assert len(rel.fetchall()) == _listed_rows(out, kind)


def test_polars_reads_the_folders(outputs):
    pl = pytest.importorskip("polars")
    for out, kind in _folders(outputs):
        df = pl.read_parquet(f"{out / kind}/**/*.parquet", hive_partitioning=bool(KEYS[kind]))
        assert sorted(df.columns) == sorted(ROW_SCHEMAS[kind].names)
        assert df.height == _listed_rows(out, kind)


def test_load_dataset_gives_the_splits_from_the_card(outputs, tmp_path):
    datasets = pytest.importorskip("datasets")
    tok, bt = str(outputs["tok"]), str(outputs["bt"])
    per_partition: Counter = Counter()
    for s in shards.listed_shards(tok, "tokens"):
        per_partition[(s.partition["split"], s.partition["lang"])] += s.rows
    splits = Counter()
    for (split, _), n in per_partition.items():
        splits[split] += n
    dd = datasets.load_dataset(tok, cache_dir=str(tmp_path / "hf"))
    assert {k: v.num_rows for k, v in dd.items()} == dict(splits)
    assert set(splits) == {"train", "test"}  # the mini corpus has no dev sentences
    assert set(dd["train"].column_names) == set(shards.file_schema("tokens").names)
    fr = datasets.load_dataset(tok, "fr", cache_dir=str(tmp_path / "hf"))
    assert {k: v.num_rows for k, v in fr.items()} == {
        split: n for (split, lang), n in per_partition.items() if lang == "fr"
    }
    assert all(i.startswith("fr_fr/") for i in fr["test"]["id"])
    index = shards.Index.read(bt)
    pairs = datasets.load_dataset(bt, cache_dir=str(tmp_path / "hf"))
    assert list(pairs) == ["train"] and pairs["train"].num_rows == index.counts["accepted"]
    rejects = datasets.load_dataset(bt, "rejects", cache_dir=str(tmp_path / "hf"))["train"]
    assert rejects.num_rows == index.counts["rejected"] > 0
    assert Counter(rejects["reason"]) == Counter(index.rejects_by_reason)


def test_the_card_describes_the_whole_folder_after_an_append(outputs):
    card = (outputs["tok"] / "README.md").read_text()
    index = shards.Index.read(str(outputs["tok"]))
    assert card.startswith("---\n") and "\nconfigs:\n" in card.split("\n---\n")[0]
    c = index.counts
    assert f"input {c['input']}, accepted {c['accepted']}, rejected {c['rejected']}" in card
    assert "| runs | 2 (appended with `--skip-existing`) |" in card
    assert index.extra["codebook"] in card and "run-length dedup | yes" in card
    for lang in ("fr", "de", "sw"):
        assert f'config_name: "{lang}"' in card
    first = outputs["first_card"]
    assert 'config_name: "fr"' in first and 'config_name: "de"' not in first
    n_files = sum(1 for s in index.shards if s["path"].startswith("tokens/"))
    assert f"| tokens shards | {n_files} files, {c['accepted']} rows |" in card


def test_the_card_header_has_the_hub_metadata(outputs):
    yaml = pytest.importorskip("yaml")
    index = shards.Index.read(str(outputs["tok"]))
    langs = sorted(
        {s.partition["lang"] for s in shards.listed_shards(str(outputs["tok"]), "tokens")}
    )
    header = yaml.safe_load((outputs["tok"] / "README.md").read_text().split("---")[1])
    assert header["pretty_name"] == "tok" and header["license"] == "unknown"
    assert header["language"] == langs and len(langs) > 1
    assert header["size_categories"] == ["n<1K"] and index.counts["accepted"] < 1000
    bt = yaml.safe_load((outputs["bt"] / "README.md").read_text().split("---")[1])
    pairs = {s.partition[k] for s in shards.listed_shards(str(outputs["bt"]), "bitext")
             for k in ("src_lang", "tgt_lang")}  # fmt: skip
    assert bt["language"] == sorted(pairs)


def test_license_flag_reaches_the_card(mini_corpus, tmp_path):
    wm = str(mini_corpus / "wikimatrix" / "*.tsv.gz")
    args = ["bitext", "--input", wm, "--min-score", "1.04", "--out", str(tmp_path / "bt")]
    assert main([*args, "--license", "cc-by-sa-4.0"]) == 0
    assert '\nlicense: "cc-by-sa-4.0"\n' in (tmp_path / "bt" / "README.md").read_text()


def test_codebook_folder_card(outputs):
    card = (outputs["cb"] / "README.md").read_text()
    cb_id = json.loads((outputs["cb"] / "codebook.json").read_text())["id"]
    assert cb_id in card and "16 x 39" in card
