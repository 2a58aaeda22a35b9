"""What differs between the ``random`` and ``llm`` arms at step 0, beyond the weights' values.

The learning curve (:mod:`benchmarks.retrieval_curve`) trains both arms with
the same settings; settings tuned for one set of weights may not suit the
other. Before any ablation run, this measures, for each arm built exactly as
the curve builds it (seed 0) and the same first batch:

- **weights**: the RMS of the backbone's trained matrices, hence AdamW's
  relative step ``lr / rms(w)`` (Adam's update per element is ~lr whatever
  the gradient's scale, so larger weights move relatively less);
- **input rows**: the RMS norm of the audio rows and of the text rows the
  batch uses, both as the backbone sees them (with the embedding scale);
- **embeddings at init**: mean cosine between different texts, between
  different utterances, and between each utterance and its own vs the other
  transcripts (a common direction shared by every pooled state, i.e.
  anisotropy, leaves the contrastive loss little to work with);
- **first gradient**: the loss and the gradient norm of the backbone, the
  audio rows and the projection.

::

    python -m benchmarks.arm_diagnostics          # ~2 min on 2 cores, curve data cached
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile

from benchmarks.retrieval_curve import CURVE
from benchmarks.retrieval_full import Plan, _configs, default_seen, prepare_data
from datastore import storage


def _rms(t) -> float:
    return float(t.detach().float().pow(2).mean().sqrt())


def diagnose(config) -> dict:
    import torch
    import torch.nn.functional as F

    from trainer.train import Trainer

    trainer = Trainer(config)
    model = trainer.model
    batch = trainer.loader.next_batch()
    emb = model.embedding
    names = model.embedding_parameter_names()
    matrices = [
        p
        for n, p in model.named_parameters()
        if n.startswith("backbone.") and p.requires_grad and p.dim() == 2 and n != names["audio"]
    ]
    weight_rms = sum(_rms(p) for p in matrices) / len(matrices)
    speech, text, groups = trainer.encode(batch)
    text_ids = text.input_ids[text.attention_mask.bool()]
    text_ids = text_ids[text_ids < emb.text_vocab_size].unique()
    audio_ids = speech.input_ids[speech.attention_mask.bool()] - emb.text_vocab_size
    audio_ids = audio_ids[audio_ids >= 0].unique()
    text_row_norm = float(emb.text.weight[text_ids].float().norm(dim=1).mean()) * emb.scale
    audio_row_norm = float(emb.audio[audio_ids].float().norm(dim=1).mean()) * emb.scale

    model.train()
    trainer.optimizer.zero_grad(set_to_none=True)
    with trainer._autocast():
        s, t, scale = model(speech, text)
    n = len(batch.ids)
    out = trainer.loss_from_embeddings(batch, s, t, scale, groups)
    out.loss.backward()
    with torch.no_grad():
        s_n, t_n = F.normalize(s.float(), dim=-1), F.normalize(t[:n].float(), dim=-1)
        off = ~torch.eye(n, dtype=torch.bool)
        cross = s_n @ t_n.T
        cosines = {
            "text_text": float((t_n @ t_n.T)[off].mean()),
            "speech_speech": float((s_n @ s_n.T)[off].mean()),
            "speech_own_text": float(cross.diagonal().mean()),
            "speech_other_text": float(cross[off].mean()),
        }

    def grad_norm(params) -> float:
        grads = [p.grad.float().norm() ** 2 for p in params if p.grad is not None]
        return float(sum(grads) ** 0.5) if grads else 0.0

    named = dict(model.named_parameters())
    backbone = [p for n, p in named.items() if n.startswith("backbone.") and n != names["audio"]]
    return {
        "llm": config.model.llm,
        "backbone_matrices": len(matrices),
        "weight_rms": round(weight_rms, 5),
        "adam_relative_step": round(config.lr / weight_rms, 6),
        "text_row_norm_scaled": round(text_row_norm, 3),
        "audio_row_norm_scaled": round(audio_row_norm, 3),
        "audio_over_text_rows": round(audio_row_norm / text_row_norm, 3),
        "cosine_at_init": {k: round(v, 4) for k, v in cosines.items()},
        "loss_at_init": round(float(out.loss), 4),
        "grad_norm": {
            "backbone": round(grad_norm(backbone), 5),
            "audio_rows": round(grad_norm([named[names["audio"]]]), 5),
            "projection": round(grad_norm(model.projection.parameters()), 5),
        },
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=Plan.work)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--max-speech-tokens", type=int, default=96)
    p.add_argument("--json", default="benchmarks/results/arm_diagnostics.json")
    args = p.parse_args(argv)
    plan = Plan(
        work=args.work,
        seen=default_seen(),
        steps=max(CURVE),
        layers=args.layers,
        max_speech_tokens=args.max_speech_tokens,
    )
    data = prepare_data(plan)
    result = {"plan": dataclasses.asdict(plan), "arms": {}}
    with tempfile.TemporaryDirectory(prefix="arm-diag-") as tmp:
        for arm in ("random", "llm"):
            config = _configs(plan, data, arm, 0, storage.join(tmp, arm))
            result["arms"][arm] = diagnose(config)
            print(arm, json.dumps(result["arms"][arm]), flush=True)
    storage.write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
