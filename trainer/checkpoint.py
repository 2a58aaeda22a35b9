"""Run folders: ``model.safetensors`` + ``config.json`` (+ optimizer and trainer state).

``RUN_DIR/codebook/`` is a copy of the codebook folder the shards were
tokenized with (``config.json`` ``tokens``: how audio becomes tokens).
``RUN_DIR/model.safetensors`` holds every tensor training changed: backbone
layers, audio rows, projection, logit scale. Tensors left frozen (the LLM's
own text rows, by default: 168M of Gemma's 268M parameters) are not copied
into every checkpoint; they are re-read from the LLM named in ``config.json``
(with its sha256), which :func:`load_run` checks against the saved shapes.
``optimizer.safetensors`` (AdamW moments keyed by parameter name, RNG state)
and ``trainer_state.json`` (data position) exist for ``--resume`` only. Never
a pickle: safetensors and JSON.

Every file carries the step it belongs to; a crash between two writes is
caught on resume instead of silently mixing steps. ``config.json`` is
written last.

Example::

    model, tokenizer, config = load_run("runs/fr-de")
    model.embed_speech([[3, 17, 250]], ["fr"])
"""

from __future__ import annotations

import json
from typing import Any

import torch

from datastore import storage
from trainer.configs import DualEncoderConfig
from trainer.model import DualEncoder, build_model, padded_audio_rows

RUN_FORMAT = "speechtok-dual-encoder/1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"


class CheckpointError(ValueError):
    """A run folder that cannot be loaded or resumed as asked."""


def has_checkpoint(run_dir: str) -> bool:
    return storage.exists(storage.join(run_dir, CONFIG_FILE))


def read_config(run_dir: str) -> dict:
    path = storage.join(run_dir, CONFIG_FILE)
    if not storage.exists(path):
        raise CheckpointError(f"{run_dir} holds no run ({CONFIG_FILE} missing)")
    config = json.loads(storage.read_text(path))
    if config.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path}: format {config.get('format')!r}, expected {RUN_FORMAT!r}")
    return config


