"""The training loop: config, optimiser, schedule, DDP, checkpoints, resume, logs.

AdamW with two learning rates (backbone 1e-4; new parameters, i.e. audio
rows, projection and logit scale, 3e-3: the new rows start random and must
move faster than the pretrained ones), linear warmup then cosine, gradient clipping, gradient
accumulation, bf16 autocast (the fast path on CUDA and on AMX CPUs), optional
``torch.compile``, DDP under ``torchrun`` (gloo on CPU, NCCL on GPUs).

Levers for large batches and GPUs, all off by default (see docs/training.md):
``cache_chunk`` (gradient cache, :mod:`trainer.gradcache`: the full-batch
gradient with one chunk's activations), ``layout`` (``packed``/``varlen``:
sequences packed without cross-attention, :mod:`trainer.packing`),
``param_dtype="bf16"`` (bf16 weights, fp32 masters: :mod:`trainer.precision`),
``pad_multiple`` (widths rounded up, so ``compile`` meets few shapes) and
``optimizer`` (AdamW's fused kernel, the default, or its foreach path).

The learning rate is a pure function of the step and the data position a
pure function of ``(seed, epoch, index)``, so a checkpoint (weights, AdamW
moments, RNG, position) is the whole state: on CPU, N steps straight and N/2
+ ``--resume`` N/2 give bit-identical weights.

Example::

    config = TrainConfig(
        out="runs/demo",
        model=DualEncoderConfig(llm="gemma-3-270m", layers=4),
        data=DataConfig(shards="out/", batch_size=16),
        steps=150,
    )
    summary = train(config)            # or train(config, resume=True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from datastore import storage
from datastore.outlock import check_still_held
from trainer import checkpoint as ckpt
from trainer.activation_memory import use_activation_checkpointing, use_lean_norms
from trainer.audio_init import AlignedInitConfig, init_aligned_audio_rows
from trainer.configs import (
    RESUMABLE_CHANGES,
    DualEncoderConfig,
    TrainConfig,
)
from trainer.data import BitextRows, DataConfig, ShardLoader, TokenRows, text_group
from trainer.gradcache import allreduce_gradients, gradcache_backward, split_rows
from trainer.loss import dual_encoder_loss, gather_no_grad, gather_with_grad
from trainer.model import DualEncoder, build_model
from trainer.packing import check_packable, pack, pad_to_multiple, use_varlen_attention
from trainer.precision import PARAM_DTYPES, MasterWeights, resolve_precision
from trainer.provenance import copy_codebook, token_provenance

log = logging.getLogger(__name__)


def lr_factor(step: int, *, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr for update ``step`` (1-based): linear warmup, then cosine."""
    if warmup and step <= warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1 (gloo on CPU, NCCL on CUDA)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        here = True
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        initialized_here=here,
    )


