"""ARCHITECTURE.md "Where to add", checked: a manifest format and an encoder that
live in one new file (``toy_plugin.py``) go through the CLI's choices and both
speech jobs with no other file edited; their rows, rejects and metadata come
out as the built-in ones' do."""

from __future__ import annotations

import importlib
import json
import sys

import pyarrow.parquet as pq
import pytest

from datastore import schema
from pipelines import cli
from tests.reliability.catalogue import SR, encoded, tone

PLUGIN = "tests.pipelines.toy_plugin"


@pytest.fixture
def toy():
    """The plugin imported (it registers itself), then taken out of the registries."""
    from tokenizer import encoders, manifests

    plugin = importlib.import_module(PLUGIN)
    yield plugin
    manifests._READERS.pop(plugin.FORMAT, None)
    encoders._REGISTRY.pop(plugin.ENCODER, None)
    encoders._DESCRIBERS.pop(plugin.ENCODER, None)
    sys.modules.pop(PLUGIN, None)


def test_a_format_and_an_encoder_from_one_new_file_run_through_both_jobs(tmp_path, toy):
    lines = []
    for i in range(6):
        wave = tone(0.4 + 0.1 * i, SR, (180.0 + 60 * i, 700.0 - 40 * i), seed=i)
        (tmp_path / f"c{i}.wav").write_bytes(encoded(wave, SR, "WAV", "PCM_16"))
        lines.append(f"u{i}\tc{i}.wav\tphrase {i}")
    lines.insert(3, "only two\tfields")
    manifest = tmp_path / "list.tsv"
    manifest.write_text("\n".join(lines) + "\n")

    parser = cli.build_parser()
    for command in ("fit-codebook", "tokenize"):
        sub = parser._subparsers._group_actions[0].choices[command]
        choices = {a.dest: a.choices for a in sub._actions}
        assert toy.FORMAT in choices["format"]  # --format lists it by itself
    common = ["--format", toy.FORMAT, "--input", str(manifest), "--encoder", toy.ENCODER]
    cb, out = tmp_path / "cb", tmp_path / "tok"
    assert (
        cli.main(["fit-codebook", *common, "--splits", "test", "--k", "4", "--out", str(cb)]) == 0
    )
    assert json.loads((cb / "codebook.json").read_text())["encoder"] == toy.ENCODER
    assert cli.main(["tokenize", *common, "--codebook", str(cb), "--out", str(out)]) == 0

    index = json.loads((out / "_index.json").read_text())
    assert index["counts"] == {"input": 7, "accepted": 6, "rejected": 1}
    assert index["extra"]["encoder"]["frame_rate"] == 100.0
    rejects = pq.read_table(out / schema.REJECTS_DIR).to_pylist()
    assert [r["reason"] for r in rejects] == ["malformed_line"]
    shards = sorted((out / schema.TOKENS_DIR).rglob("*.parquet"))
    rows = pq.read_table(shards[0]).to_pylist()
    assert sorted(r["id"] for r in rows) == [f"u{i}" for i in range(6)]
    for row in rows:  # 100 frames per second, one token per frame (no dedup)
        assert len(row["tokens"]) == row["n_frames"] == -(-round(row["duration_s"] * SR) // 160)
        assert set(row["tokens"]) <= set(range(4))
    meta = pq.read_metadata(shards[0]).metadata
    assert meta[schema.META_ENCODER] == toy.ENCODER.encode()
