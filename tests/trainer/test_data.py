import numpy as np
import pyarrow.parquet as pq
import pytest

from datastore import schema, shards
from datastore.identity import CodebookRef
from testing.synthetic_shards import write_synthetic_shards
from tests.reliability.helpers import relist
from trainer.data import (
    BitextRows,
    DataConfig,
    ShardError,
    ShardLoader,
    TokenRows,
    plan_epoch,
    text_group,
)


def test_synthetic_shards_follow_the_contract(synthetic_shards):
    out, info = synthetic_shards
    files = sorted((__import__("pathlib").Path(out) / "tokens").rglob("*.parquet"))
    assert len(files) == 8  # 4 languages x (train, test)
    index = shards.Index.read(out)
    assert sorted(s["path"] for s in index.shards if s["path"].startswith("tokens/")) == [
        str(f.relative_to(out)) for f in files
    ]
    for path in files:
        table = pq.read_table(path)  # one file: the stored columns, keys in the path
        schema.validate(table, shards.file_schema("tokens"))
        meta = pq.read_metadata(path).metadata
        assert meta[schema.META_CODEBOOK_SHA256].decode() == info["codebook_sha256"]
        assert meta[schema.META_PARTITION].decode() in str(path)
        for row in table.to_pylist():
            assert sum(row["durations"]) == row["n_frames"]
            assert row["codebook"] == info["codebook"]
    assert info["rows"] == {"train": 96, "test": 32}


def test_token_rows_filter_split_and_langs(synthetic_shards):
    out, info = synthetic_shards
    rows = TokenRows.read(out, split="train", langs=["fr", "ja"])
    assert len(rows) == 48
    assert set(rows.langs.tolist()) == {"fr", "ja"}
    assert all(i.split("-")[2] == "train" for i in rows.ids)
    assert rows.codebook == CodebookRef(id=info["codebook"], k=100, sha256=info["codebook_sha256"])
    table = pq.read_table(
        f"{out}/tokens/corpus=synthetic/split=train/lang=fr/part-00000.parquet"
    ).to_pylist()
    first = rows.ids.index(table[0]["id"])
    assert rows.tokens(first).tolist() == table[0]["tokens"]
    assert rows.texts[first] == table[0]["text"]
    assert len(TokenRows.read(out, split="test")) == 32
    with pytest.raises(ShardError, match="no rows"):
        TokenRows.read(out, split="dev")
    with pytest.raises(FileNotFoundError):
        TokenRows.read(out + "/nowhere")


def _move_shard(src_out, rel, dst_out):
    """Move one listed shard (and its index entry) from one folder to another."""
    src_index, dst_index = shards.Index.read(str(src_out)), shards.Index.read(str(dst_out))
    (dst_out / rel).parent.mkdir(parents=True, exist_ok=True)
    (src_out / rel).rename(dst_out / rel)
    entry = next(s for s in src_index.shards if s["path"] == rel)
    dst_index.shards.append(entry)
    dst_index.write(str(dst_out))


def test_mixed_codebooks_and_out_of_range_tokens_are_refused(tmp_path):
    write_synthetic_shards(str(tmp_path / "a"), langs=("fr",), per_lang=4, k=64, seed=0)
    write_synthetic_shards(str(tmp_path / "b"), langs=("de",), per_lang=4, k=64, seed=1)
    _move_shard(
        tmp_path / "b",
        "tokens/corpus=synthetic/split=train/lang=de/part-00000.parquet",
        tmp_path / "a",
    )
    with pytest.raises(ShardError, match="mix codebooks"):
        TokenRows.read(str(tmp_path / "a"))
    # A codebook id claiming k=16 while the tokens go up to 63.
    path = tmp_path / "b/tokens/corpus=synthetic/split=test/lang=de/part-00000.parquet"
    table = pq.read_table(path)
    bad_id = table.column("codebook")[0].as_py().replace("-k64-", "-k16-")
    import pyarrow as pa

    table = table.set_column(
        table.schema.get_field_index("codebook"), "codebook", pa.array([bad_id] * len(table))
    )
    pq.write_table(table.cast(shards.file_schema("tokens")), path)
    relist(tmp_path / "b", "tokens/corpus=synthetic/split=test/lang=de/part-00000.parquet")
    with pytest.raises(ShardError, match="outside codebook"):
        TokenRows.read(str(tmp_path / "b"), split="test")


