"""Starting fresh and appending in a real shard folder."""

from dataclasses import asdict

from datastore import outfolder, schema, shards
from tests.datastore.test_shards import token_row

PART = {"corpus": "fleurs", "split": "test", "lang": "fr"}


def _folder(tmp_path, n=25):
    out = str(tmp_path / "out")
    cfg = shards.WriteConfig(rows_per_shard=10)
    infos = shards.write_partition(
        [token_row(i) for i in range(n)], out_dir=out, kind="tokens", partition=PART, config=cfg
    )
    index = shards.Index(job="tokenize", config={}, shards=[asdict(i) for i in infos])
    index.counts = {"input": n, "accepted": n, "rejected": 0}
    index.write(out)
    return out, index


def test_start_fresh_deletes_what_a_run_wrote_and_nothing_else(tmp_path):
    out, _ = _folder(tmp_path)
    (tmp_path / "out" / "notes.txt").write_text("mine")
    (tmp_path / "out" / "tokens" / ".part-00009.parquet.tmp-1").write_bytes(b"half")
    outfolder.start_fresh(out, (schema.TOKENS_DIR, schema.REJECTS_DIR))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]


def test_start_append_after_a_killed_append(tmp_path):
    out, index = _folder(tmp_path)
    # A killed append wrote a complete shard the index never listed.
    stray = shards.write_partition(
        [token_row(100)], out_dir=out, kind="tokens", partition=PART, first_index=7
    )
    point = outfolder.start_append(
        out, index, (schema.TOKENS_DIR, schema.REJECTS_DIR), id_kind=schema.TOKENS_DIR
    )
    assert not (tmp_path / "out" / stray[0].path).exists()
    assert point.skip_ids == frozenset(f"fr/{i:04d}" for i in range(25))
    assert point.first_index == {"tokens/corpus=fleurs/split=test/lang=fr": 3}
    listed = sorted(p.name for p in (tmp_path / "out").rglob("part-*.parquet"))
    assert listed == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
