"""Trainer fixtures: small synthetic token (+ bitext) shards, written once per session."""

from __future__ import annotations

import os

import pytest

# Nothing in the trainer tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory):
    """``(dir, info)``: 4 languages x 24 train + 8 test rows, k=100, with bitext."""
    from testing.synthetic_shards import write_synthetic_shards

    out = str(tmp_path_factory.mktemp("shards"))
    info = write_synthetic_shards(
        out, langs=("fr", "de", "sw", "ja"), per_lang=24, test_per_lang=8, k=100, bitext_pairs=12
    )
    return out, info


@pytest.fixture(scope="session")
def debug_backbone_dir(tmp_path_factory):
    """The debug backbone saved as a plain transformers dir (for ``hf:<dir>``)."""
    from trainer.backbones import load_backbone

    out = tmp_path_factory.mktemp("tiny-lm")
    backbone = load_backbone("debug")
    backbone.model.save_pretrained(str(out))
    backbone.tokenizer.save_pretrained(str(out))
    return str(out)