def _save_tensors(uri: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save

    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    storage.write_bytes(uri, save(data, metadata=metadata))


def _load_tensors(uri: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load

    raw = storage.read_bytes(uri)
    tensors = load(raw)
    # safetensors layout: an 8-byte little-endian header size, then the JSON header.
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    return tensors, header.get("__metadata__") or {}


def model_tensors(model: DualEncoder) -> dict[str, torch.Tensor]:
    """What goes into ``model.safetensors``: the state dict minus frozen LLM parameters."""
    frozen = model.frozen_parameter_names()
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def run_config(
    model: DualEncoder, *, codebook: dict, step: int, train: dict | None, tokens: dict | None = None
) -> dict:
    """The ``config.json`` of a run: enough to rebuild the model and check its inputs.

    ``tokens`` (:func:`trainer.provenance.token_provenance`): how the training
    tokens were made (encoder, codebook folder copy, downsampling, dedup), so
    new audio can be tokenized the same way.
    """
    from dataclasses import asdict

    from trainer.backbones import local_reference

    backbone_config = model.backbone.config
    return {
        "format": RUN_FORMAT,
        "step": int(step),
        "llm": {
            "name": local_reference(model.backbone_name),
            "reference": model.backbone_reference,
            "layers_kept": int(backbone_config.num_hidden_layers),
            "hidden_size": int(backbone_config.hidden_size),
            "text_vocab_size": int(model.audio_offset),
        },
        "tokenizer": {"from_llm": model.backbone_name},
        "codebook": dict(codebook),
        "audio_tokens": {
            "offset": int(model.audio_offset),
            "rows": padded_audio_rows(model.codebook_size),
            "codebook_size": int(model.codebook_size),
        },
        "model": {**asdict(model.config), "llm": local_reference(model.config.llm)},
        "frozen_from_llm": sorted(model.frozen_parameter_names()),
        "train": train,
        "tokens": tokens,
    }


def save_model(run_dir: str, model: DualEncoder, *, step: int) -> None:
    meta = {"format": RUN_FORMAT, "step": str(int(step))}
    _save_tensors(storage.join(run_dir, MODEL_FILE), model_tensors(model), meta)


def write_config(run_dir: str, config: dict) -> None:
    storage.write_text(
        storage.join(run_dir, CONFIG_FILE), json.dumps(config, indent=2, sort_keys=True)
    )


def load_model_weights(model: DualEncoder, run_dir: str, *, step: int | None = None) -> int:
    """Load ``model.safetensors`` into ``model`` (strict: frozen keys are the only ones absent)."""
    tensors, meta = _load_tensors(storage.join(run_dir, MODEL_FILE))
    saved_step = int(meta.get("step", -1))
    if step is not None and saved_step != step:
        raise CheckpointError(f"{MODEL_FILE} is from step {saved_step}, config.json says {step}")
    expected = set(model_tensors(model))
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{MODEL_FILE} does not fit this model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(f"unexpected keys {result.unexpected_keys[:5]}")
    return saved_step


def save_optimizer(
    run_dir: str, optimizer, names: list[list[str]], *, step: int, rng: dict[str, torch.Tensor]
) -> None:
    """AdamW state as ``state.{param name}.{key}`` tensors; groups and names in the metadata."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {f"rng.{k}": v for k, v in rng.items()}
    scalars: dict[str, Any] = {}
    flat_names = [n for group in names for n in group]
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{flat_names[index]}.{key}"] = value
            else:
                scalars[f"{flat_names[index]}.{key}"] = value
    groups = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
    meta = {
        "format": RUN_FORMAT,
        "step": str(int(step)),
        "param_names": json.dumps(names),
        "param_groups": json.dumps(groups),
        "scalars": json.dumps(scalars),
    }
    _save_tensors(storage.join(run_dir, OPTIMIZER_FILE), tensors, meta)


def load_optimizer(
    run_dir: str, optimizer, names: list[list[str]], *, step: int
) -> dict[str, torch.Tensor]:
    """Restore AdamW state saved by :func:`save_optimizer`; returns the saved RNG tensors."""
    tensors, meta = _load_tensors(storage.join(run_dir, OPTIMIZER_FILE))
    if int(meta.get("step", -1)) != step:
        raise CheckpointError(f"{OPTIMIZER_FILE} is from step {meta.get('step')}, expected {step}")
    if json.loads(meta["param_names"]) != names:
        raise CheckpointError(f"{OPTIMIZER_FILE}: parameter names differ from this model's")
    scalars = json.loads(meta.get("scalars", "{}"))
    flat_names = [n for group in names for n in group]
    state: dict[int, dict[str, Any]] = {}
    for index, name in enumerate(flat_names):
        prefix = f"state.{name}."
        entry = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        entry.update(
            {k[len(name) + 1 :]: v for k, v in scalars.items() if k.startswith(name + ".")}
        )
        if entry:
            state[index] = entry
    groups = json.loads(meta["param_groups"])
    start = 0
    for group, group_names in zip(groups, names, strict=True):
        group["params"] = list(range(start, start + len(group_names)))
        start += len(group_names)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}


def load_run(run_dir: str, *, device: str | torch.device = "cpu", allow_hub: bool = False):
    """Rebuild a trained dual encoder: ``(model, tokenizer, config)``, model in eval mode.

    The LLM named in ``config.json`` is loaded (truncated as trained) and the
    run's tensors are loaded over it; frozen rows come from the LLM itself.
    That reference is resolved by :func:`trainer.backbones.resolve_run_reference`:
    a relative ``hf:`` path against the run folder, a hub id only with
    ``allow_hub`` (and ``HF_HUB_OFFLINE`` unset).
    """
    from trainer.backbones import BackboneReferenceError, resolve_run_reference

    config = read_config(run_dir)
    try:
        llm = resolve_run_reference(config["model"]["llm"], run_dir, allow_hub=allow_hub)
    except BackboneReferenceError as exc:
        raise CheckpointError(str(exc)) from None
    model_config = DualEncoderConfig(**{**config["model"], "llm": llm})
    reference = config["llm"].get("reference") or {}
    model = build_model(model_config, int(config["audio_tokens"]["codebook_size"]))
    if model.audio_offset != int(config["llm"]["text_vocab_size"]):
        raise CheckpointError(
            f"LLM {model_config.llm!r} has {model.audio_offset} text rows, the run was trained "
            f"with {config['llm']['text_vocab_size']}"
        )
    if reference and model.backbone_reference.get("gguf_sha256", "") != reference.get(
        "gguf_sha256", ""
    ):
        raise CheckpointError(f"LLM {model_config.llm!r} is not the one the run was trained on")
    load_model_weights(model, run_dir, step=int(config["step"]))
    model.to(device).eval()
    return model, model.tokenizer, config