def test_only_shards_listed_in_the_index_are_read(tmp_path):
    """A complete but unlisted shard (an earlier run's, say) in the folder is not read."""
    out = tmp_path / "s"
    write_synthetic_shards(str(out), langs=("fr",), per_lang=6, test_per_lang=2, k=64)
    listed = out / "tokens/corpus=synthetic/split=train/lang=fr/part-00000.parquet"
    stale = listed.with_name("part-00007.parquet")
    table = pq.read_table(listed)
    ids = [f"stale-{i}" for i in range(table.num_rows)]
    pq.write_table(table.set_column(0, "id", pa_strings(ids)), stale)
    other_lang = out / "tokens/corpus=synthetic/split=train/lang=de/part-00000.parquet"
    other_lang.parent.mkdir(parents=True)
    pq.write_table(table, other_lang)
    rows = TokenRows.read(str(out))
    assert len(rows) == 6 and not any(i.startswith("stale-") for i in rows.ids)
    assert set(rows.langs.tolist()) == {"fr"}
    # The same folder through pyarrow.dataset (every file) would see 18 rows.
    import pyarrow.dataset as ds

    assert ds.dataset(str(out / "tokens"), partitioning="hive").count_rows() == 6 + 2 + 6 + 6
    from trainer.evaluate import read_split

    assert sorted(read_split(str(out), "train").ids) == sorted(rows.ids)


def test_a_folder_without_index_is_refused(tmp_path):
    out = tmp_path / "s"
    write_synthetic_shards(str(out), langs=("fr",), per_lang=4, k=64)
    (out / "_index.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"_index\.json"):
        TokenRows.read(str(out))


def pa_strings(values):
    import pyarrow as pa

    return pa.array(values, pa.string())


def test_codebook_id_parsing():
    info = CodebookRef.from_id("whisper-base-L3-k256-0123abcd", "0123abcd" + "0" * 56)
    assert info.k == 256
    with pytest.raises(ValueError):
        CodebookRef.from_id("whisper-base-k256")
    with pytest.raises(ValueError, match="does not match"):
        CodebookRef.from_id("whisper-base-L3-k256-0123abcd", "ffffffff" + "0" * 56)


def _plan(lengths, langs, seed=0, epoch=0, **kw):
    args = {"batch_size": 4, "max_tokens": 10_000, "shuffle_buffer": 16, "min_batch_size": 2}
    args.update(kw)
    text = np.full(len(lengths), 5)
    return plan_epoch(
        lengths, text, np.asarray(langs, dtype=object), seed=seed, epoch=epoch, **args
    )


def test_plan_is_deterministic_one_language_and_complete():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=60)
    langs = ["fr"] * 30 + ["de"] * 20 + ["sw"] * 10
    a, b = _plan(lengths, langs), _plan(lengths, langs)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in _plan(lengths, langs, seed=1)]
    assert [x.tolist() for x in a] != [x.tolist() for x in _plan(lengths, langs, epoch=1)]
    seen = np.concatenate(a)
    assert len(seen) == len(set(seen.tolist()))  # no row twice in an epoch
    assert len(seen) >= 60 - 3  # at most one short leftover per language dropped
    for batch in a:
        assert len({langs[i] for i in batch}) == 1
        assert 2 <= len(batch) <= 4


def test_plan_respects_the_token_budget_and_buckets_lengths():
    lengths = np.array([10] * 20 + [100] * 20)
    langs = ["fr"] * 40
    plan = _plan(lengths, langs, batch_size=8, max_tokens=8 * 15, shuffle_buffer=40)
    for batch in plan:
        cost = len(batch) * (lengths[batch].max() + 5)
        assert cost <= 8 * 15 or len(batch) == 2
        assert len(set(lengths[batch].tolist())) == 1  # sorted windows: no mixed lengths here
    short = [b for b in plan if lengths[b[0]] == 10]
    assert max(len(b) for b in short) == 8


