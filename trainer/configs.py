"""The training run's configs, importable without torch.

``speechtok train``'s flags are generated from these fields
(:mod:`datastore.settings`, ``pipelines/flags.py``), so building the CLI
parser must not import torch (seconds here, for every command's ``--help``).
:class:`~trainer.data.DataConfig` lives with the data loader, which is
torch-free too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from datastore.settings import setting
from trainer.audio_init import AUDIO_INITS
from trainer.backbones import DEFAULT_BACKBONE, check_backbone_name
from trainer.data import DataConfig

PRECISIONS = ("auto", "bf16", "fp32")
PARAM_DTYPE_NAMES = ("fp32", "bf16")  # trainer.precision.PARAM_DTYPES maps them to torch
# padded: right-padded rows; packed: rows of several sequences with block-diagonal
# masks; varlen: one row, no mask, the flash variable-length kernel (CUDA).
LAYOUTS = ("padded", "packed", "varlen")
# AdamW implementations: one fused kernel per step (CPU and CUDA) or the foreach path.
OPTIMIZERS = ("fused", "foreach")
# Settings that may change on --resume without changing what is trained (the
# gradient cache and the layouts compute the same gradients, up to rounding).
RESUMABLE_CHANGES = (
    "out", "steps", "save_every", "log_every", "progress", "device", "compile",
    "cache_chunk", "layout", "pad_multiple", "optimizer", "activation_checkpointing",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DualEncoderConfig:
    """What defines the model (stored in the run's ``config.json``)."""

    llm: str = setting(
        DEFAULT_BACKBONE,
        help=f"{DEFAULT_BACKBONE} | gemma-3-270m-random (its architecture, random weights) | "
        "debug (tiny, random: tests) | hf:<dir or hub id>",
    )
    layers: int | None = setting(None, help="keep only the first N backbone layers")
    pooling: str = setting("mean", help="mean | last | first")
    projection_dim: int | None = None  # None: the backbone's hidden size
    normalize: bool = True  # L2-normalise the projected embeddings
    logit_scale_init: float = 20.0
    learn_logit_scale: bool = True
    max_logit_scale: float = 100.0
    train_text_rows: bool = setting(False, help="also train LLM text rows")
    bidirectional: bool = setting(False, help="Gemma 3: full attention")
    max_speech_tokens: int = setting(1024, help="audio tokens kept per utterance")
    max_text_tokens: int = 128
    prefix_template: str = "[{lang}] [{modality}]"
    pool_prefix: bool = False  # include special + prefix positions in the pooled mean

    def __post_init__(self):
        from trainer.pooling import POOLERS  # imports torch: not at parser build time

        check_backbone_name(self.llm)
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.pooling not in POOLERS:
            raise ValueError(f"unknown pooling {self.pooling!r} (known: {sorted(POOLERS)})")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError("projection_dim must be >= 1")
        if not 0 < self.logit_scale_init <= self.max_logit_scale:
            raise ValueError("need 0 < logit_scale_init <= max_logit_scale")
        if self.max_speech_tokens < 1 or self.max_text_tokens < 1:
            raise ValueError("max_speech_tokens and max_text_tokens must be >= 1")
        if "{lang}" not in self.prefix_template or "{modality}" not in self.prefix_template:
            raise ValueError("prefix_template needs {lang} and {modality}")


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Weights of the loss terms."""

    spread_out_weight: float = setting(1.0, help="weight of the spread-out regulariser")

    def __post_init__(self):
        if self.spread_out_weight < 0:
            raise ValueError("spread_out_weight must be >= 0")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run (stored in ``RUN_DIR/config.json`` under ``train``)."""

    out: str = setting(help="run folder to write")
    model: DualEncoderConfig
    data: DataConfig
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = setting(1000, help="optimizer steps")
    lr: float = setting(1e-4, help="backbone learning rate")
    lr_new: float = setting(3e-3, help="lr of audio rows, projection, logit scale")
    weight_decay: float = 0.01
    warmup_steps: int = setting(10, help="linear warmup before cosine")
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of the peak
    clip_grad_norm: float = 1.0
    grad_accum: int = setting(1, help="micro-batches per update")
    precision: str = setting(
        "auto",
        choices=PRECISIONS,
        help="autocast dtype; auto: bf16 on CUDA and on CPUs with native bf16 (AMX, "
        "AVX-512 BF16), fp32 on other CPUs (where bf16 is many times slower)",
    )
    param_dtype: str = setting(
        "fp32",
        choices=PARAM_DTYPE_NAMES,
        help="weights in bf16 with fp32 master weights in AdamW, or fp32",
    )
    device: str = setting("auto", help="auto | cpu | cuda | cuda:N")
    compile: bool = setting(False, help="torch.compile the backbone")
    cache_chunk: int | None = setting(
        None,
        help="gradient cache: embed the batch in chunks of N rows, so a contrastive batch "
        "larger than the device's activation memory trains with the full-batch gradient "
        "(default: off)",
    )
    activation_checkpointing: bool = setting(
        False,
        help="recompute each backbone layer in the backward pass: a fraction of the "
        "activation memory for about a third more compute",
    )
    layout: str = setting(
        "padded",
        choices=LAYOUTS,
        help="padded rows; packed: several sequences per row, masked apart; "
        "varlen: one row, the flash variable-length kernel on CUDA (Gemma 3 backbones)",
    )
    pad_multiple: int = setting(
        1, help="round sequence widths up to a multiple of N, so --compile meets few shapes"
    )
    optimizer: str = setting("fused", choices=OPTIMIZERS, help="AdamW implementation")
    seed: int = setting(0, help="seed of the model's new rows and of the batch order")
    audio_init: str = setting(
        "random",
        choices=AUDIO_INITS,
        help="audio rows start random (as in the paper) or from the characters they align "
        "with in the training transcripts",
    )
    save_every: int = setting(500, help="checkpoint every N steps")
    log_every: int = 10
    progress: bool = True

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.grad_accum < 1 or self.save_every < 1 or self.log_every < 1:
            raise ValueError("grad_accum, save_every and log_every must be >= 1")
        if self.lr <= 0 or self.lr_new <= 0 or self.weight_decay < 0:
            raise ValueError("learning rates must be > 0 and weight_decay >= 0")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("need warmup_steps >= 0 and 0 <= min_lr_ratio <= 1")
        if self.clip_grad_norm <= 0:
            raise ValueError("clip_grad_norm must be > 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.audio_init not in AUDIO_INITS:
            raise ValueError(f"audio_init must be one of {AUDIO_INITS}, got {self.audio_init!r}")
        if self.param_dtype not in PARAM_DTYPE_NAMES:
            raise ValueError(f"param_dtype must be one of {sorted(PARAM_DTYPE_NAMES)}")
        if self.param_dtype == "bf16" and self.precision == "fp32":
            raise ValueError("param_dtype bf16 needs precision bf16")
        if self.cache_chunk is not None and self.cache_chunk < 1:
            raise ValueError(f"cache_chunk must be >= 1, got {self.cache_chunk}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {self.pad_multiple}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        data = dict(d.pop("data"))
        for key in ("langs", "corpora"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(
            model=DualEncoderConfig(**d.pop("model")),
            data=DataConfig(**data),
            loss=LossConfig(**d.pop("loss", {})),
            **d,
        )
