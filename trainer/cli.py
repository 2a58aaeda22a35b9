"""``speechtok train``: a thin layer from flags to :class:`trainer.train.TrainConfig`.

Also ``speechtok embed``, ``search`` and ``export`` (a run used outside training).

Example::

    speechtok train --shards out/ --llm gemma-3-270m --layers 4 --out runs/a --steps 150
    torchrun --nproc_per_node 2 -m pipelines.cli train --shards out/ --out runs/b ...
    speechtok train --shards out/ --out runs/a --steps 300 --resume   # continue, same flags
"""

from __future__ import annotations

import json
import logging
import os

log = logging.getLogger(__name__)


def _usage_error(message: str) -> Exception:
    from pipelines.cli import UsageError

    return UsageError(message)


def _csv(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


def build_train_config(args) -> object:
    """TrainConfig from parsed ``speechtok train`` flags (missing optional flags: defaults)."""
    from trainer.data import DataConfig
    from trainer.loss import LossConfig
    from trainer.model import DualEncoderConfig
    from trainer.train import TrainConfig

    def opt(name, default=None):
        value = getattr(args, name, None)
        return default if value is None else value

    seed = opt("seed", 0)
    model = DualEncoderConfig(
        llm=args.llm,
        layers=opt("layers"),
        pooling=opt("pooling", "mean"),
        bidirectional=bool(opt("bidirectional", False)),
        train_text_rows=bool(opt("train_text_rows", False)),
        max_speech_tokens=opt("max_speech_tokens", 1024),
    )
    data = DataConfig(
        shards=args.shards,
        bitext=opt("bitext"),
        split=opt("split", "train"),
        langs=_csv(opt("langs")),
        batch_size=opt("batch_size", 16),
        max_tokens=opt("max_tokens", 16384),
        bitext_ratio=opt("bitext_ratio", 0.2 if opt("bitext") else 0.0),
        length_jitter=opt("length_jitter", 0.0),
        seed=seed,
    )
    return TrainConfig(
        out=args.out,
        model=model,
        data=data,
        loss=LossConfig(spread_out_weight=opt("spread_out_weight", 1.0)),
        steps=opt("steps", 1000),
        lr=opt("lr", 1e-4),
        lr_new=opt("lr_new", 3e-3),
        warmup_steps=opt("warmup_steps", 10),
        grad_accum=opt("grad_accum", 1),
        precision=opt("precision", "bf16"),
        device=opt("device", "auto"),
        compile=bool(opt("compile", False)),
        audio_init=opt("audio_init", "random"),
        seed=seed,
        save_every=opt("save_every", 500),
    )


def run_train(args, extra) -> int:
    """Entry point of ``speechtok train`` (dispatched by ``pipelines.cli``)."""
    try:
        config = build_train_config(args)
    except ValueError as exc:
        raise _usage_error(str(exc)) from exc
    from trainer.checkpoint import CheckpointError
    from trainer.data import ShardError
    from trainer.train import train

    try:
        summary = train(config, resume=bool(getattr(args, "resume", False)))
    except (CheckpointError, ShardError, FileNotFoundError) as exc:
        raise _usage_error(str(exc)) from exc
    if int(os.environ.get("RANK", "0")) == 0:  # one summary line under torchrun
        print(json.dumps(summary))
    return 0


def run_eval(args, extra) -> int:
    """Entry point of ``speechtok eval``: writes report.json, report.md, r_at_1.png."""
    from trainer.checkpoint import CheckpointError
    from trainer.evaluate import EvalConfig, evaluate
    from trainer.report import markdown

    try:
        config = EvalConfig(
            run=args.run,
            shards=args.shards,
            out=args.out,
            split=args.split,
            langs=_csv(getattr(args, "langs", None)),
            seen=_csv(getattr(args, "seen", None)),
            device=getattr(args, "device", None),
            allow_hub=bool(getattr(args, "allow_hub", False)),
        )
        report = evaluate(config)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise _usage_error(str(exc)) from exc
    print(markdown(report), end="")
    print(f"report: {args.out}/report.json, report.md, r_at_1.png")
    return 0


def run_embed(args, extra) -> int:
    """Entry point of ``speechtok embed``: embedding shards (+ faiss index) of a run."""
    from trainer.checkpoint import CheckpointError
    from trainer.data import ShardError
    from trainer.embed import EmbedConfig, embed

    try:
        config = EmbedConfig(
            run=args.run,
            out=args.out,
            shards=args.shards,
            text=args.text,
            split=args.split,
            langs=_csv(args.langs),
            modality=args.modality,
            faiss=args.faiss,
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
        )
        index = embed(config)
    except (CheckpointError, ShardError, FileNotFoundError, ValueError) as exc:
        raise _usage_error(str(exc)) from exc
    c = index.counts
    print(
        f"embed -> {args.out}: {c['accepted']} embeddings of dim {index.extra['dim']}"
        f" ({c['rejected']} rejected of {c['input']})"
        + (f", faiss index {args.out}/{index.extra['faiss']}" if index.extra.get("faiss") else "")
    )
    return 0


def run_search(args, extra) -> int:
    """Entry point of ``speechtok search``: prints the top hits of one query."""
    from tokenizer.audio import AudioError
    from trainer.checkpoint import CheckpointError
    from trainer.provenance import ProvenanceError
    from trainer.search import SearchConfig, format_hits, search

    try:
        config = SearchConfig(
            run=args.run,
            index=args.index,
            query_text=args.query_text,
            query_audio=args.query_audio,
            lang=args.lang,
            top_k=args.top_k,
            device=args.device,
        )
        hits = search(config)
    except (CheckpointError, ProvenanceError, AudioError, FileNotFoundError, ValueError) as exc:
        raise _usage_error(str(exc)) from exc
    print(format_hits(hits))
    return 0


def run_export(args, extra) -> int:
    """Entry point of ``speechtok export``: a standalone Hugging Face model folder."""
    from trainer.checkpoint import CheckpointError
    from trainer.export import export

    try:
        meta = export(args.run, args.out)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise _usage_error(str(exc)) from exc
    print(
        f"export -> {args.out}: {meta['llm']['name']} + {meta['audio_rows']} audio rows "
        f"(<a0> = id {meta['audio_token_offset']}), embeddings of dim {meta['embedding_dim']}; "
        f"usage: {args.out}/README.md"
    )
    return 0