def _device(name: str, dist_info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", dist_info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _check_resume(saved: dict, config: TrainConfig) -> None:
    # A setting added after the run was saved counts as its default.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    diffs = []
    for k, v in config.to_dict().items():
        was = saved.get(k, defaults.get(k))
        if k not in RESUMABLE_CHANGES and was != json.loads(json.dumps(v)):
            diffs.append(f"{k}: saved {was!r}, given {v!r}")
    if diffs:
        raise ckpt.CheckpointError("--resume with different settings: " + "; ".join(diffs))
    if saved.get("steps") != config.steps:
        log.warning(
            "resuming with steps=%d (was %s): the cosine schedule stretches",
            config.steps,
            saved.get("steps"),
        )


class Trainer:
    """Owns model, optimiser, data and run folder; :meth:`fit` trains to ``config.steps``."""

    def __init__(self, config: TrainConfig, *, resume: bool = False):
        self.config = config
        device_type = (
            "cuda"
            if config.device.startswith("cuda")
            or (config.device == "auto" and torch.cuda.is_available())
            else "cpu"
        )
        self.dist = init_distributed(device_type)
        self.device = _device(config.device, self.dist)
        precision = resolve_precision(config.precision, self.device, config.param_dtype)
        if precision != config.precision:  # the run folder records what ran
            log.info("precision %s on %s: %s", config.precision, self.device, precision)
            config = self.config = dataclasses.replace(config, precision=precision)
        saved = None
        if resume:
            saved = ckpt.read_config(config.out)
            _check_resume(saved.get("train") or {}, config)
        elif ckpt.has_checkpoint(config.out):
            raise ckpt.CheckpointError(
                f"{config.out} already holds a run: pass --resume or choose another --out"
            )
        data = config.data
        self.rows = TokenRows.read(
            data.shards,
            split=data.split,
            langs=data.langs,
            corpora=data.corpora,
            allow_failed=data.read_failed,
        )
        self.codebook = {
            "id": self.rows.codebook.id,
            "k": self.rows.codebook.k,
            "sha256": self.rows.codebook.sha256,
        }
        self.tokens = {  # how audio became tokens, and the languages trained on
            **token_provenance(data.shards, self.codebook),
            "langs": sorted({str(lang) for lang in self.rows.langs}),
        }
        if saved is not None and saved["codebook"] != self.codebook:
            raise ckpt.CheckpointError(
                f"shards use codebook {self.codebook}, the run {saved['codebook']}"
            )
        bitext = (
            BitextRows.read(data.bitext, langs=data.langs, allow_failed=data.read_failed)
            if data.bitext and data.bitext_ratio > 0
            else None
        )
        self.model: DualEncoder = build_model(config.model, self.rows.codebook.k, seed=config.seed)
        if config.audio_init == "aligned" and saved is None:  # a resumed run loads its rows
            init_aligned_audio_rows(
                self.model,
                self.rows,
                AlignedInitConfig(max_tokens=config.model.max_speech_tokens),
            )
        use_lean_norms(self.model.backbone)  # same outputs, less held for backward
        if config.activation_checkpointing:
            use_activation_checkpointing(self.model.backbone)
        self.model.to(self.device)
        self._set_layout()
        self.param_names, groups = self._param_groups()
        self.master = None
        if config.param_dtype != "fp32":
            self.master = MasterWeights(self.model, PARAM_DTYPES[config.param_dtype])
            groups = self.master.param_groups(groups)
        # Fused AdamW (CPU and CUDA) is the default: ~5x faster than the foreach path on
        # the 2-core CPU (6M trained params); foreach stays selectable for comparison.
        impl = {config.optimizer: True}
        self.optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6, **impl)
        self.loader = ShardLoader(
            self.rows,
            data,
            bitext=bitext,
            max_speech_tokens=config.model.max_speech_tokens,
            max_text_tokens=config.model.max_text_tokens,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.step = 0
        self.metrics: list[dict] = []
        torch.manual_seed(config.seed + self.dist.rank)
        if saved is not None:
            self._restore(int(saved["step"]))
        if self.master is not None:
            self.master.sync_from_model()
            self.master.cast_model()
        self.forward_module = self.model
        if config.compile:
            self.model.backbone.compile(dynamic=True)
        if self.dist.world_size > 1 and config.cache_chunk is None:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_module = DDP(self.model, device_ids=ids)
        elif self.dist.world_size > 1:  # gradient cache: gradients reduced by hand
            _broadcast_from_rank0(self.model)

    # -- set-up -----------------------------------------------------------------------------

    def _set_layout(self) -> None:
        layout = self.config.layout
        if layout == "padded":
            return
        check_packable(self.model.backbone.config)
        if layout == "varlen":
            if self.device.type == "cuda" and self.config.precision != "bf16":
                raise ValueError("layout varlen runs the bf16 flash kernel: needs precision bf16")
            if self.device.type != "cuda":
                log.info("layout varlen on %s: one attention call per sequence", self.device)
            use_varlen_attention(self.model.backbone)

    def _param_groups(self) -> tuple[list[list[str]], list[dict]]:
        new = self.model.new_parameter_names()
        embeddings = set(self.model.embedding_parameter_names().values())
        buckets: dict[str, tuple[list[str], list]] = {
            k: ([], []) for k in ("backbone", "backbone_no_wd", "new", "new_no_wd")
        }
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            decay = p.dim() >= 2 and name not in embeddings
            key = ("new" if name in new else "backbone") + ("" if decay else "_no_wd")
            buckets[key][0].append(name)
            buckets[key][1].append(p)
        names, groups = [], []
        for key, (group_names, params) in buckets.items():
            if not params:
                continue
            lr = self.config.lr_new if key.startswith("new") else self.config.lr
            wd = self.config.weight_decay if not key.endswith("no_wd") else 0.0
            names.append(group_names)
            groups.append(
                {"params": params, "lr": lr, "weight_decay": wd, "name": key, "peak_lr": lr}
            )
        return names, groups

    def _restore(self, step: int) -> None:
        out = self.config.out
        ckpt.load_model_weights(self.model, out, step=step)
        rng = ckpt.load_optimizer(out, self.optimizer, self.param_names, step=step)
        state = json.loads(storage.read_text(storage.join(out, ckpt.STATE_FILE)))
        if int(state["step"]) != step:
            raise ckpt.CheckpointError(
                f"{ckpt.STATE_FILE} is from step {state['step']}, expected {step}"
            )
        if int(state.get("world_size", 1)) != self.dist.world_size:
            raise ckpt.CheckpointError(
                f"the run was trained on {state.get('world_size')} process(es), not "
                f"{self.dist.world_size}: the data position would not carry over"
            )
        self.loader.load_state_dict(state["data"])
        if "torch" in rng and self.dist.is_main:
            torch.set_rng_state(rng["torch"])
        metrics_uri = storage.join(out, ckpt.METRICS_FILE)
        if storage.exists(metrics_uri):
            lines = [
                json.loads(x) for x in storage.read_text(metrics_uri).splitlines() if x.strip()
            ]
            self.metrics = [m for m in lines if int(m["step"]) <= step]
        self.step = step
        log.info("resumed %s at step %d (epoch %d)", out, step, self.loader.epoch)

    # -- one update -------------------------------------------------------------------------

    def _autocast(self):
        enabled = self.config.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def encode_cpu(self, batch):
        """Padded model inputs of a batch on the CPU: speech side, one text side for
        transcripts + bitext, and the text groups."""
        model = self.model
        speech = model.encode_speech(batch.speech, batch.langs)
        texts = batch.texts + batch.bitext_src + batch.bitext_tgt
        langs = batch.langs + batch.bitext_src_langs + batch.bitext_tgt_langs
        text = model.encode_text(texts, langs)
        groups = np.concatenate(
            [batch.groups, np.asarray([text_group(t) for t in batch.bitext_tgt], dtype=np.int64)]
        )
        return speech, text, torch.from_numpy(groups)

    def layout(self, encoded):
        """One side's padded inputs (CPU) -> the configured layout, on the device."""
        cfg, pad = self.config, self.model.pad_id
        if cfg.layout == "padded":
            encoded = pad_to_multiple(encoded, cfg.pad_multiple, pad)
        else:
            kind = "rows" if cfg.layout == "packed" else "flat"
            encoded = pack(encoded, layout=kind, multiple=cfg.pad_multiple, pad_id=pad)
        return encoded.to(self.device)

    def encode(self, batch):
        """Model inputs of a batch in the configured layout, on the device."""
        speech, text, groups = self.encode_cpu(batch)
        return self.layout(speech), self.layout(text), groups.to(self.device)

    def loss_from_embeddings(self, batch, speech_emb, text_emb, scale, groups):
        """The (globally gathered) loss of one micro-batch from its embeddings."""
        n, m = len(batch.ids), len(batch.bitext_src)
        queries = torch.cat([speech_emb, text_emb[n : n + m]])
        candidates = torch.cat([text_emb[:n], text_emb[n + m :]])
        return dual_encoder_loss(
            gather_with_grad(queries),
            gather_with_grad(candidates),
            logit_scale=scale,
            groups=gather_no_grad(groups),
            spread_out_weight=self.config.loss.spread_out_weight,
        )

    def loss(self, batch, encoded=None):
        """Forward both sides and the (globally gathered) loss of one micro-batch."""
        speech, text, groups = encoded if encoded is not None else self.encode(batch)
        with self._autocast():
            speech_emb, text_emb, scale = self.forward_module(speech, text)
        out = self.loss_from_embeddings(batch, speech_emb, text_emb, scale, groups)
        tokens = speech.n_tokens + text.n_tokens
        return out, tokens

    def cached_backward(self, batch, *, weight: float = 1.0, check_recompute: bool = False):
        """Gradient-cache forward/backward of one micro-batch (``cache_chunk`` rows per
        chunk); returns ``(CacheResult, tokens, slots)``."""
        speech, text, groups = self.encode_cpu(batch)
        size = self.config.cache_chunk
        speech_chunks = [self.layout(c) for c in split_rows(speech, size)]
        text_chunks = [self.layout(c) for c in split_rows(text, size)]
        groups = groups.to(self.device)
        result = gradcache_backward(
            self.model,
            speech_chunks,
            text_chunks,
            lambda s, t, scale: self.loss_from_embeddings(batch, s, t, scale, groups),
            autocast=self._autocast,
            weight=weight,
            check_recompute=check_recompute,
        )
        chunks = speech_chunks + text_chunks
        return result, sum(c.n_tokens for c in chunks), sum(_slots(c) for c in chunks)

    def backward(self, micro_batches) -> dict:
        """Gradients of one update (mean over ``micro_batches``), reduced over ranks."""
        sums = {"loss": 0.0, "contrastive": 0.0, "spread_out": 0.0, "accuracy": 0.0}
        pairs = tokens = slots = 0
        weight = 1.0 / len(micro_batches)
        for i, batch in enumerate(micro_batches):
            if self.config.cache_chunk is not None:
                result, n_tokens, n_slots = self.cached_backward(batch, weight=weight)
                out = result.loss
            else:
                last = i == len(micro_batches) - 1
                sync = (
                    self.forward_module.no_sync()
                    if self.dist.world_size > 1 and not last
                    else contextlib.nullcontext()
                )
                with sync:
                    encoded = self.encode(batch)
                    out, n_tokens = self.loss(batch, encoded)
                    (out.loss * weight).backward()
                n_slots = _slots(encoded[0]) + _slots(encoded[1])
            for key in sums:
                sums[key] += float(getattr(out, key).detach()) * weight
            pairs += len(batch)
            tokens += n_tokens
            slots += n_slots
        if self.config.cache_chunk is not None and self.dist.world_size > 1:
            allreduce_gradients(list(self.model.parameters()), self.dist.world_size)
        return {**sums, "pairs": pairs, "tokens": tokens, "slots": slots}

    def set_lr(self, step: int) -> float:
        cfg = self.config
        factor = lr_factor(
            step, warmup=cfg.warmup_steps, total=cfg.steps, min_ratio=cfg.min_lr_ratio
        )
        for group in self.optimizer.param_groups:
            group["lr"] = group["peak_lr"] * factor
        return factor

    def train_step(self, micro_batches) -> dict:
        """One optimiser update over ``grad_accum`` micro-batches; returns its metrics."""
        started = time.perf_counter()
        self.model.train()
        factor = self.set_lr(self.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.model.zero_grad(set_to_none=True)
        done = self.backward(micro_batches)
        if self.master is not None:
            self.master.grads_to_masters()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad_norm)
        self.optimizer.step()
        if self.master is not None:
            self.master.masters_to_model()
        self.step += 1
        pairs, tokens, slots = done["pairs"], done["tokens"], done["slots"]
        if self.dist.world_size > 1:
            import torch.distributed as dist

            counts = torch.tensor([pairs, tokens, slots], dtype=torch.long, device=self.device)
            dist.all_reduce(counts)
            pairs, tokens, slots = (int(c) for c in counts)
        elapsed = time.perf_counter() - started
        return {
            "step": self.step,
            "epoch": self.loader.epoch,
            **{k: round(done[k], 6) for k in ("loss", "contrastive", "spread_out", "accuracy")},
            "lr": self.config.lr * factor,
            "lr_new": self.config.lr_new * factor,
            "logit_scale": round(float(self.model.scale().detach()), 4),
            "grad_norm": round(float(grad_norm), 6),
            "pairs": pairs,
            "tokens": tokens,
            "padded_tokens": slots,
            "step_s": round(elapsed, 4),
            "tokens_per_s": round(tokens / elapsed, 1),
        }

    # -- loop -------------------------------------------------------------------------------

    def fit(self, *, stop_after: int | None = None) -> dict:
        """Train until ``config.steps`` (or ``stop_after`` more steps); checkpoint and return a summary."""
        cfg = self.config
        bar = _progress(cfg.steps, self.step, enabled=cfg.progress and self.dist.is_main)
        started, done = time.perf_counter(), 0
        try:
            while self.step < cfg.steps and (stop_after is None or done < stop_after):
                micro = [self.loader.next_batch() for _ in range(cfg.grad_accum)]
                metrics = self.train_step(micro)
                done += 1
                self.metrics.append(metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{metrics['loss']:.4f}",
                        lr=f"{metrics['lr']:.2e}",
                        tok_s=f"{metrics['tokens_per_s']:.0f}",
                    )
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                elif self.step % cfg.log_every == 0:
                    self._flush_metrics()
                if self.step % cfg.log_every == 0:
                    log.info(
                        "step %d loss %.4f lr %.2e %.0f tok/s",
                        self.step,
                        metrics["loss"],
                        metrics["lr"],
                        metrics["tokens_per_s"],
                    )
            if done and (self.step % cfg.save_every and self.step != cfg.steps):
                self.save()  # stopped early: leave a resumable checkpoint
        finally:
            if bar is not None:
                bar.close()
        wall = time.perf_counter() - started
        losses = [m["loss"] for m in self.metrics]
        return {
            "step": self.step,
            "steps_this_run": done,
            "wall_s": round(wall, 2),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "out": cfg.out,
        }

    def save(self) -> None:
        """Checkpoint (rank 0): weights, optimizer + RNG, data position, metrics, then config."""
        if self.dist.is_main:
            out = self.config.out
            check_still_held(out)  # a run whose lock was broken must not write over the taker's
            storage.makedirs(out)
            with self.master.fp32_model() if self.master else contextlib.nullcontext():
                ckpt.save_model(out, self.model, step=self.step)
            ckpt.save_optimizer(
                out,
                self.optimizer,
                self.param_names,
                step=self.step,
                rng={"torch": torch.get_rng_state()},
            )
            state = {
                "step": self.step,
                "data": self.loader.state_dict(),
                "world_size": self.dist.world_size,
            }
            storage.write_text(storage.join(out, ckpt.STATE_FILE), json.dumps(state, indent=2))
            self._flush_metrics()
            self.tokens = copy_codebook(self.tokens, out)  # once: a self-contained run folder
            config = ckpt.run_config(
                self.model,
                codebook=self.codebook,
                step=self.step,
                train=self.config.to_dict(),
                tokens=self.tokens,
            )
            ckpt.write_config(out, config)
        if self.dist.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def _flush_metrics(self) -> None:
        if self.dist.is_main:
            text = "".join(json.dumps(m) + "\n" for m in self.metrics)
            storage.write_text(storage.join(self.config.out, ckpt.METRICS_FILE), text)

    def close(self) -> None:
        if self.dist.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _slots(encoded) -> int:
    """Token slots a layout makes the model process (real + pad)."""
    return int(encoded.input_ids.numel())


def _broadcast_from_rank0(model) -> None:
    """Start every rank from rank 0's weights (what DDP's constructor does)."""
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor, 0)


def _progress(total: int, initial: int, *, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


def train(config: TrainConfig, *, resume: bool = False, stop_after: int | None = None) -> dict:
    """Train (or resume) a run; returns ``{"step", "wall_s", "first_loss", "last_loss", ...}``."""
    trainer = Trainer(config, resume=resume)
    try:
        return trainer.fit(stop_after=stop_after)
    finally:
        trainer.close()


def debug_config(shards: str, out: str, **overrides) -> TrainConfig:
    """The CI config: tiny random Gemma 3 (``llm="debug"``), small batches, 2 steps."""
    seed = overrides.pop("seed", 0)
    model = DualEncoderConfig(llm="debug", max_speech_tokens=256, max_text_tokens=64)
    data = DataConfig(shards=shards, batch_size=4, max_tokens=4096, shuffle_buffer=64, seed=seed)
    base = {"steps": 2, "warmup_steps": 1, "save_every": 100, "log_every": 1, "progress": False}
    base.update(overrides)
    return TrainConfig(out=out, model=model, data=data, seed=seed, **base)
