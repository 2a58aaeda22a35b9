"""A manifest read in parts (spans of lines) gives what it gives read whole,
line numbers included; ids are deduplicated by a census of their hashes."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datastore.records import AudioExample, Reject
from tokenizer.manifests import (
    ManifestConfig,
    SourcePart,
    pick_one_per_id,
    plan_parts,
    read_manifest,
    read_part,
)
from tokenizer.manifests import lines as lines_module
from tokenizer.manifests.ids import IdCensus, claim_key, id_hash, id_hashes
from tokenizer.manifests.lines import iter_lines, plan_spans


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    trailing=st.booleans(),
    bom=st.booleans(),
    target=st.integers(1, 60),
    chunk=st.sampled_from([1, 3, 16, 1 << 20]),
)
def test_spans_cover_the_file_and_keep_line_numbers(
    tmp_path_factory, lines, trailing, bom, target, chunk
):
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (b"\n" if trailing else b"")
    path = tmp_path_factory.mktemp("spans") / "m.txt"
    path.write_bytes(data)
    whole = list(iter_lines(str(path), 1000))
    old = lines_module._CHUNK
    lines_module._CHUNK = chunk
    try:
        spans = plan_spans(str(path), target)
        got = [item for span in spans for item in iter_lines(str(path), 1000, span)]
    finally:
        lines_module._CHUNK = old
    assert spans[0].start == 0 and spans[-1].end == len(data)
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    assert all(data[s.end - 1 : s.end] == b"\n" for s in spans[:-1])  # cut at line ends only
    assert got == whole


def _jsonl(folder, n: int, bad_every: int = 9) -> str:
    rows = []
    for i in range(n):
        if i % bad_every == 4:
            rows.append("{broken")
        else:
            rows.append(json.dumps({"id": f"u{i % (n - 3)}", "audio": f"{i}.wav", "text": f"t{i}",
                                    "lang": "fr", "split": "train"}))  # fmt: skip
    path = folder / "m.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_parts_read_what_the_whole_file_reads(tmp_path):
    config = ManifestConfig(format="jsonl", input=_jsonl(tmp_path, 400))
    parts = plan_parts(config, part_bytes=1500)
    assert len(parts) > 5 and all(p.span is not None for p in parts)
    whole = list(read_manifest(config, dedup=False))
    assert [i for p in parts for i in read_part(config, p)] == whole
    rejects = [i for i in whole if isinstance(i, Reject)]
    assert [r.source.rsplit(":", 1)[1] for r in rejects] == [str(i + 1) for i in range(4, 400, 9)]
    # a small file, a gzipped one or a format without spans is one whole part
    assert plan_parts(config) == [SourcePart(config.input)]


def test_a_mid_sized_manifest_is_cut_for_every_worker(tmp_path):
    """Parallelism comes from the parts: a manifest under one PART_BYTES is
    still cut into MIN_PARTS parts, none under MIN_PART_BYTES."""
    from tokenizer import manifests

    config = ManifestConfig(format="jsonl", input=_jsonl(tmp_path, 30_000, bad_every=10**9))
    size = (tmp_path / "m.jsonl").stat().st_size
    assert manifests.MIN_PARTS * manifests.MIN_PART_BYTES < size < manifests.PART_BYTES
    parts = plan_parts(config)
    assert len(parts) == manifests.MIN_PARTS
    assert [i for p in parts for i in read_part(config, p)] == list(
        read_manifest(config, dedup=False)
    )
    small = tmp_path / "small"
    small.mkdir()
    config = ManifestConfig(format="jsonl", input=_jsonl(small, 1_200, bad_every=10**9))
    assert (small / "m.jsonl").stat().st_size < manifests.MIN_PART_BYTES
    assert len(plan_parts(config)) == 1


def test_census_finds_exactly_the_repeated_hashes():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5000, 20_000).astype(np.uint64)
    expected = sorted(v for v, n in Counter(values.tolist()).items() if n > 1)
    chunks = np.array_split(values, 13)
    one = IdCensus()
    for c in chunks:
        one.add(c)
    assert one.repeated().tolist() == expected and len(one) == len(set(values.tolist()))
    # split over "workers" and merged in any order: the same answer
    workers = [IdCensus().add(c) for c in chunks]
    random.Random(1).shuffle(workers)
    merged = workers[0]
    for w in workers[1:]:
        merged.merge(w)
    assert merged.repeated().tolist() == expected
    # across workers: a value seen once by each of two workers is repeated
    a, b = IdCensus().add(np.array([1, 2], np.uint64)), IdCensus().add(np.array([2, 3], np.uint64))
    assert a.merge(b).repeated().tolist() == [2]


@pytest.mark.parametrize("ids", [["a", "b", "a"], ["x"], ["é", "e\u0301", "é"]])
def test_id_hashes_are_stable(ids):
    assert id_hashes(ids).tolist() == [id_hash(i) for i in ids]
    # blake2b, not the salted hash(): the same value in every worker process and run
    assert id_hash("a") == 0x2F42665B399EF840


def test_claim_keys_pick_pick_one_per_ids_winner():
    def example(uri, text):
        return AudioExample(id="same", uri=uri, text=text, lang="fr", split="train", corpus="c")

    examples = [example("b.wav", "x"), example("a.wav", "z"), example("a.wav", "y")]
    kept, _ = pick_one_per_id(examples)
    keys = [claim_key(e, part=3 - i, ordinal=i) for i, e in enumerate(examples)]
    assert examples[keys.index(min(keys))] == kept
