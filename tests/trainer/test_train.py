import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipelines.cli import main
from trainer.checkpoint import CheckpointError, load_run
from trainer.configs import TrainConfig
from trainer.train import Trainer, debug_config, lr_factor, train


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, warmup=10, total=110) for s in range(1, 111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[59] == pytest.approx(0.5)  # half way through the cosine
    assert f[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(f[9:]))
    assert lr_factor(110, warmup=10, total=110, min_ratio=0.1) == pytest.approx(0.1)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_step_debug_run_via_cli(synthetic_shards, tmp_path, capsys):
    shards, info = synthetic_shards
    run = tmp_path / "run"
    argv = ["train", "--shards", shards, "--llm", "debug", "--out", str(run), "--steps", "2"]
    argv += ["--batch-size", "4", "--seed", "1", "--langs", "fr,de"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 2 and math.isfinite(summary["last_loss"])
    config = json.loads((run / "config.json").read_text())
    assert config["step"] == 2
    assert config["codebook"] == {
        "id": info["codebook"],
        "k": 100,
        "sha256": info["codebook_sha256"],
    }
    assert config["llm"]["name"] == "debug" and config["llm"]["layers_kept"] == 2
    assert config["audio_tokens"] == {"offset": 260, "rows": 128, "codebook_size": 100}
    assert config["train"]["data"]["langs"] == ["fr", "de"]
    metrics = _metrics(run)
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["pairs"] == 4 and m["tokens"] > 0 for m in metrics)
    # The frozen text rows stay out of the checkpoint; everything trained is in it.
    saved = load_file(run / "model.safetensors")
    assert "backbone.embed_tokens.text.weight" not in saved
    assert saved["backbone.embed_tokens.audio"].shape == (128, 64)
    # The evaluator's entry point rebuilds the same model.
    model, tokenizer, cfg = load_run(str(run))
    assert cfg["step"] == 2 and tokenizer is model.tokenizer
    for key, value in saved.items():
        assert torch.equal(model.state_dict()[key], value)
    emb = model.embed_speech([[1, 2, 3]], ["fr"])
    assert emb.shape == (1, 64) and torch.isfinite(emb).all()
    assert model.embed_text(["ba de"], ["fr"]).shape == (1, 64)


def test_cli_refuses_to_overwrite_and_to_resume_nothing(synthetic_shards, tmp_path, capsys):
    shards, _ = synthetic_shards
    run = str(tmp_path / "run")
    base = ["train", "--shards", shards, "--llm", "debug", "--out", run, "--steps", "1"]
    assert main([*base, "--resume"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert main(base) == 0
    assert main(base) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*base, "--resume", "--batch-size", "3"]) == 2
    assert "different settings" in capsys.readouterr().err
    assert main(["train", "--shards", str(tmp_path / "none"), "--llm", "debug", "--out", run]) == 2


def test_resume_is_bit_for_bit(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    opts = {"steps": 4, "grad_accum": 2}
    train(debug_config(shards, str(straight), **opts))
    first = train(debug_config(shards, str(resumed), **opts), stop_after=2)
    assert first["step"] == 2
    assert json.loads((resumed / "config.json").read_text())["step"] == 2
    second = train(debug_config(shards, str(resumed), **opts), resume=True)
    assert second["step"] == 4 and second["steps_this_run"] == 2
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(straight / name), load_file(resumed / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    keys = ("step", "loss", "contrastive", "grad_norm", "pairs", "tokens", "epoch")
    strip = lambda ms: [{k: m[k] for k in keys} for m in ms]  # noqa: E731
    assert strip(_metrics(straight)) == strip(_metrics(resumed))


def test_resume_refuses_a_mismatched_checkpoint(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    run = tmp_path / "run"
    train(debug_config(shards, str(run), steps=1))
    state = json.loads((run / "trainer_state.json").read_text())
    state["step"] = 7
    (run / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="step"):
        train(debug_config(shards, str(run), steps=2), resume=True)


def test_bitext_pairs_join_the_batches(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    cfg = debug_config(shards, str(tmp_path / "run"), steps=2)
    cfg = TrainConfig.from_dict(
        {**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "bitext": shards, "bitext_ratio": 0.5}}
    )
    trainer = Trainer(cfg)
    batch = trainer.loader.next_batch()
    assert len(batch.bitext_src) == len(batch.ids) == 4
    speech, text, groups = trainer.encode(batch)
    assert speech.input_ids.shape[0] == 4 and text.input_ids.shape[0] == 12
    out, _ = trainer.loss(batch, (speech, text, groups))
    assert math.isfinite(float(out.loss.detach()))
    summary = trainer.fit()
    assert all(m["pairs"] == 8 for m in trainer.metrics) and summary["step"] == 2


def test_training_lowers_the_loss(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    cfg = debug_config(shards, str(tmp_path / "run"), steps=40, warmup_steps=2, lr=1e-3)
    train(cfg)
    losses = [m["contrastive"] for m in _metrics(tmp_path / "run")]
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8


def test_train_config_round_trips_through_json(tmp_path):
    cfg = debug_config("shards", str(tmp_path), steps=3)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError):
        debug_config("shards", str(tmp_path), precision="fp16")
