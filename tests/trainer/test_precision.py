"""GPU levers that must also run on CPU: bf16 weights with fp32 masters, the AdamW
implementation, torch.compile."""

import json

import pytest
import torch
from safetensors.torch import load_file

from trainer.checkpoint import load_run
from trainer.train import Trainer, debug_config, train


def _steps(trainer: Trainer, n: int) -> list[dict]:
    return [trainer.train_step([trainer.loader.next_batch()]) for _ in range(n)]


def test_bf16_params_with_fp32_masters(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    reference = Trainer(debug_config(shards, str(tmp_path / "ref")))
    trainer = Trainer(debug_config(shards, str(tmp_path / "bf16"), param_dtype="bf16"))
    params = dict(trainer.model.named_parameters())
    assert params["projection.weight"].dtype == torch.bfloat16
    assert params["backbone.embed_tokens.audio"].dtype == torch.bfloat16
    assert params["logit_scale"].dtype == torch.float32
    masters = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert all(p.dtype == torch.float32 for p in masters)
    before = params["projection.weight"].detach().clone()

    ref, got = _steps(reference, 3), _steps(trainer, 3)
    # Same data, same start: the loss agrees to bf16 rounding.
    for a, b in zip(ref, got, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=3e-2)
    weight = params["projection.weight"]
    assert not torch.equal(weight, before)  # updated...
    master = trainer.master.masters[id(weight)]
    assert torch.equal(weight, master.to(torch.bfloat16))  # ...from its fp32 master

    trainer.save()
    saved = load_file(tmp_path / "bf16" / "model.safetensors")
    assert saved["projection.weight"].dtype == torch.float32
    assert torch.equal(saved["projection.weight"], master.detach())
    assert params["projection.weight"].dtype == torch.bfloat16  # back to bf16 after saving
    model, _, _ = load_run(str(tmp_path / "bf16"))
    assert torch.isfinite(model.embed_speech([[1, 2, 3]], ["fr"])).all()


def test_bf16_params_needs_bf16_autocast(tmp_path):
    with pytest.raises(ValueError, match="param_dtype"):
        debug_config("shards", str(tmp_path), param_dtype="bf16", precision="fp32")


def test_bf16_param_run_resumes(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    run = tmp_path / "run"
    train(debug_config(shards, str(run), steps=3, param_dtype="bf16"), stop_after=2)
    summary = train(debug_config(shards, str(run), steps=3, param_dtype="bf16"), resume=True)
    assert summary["step"] == 3
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]


def test_optimizer_choice_builds_that_adamw_and_trains_alike(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    runs = {
        name: Trainer(debug_config(shards, str(tmp_path / name), precision="fp32", optimizer=name))
        for name in ("fused", "foreach")
    }
    assert runs["fused"].optimizer.defaults["fused"] is True
    assert not runs["fused"].optimizer.defaults["foreach"]
    assert runs["foreach"].optimizer.defaults["foreach"] is True
    assert not runs["foreach"].optimizer.defaults["fused"]
    start = dict(runs["fused"].model.named_parameters())["projection.weight"].detach().clone()
    for trainer in runs.values():
        _steps(trainer, 2)
    fused, foreach = (dict(t.model.named_parameters()) for t in runs.values())
    assert not torch.equal(fused["projection.weight"], start)
    for name, p in fused.items():  # the same update, up to the kernels' rounding
        torch.testing.assert_close(p, foreach[name], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="optimizer"):
        debug_config(shards, str(tmp_path / "x"), optimizer="sgd")


def test_compile_with_bucketed_widths(synthetic_shards, tmp_path):
    """torch.compile (inductor on CPU) gives the eager loss; widths bucketed to 64."""
    shards, _ = synthetic_shards
    torch._dynamo.reset()
    opts = {"precision": "fp32", "pad_multiple": 64}
    eager = Trainer(debug_config(shards, str(tmp_path / "eager"), **opts))
    compiled = Trainer(debug_config(shards, str(tmp_path / "compiled"), compile=True, **opts))
    batches = [eager.loader.next_batch() for _ in range(3)]
    widths = {eager.encode(b)[0].input_ids.shape[1] for b in batches}
    assert all(w % 64 == 0 for w in widths)
    for batch in batches:
        a = eager.train_step([batch])
        b = compiled.train_step([batch])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)


def test_auto_precision_is_bf16_only_where_bf16_is_native(synthetic_shards, tmp_path):
    """auto: bf16 on CPUs with AMX / AVX-512 BF16 (and with bf16 weights), fp32 on
    other CPUs, where torch's bf16 matmul is many times slower; the run folder
    records the precision that ran, which eval reads."""
    from trainer.precision import cpu_has_fast_bf16, resolve_precision

    amx = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n"
    avx2 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"
    assert cpu_has_fast_bf16(amx) and cpu_has_fast_bf16("flags : avx512_bf16")
    assert not cpu_has_fast_bf16(avx2) and not cpu_has_fast_bf16("")
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu, param_dtype="bf16") == "bf16"
    expected = "bf16" if cpu_has_fast_bf16() else "fp32"
    assert resolve_precision("auto", cpu) == expected
    shards, _ = synthetic_shards
    train(debug_config(shards, str(tmp_path / "run"), steps=1))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["precision"] == expected