def test_length_jitter_varies_batch_membership_across_epochs():
    """Strict length order cuts a small corpus into the same batches every epoch
    (only their order changes); jitter regroups them, still one language per
    batch and every row once."""
    lengths = np.arange(100, 164)  # distinct lengths, one language: a strict sort is fixed
    langs = ["fr"] * 64
    text = np.full(64, 5)

    def memberships(jitter, epoch):
        plan = plan_epoch(
            lengths,
            text,
            np.asarray(langs, dtype=object),
            seed=0,
            epoch=epoch,
            batch_size=8,
            max_tokens=10_000,
            shuffle_buffer=4096,
            length_jitter=jitter,
        )
        assert sorted(np.concatenate(plan).tolist()) == list(range(64))
        return {frozenset(b.tolist()) for b in plan}

    assert memberships(0.0, 0) == memberships(0.0, 1)
    assert memberships(0.3, 0) != memberships(0.3, 1)
    assert memberships(0.3, 0) == memberships(0.3, 0)  # still a pure function of (seed, epoch)
    with pytest.raises(ValueError, match="length_jitter"):
        DataConfig(shards="x", length_jitter=1.0)


def _loader(shards, **kw):
    rows = TokenRows.read(shards)
    cfg = DataConfig(shards=shards, batch_size=4, shuffle_buffer=32, **kw)
    return rows, cfg


def test_loader_resumes_exactly_across_epochs(synthetic_shards):
    out, _ = synthetic_shards
    rows, cfg = _loader(out)
    straight = ShardLoader(rows, cfg)
    n = straight.rounds_per_epoch() + 3  # crosses an epoch boundary
    first = [straight.next_batch().ids for _ in range(n)]
    state = straight.state_dict()
    rest = [straight.next_batch().ids for _ in range(5)]
    resumed = ShardLoader(rows, cfg)
    resumed.load_state_dict(state)
    assert [resumed.next_batch().ids for _ in range(5)] == rest
    assert state["epoch"] == 1
    assert first[0] != rest[0]


def test_ranks_split_the_batches_of_one_plan(synthetic_shards):
    out, _ = synthetic_shards
    rows, cfg = _loader(out)
    single = ShardLoader(rows, cfg)
    ranks = [ShardLoader(rows, cfg, rank=r, world_size=2) for r in range(2)]
    rounds = ranks[0].rounds_per_epoch()
    assert rounds == single.rounds_per_epoch() // 2
    expected = [single.next_batch().ids for _ in range(2 * rounds)]
    got = []
    for _ in range(rounds):
        got += [ranks[0].next_batch().ids, ranks[1].next_batch().ids]
    assert got == expected


def test_bitext_pairs_are_mixed_in_at_the_ratio(synthetic_shards):
    out, _ = synthetic_shards
    rows = TokenRows.read(out)
    bitext = BitextRows.read(out)
    assert len(bitext) == 4 * 12
    cfg = DataConfig(shards=out, bitext=out, batch_size=4, bitext_ratio=0.5, shuffle_buffer=32)
    loader = ShardLoader(rows, cfg, bitext=bitext)
    seen = set()
    for _ in range(12):
        batch = loader.next_batch()
        assert len(batch.bitext_src) == len(batch.ids)  # ratio .5: as many as speech pairs
        assert len(batch) == 2 * len(batch.ids)
        for src, tgt, sl, tl in zip(
            batch.bitext_src,
            batch.bitext_tgt,
            batch.bitext_src_langs,
            batch.bitext_tgt_langs,
            strict=True,
        ):
            assert "en" in (sl, tl) and sl != tl
            pair = (src, tgt) if tl == "en" else (tgt, src)
            seen.add(pair)
    # Directions are mixed and pairs stay aligned with the shards.
    assert {(s, t) for s, t in zip(bitext.src_texts, bitext.tgt_texts, strict=True)} >= seen


def test_text_group_ignores_case_and_spacing():
    assert text_group("Hello  world") == text_group("hello world ")
    assert text_group("hello world") != text_group("hello there")


def test_data_config_validation():
    with pytest.raises(ValueError):
        DataConfig(shards="x", bitext_ratio=0.3)  # no bitext
    with pytest.raises(ValueError):
        DataConfig(shards="x", batch_size=1, min_batch_size=2)
