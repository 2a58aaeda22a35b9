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
    from datastore.errors import UsageError

    return UsageError(message)


def add_train_flags(parser) -> None:
    """``speechtok train``'s flags, generated from the configs' user fields
    (help, choices and defaults live in :mod:`trainer.configs` and
    :class:`trainer.data.DataConfig`)."""
    from datastore.settings import add_flags
    from trainer.configs import DualEncoderConfig, LossConfig, TrainConfig
    from trainer.data import DataConfig

    added: set[str] = set()
    add_flags(parser, DataConfig, required=("shards",), added=added)
    add_flags(parser, TrainConfig, required=("out",), added=added)
    add_flags(parser, DualEncoderConfig, added=added)
    add_flags(parser, LossConfig, added=added)
    parser.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")


def build_train_config(args) -> object:
    """TrainConfig from parsed ``speechtok train`` flags: what a flag sets, the
    configs' own defaults for the rest; ``--seed`` seeds the model and the data."""
    from datastore.settings import values
    from trainer.configs import DualEncoderConfig, LossConfig, TrainConfig
    from trainer.data import DataConfig

    train = values(TrainConfig, args)
    data = DataConfig(**values(DataConfig, args), seed=train.get("seed", 0))
    return TrainConfig(
        model=DualEncoderConfig(**values(DualEncoderConfig, args)),
        data=data,
        loss=LossConfig(**values(LossConfig, args)),
        **train,
    )


def run_train(args, extra) -> int:
    """Entry point of ``speechtok train`` (dispatched by ``pipelines.cli``)."""
    try:
        config = build_train_config(args)
    except ValueError as exc:
        raise _usage_error(str(exc)) from exc
    from trainer.checkpoint import CheckpointError
    from trainer.data import ShardError
    from trainer.provenance import ProvenanceError
    from trainer.train import train

    try:
        summary = train(config, resume=bool(getattr(args, "resume", False)))
    except (CheckpointError, ShardError, ProvenanceError, FileNotFoundError) as exc:
        raise _usage_error(str(exc)) from exc
    if int(os.environ.get("RANK", "0")) == 0:  # one summary line under torchrun
        print(json.dumps(summary))
    return 0


def run_eval(args, extra) -> int:
    """Entry point of ``speechtok eval``: writes report.json, report.md, r_at_1.png."""
    from datastore.settings import values
    from trainer.checkpoint import CheckpointError
    from trainer.evaluate import EvalConfig, evaluate
    from trainer.report import markdown

    try:
        config = EvalConfig(**values(EvalConfig, args))
        report = evaluate(config)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise _usage_error(str(exc)) from exc
    print(markdown(report), end="")
    print(f"report: {args.out}/report.json, report.md, r_at_1.png")
    return 0


def run_embed(args, extra) -> int:
    """Entry point of ``speechtok embed``: embedding shards (+ faiss index) of a run."""
    from datastore.settings import values
    from trainer.checkpoint import CheckpointError
    from trainer.data import ShardError
    from trainer.embed import EmbedConfig, embed

    try:
        config = EmbedConfig(**values(EmbedConfig, args))
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
    from datastore.settings import values
    from tokenizer.audio import AudioError
    from trainer.checkpoint import CheckpointError
    from trainer.provenance import ProvenanceError
    from trainer.search import SearchConfig, format_hits, search

    try:
        config = SearchConfig(**values(SearchConfig, args))
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
