"""The dual encoder: one LLM backbone whose vocabulary grows by the audio tokens.

Following the paper, the LLM's embedding table grows from ``t x m`` to
``(t + a) x m``: one new, randomly initialised row per codebook entry
(``a`` = the codebook size padded to a multiple of 64, for aligned kernels),
audio token ``c`` becoming id ``t + c``. The same backbone then encodes both
sides, each behind a prefix naming language and modality (``[fr] [speech]``,
``[fr] [text]``), at train and at test time. Hidden states are pooled (masked
mean by default; registry below), projected linearly and optionally
L2-normalised.

The text rows stay frozen and out of the optimiser by default: Gemma's
262k x 640 table would add ~2.7 GB of AdamW state and slow every step, and
the text side needs no new vocabulary. Backbones that scale embeddings inside
the embedding module (Gemma multiplies by sqrt(hidden)) get the same scale on
the audio rows, measured from the module itself.

Gemma is a causal LM: mean pooling over causal states works (later tokens
see the whole prefix); ``bidirectional=True`` switches Gemma 3 to full
attention instead (``use_bidirectional_attention``).

Example::

    model = build_model(DualEncoderConfig(llm="gemma-3-270m", layers=4), codebook_size=256)
    speech = model.embed_speech([[3, 17, 17, 250]], ["fr"])   # [1, 640]
    text = model.embed_text(["bonjour"], ["fr"])               # [1, 640]
    (speech @ text.T).item()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.backbones import Backbone, load_backbone
from trainer.configs import DualEncoderConfig
from trainer.packing import Packed, attention_inputs
from trainer.pooling import POOLERS, Pooler, register_pooler  # noqa: F401 (re-exported)

AUDIO_ROW_MULTIPLE = 64
MODALITIES = ("speech", "text")

# --- config -------------------------------------------------------------------------------


def padded_audio_rows(codebook_size: int) -> int:
    """Rows added for a codebook of ``k`` entries: ``k`` rounded up to a multiple of 64."""
    if codebook_size < 1:
        raise ValueError(f"codebook size must be >= 1, got {codebook_size}")
    return -(-codebook_size // AUDIO_ROW_MULTIPLE) * AUDIO_ROW_MULTIPLE


class Encoded(NamedTuple):
    """Model inputs of one side: ids, attention mask, and the positions to pool over."""

    input_ids: torch.Tensor  # long [B, L], right-padded
    attention_mask: torch.Tensor  # long [B, L]
    pool_mask: torch.Tensor  # long [B, L]

    def to(self, device) -> Encoded:
        return Encoded(*(t.to(device, non_blocking=True) for t in self))

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def embedding_scale(module) -> float:
    """The factor an embedding module applies to its rows (Gemma: sqrt(hidden)), measured.

    Raises ``ValueError`` if the module does more than scale a lookup: audio
    rows could then not be made to look like text rows.
    """
    weight = module.weight
    row = int(weight.detach().abs().sum(1).argmax())
    with torch.no_grad():
        out = module(torch.tensor([[row]], device=weight.device))[0, 0].float()
    ref = weight[row].detach().float()
    scale = float((out @ ref) / (ref @ ref))
    if not torch.allclose(out, ref * scale, rtol=1e-4, atol=1e-6):
        raise ValueError(f"{type(module).__name__} is not a scaled lookup; cannot extend it")
    return scale


class ExtendedEmbedding(nn.Module):
    """The LLM's embedding module plus ``audio_rows`` new rows at ids ``t..t+a-1``.

    Text ids go through the original module untouched (its own scaling
    included); audio ids look up the new rows and get the same scale.
    """

    def __init__(
        self, text: nn.Module, audio_rows: int, *, scale: float, init_std: float, generator
    ):
        super().__init__()
        self.text = text
        self.text_vocab_size = int(text.weight.shape[0])
        dim = int(text.weight.shape[1])
        audio = torch.randn(audio_rows, dim, generator=generator) * init_std
        self.audio = nn.Parameter(audio.to(text.weight.dtype))
        self.scale = float(scale)

    @property
    def num_embeddings(self) -> int:
        return self.text_vocab_size + int(self.audio.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.audio.shape[1])

    def table(self) -> torch.Tensor:
        """The whole extended table ``[(t + a), m]`` (unscaled rows, like ``weight``)."""
        return torch.cat([self.text.weight, self.audio], 0)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        is_audio = input_ids >= self.text_vocab_size
        text = self.text(input_ids.masked_fill(is_audio, 0))
        audio_ids = (input_ids - self.text_vocab_size).clamp_min(0)
        audio = F.embedding(audio_ids, self.audio) * self.scale
        return torch.where(is_audio.unsqueeze(-1), audio.to(text.dtype), text)


def _special_framing(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids a tokenizer puts before and after a text (Gemma: [<bos>], [])."""
    probe = "a"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare) :])
    return [], []


class DualEncoder(nn.Module):
    """Speech-token sequences and texts -> one shared embedding space.

    Built by :func:`build_model` (or :func:`trainer.checkpoint.load_run`).
    ``forward(speech, text)`` returns both embedding sets for the loss; the
    ``embed_*`` methods are the inference API for evaluation.
    """

    def __init__(
        self, config: DualEncoderConfig, backbone: Backbone, codebook_size: int, *, seed=0
    ):
        super().__init__()
        self.config = config
        self.backbone_name = backbone.name
        self.backbone_reference = dict(backbone.reference)
        self.codebook_size = int(codebook_size)
        self.tokenizer = backbone.tokenizer
        model = backbone.model
        text = model.get_input_embeddings()
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            sample = text.weight[:: max(1, text.weight.shape[0] // 65536)].float()
            init_std = float(sample.std())
        extended = ExtendedEmbedding(
            text,
            padded_audio_rows(codebook_size),
            scale=embedding_scale(text),
            init_std=init_std,
            generator=generator,
        )
        text.weight.requires_grad_(config.train_text_rows)
        model.set_input_embeddings(extended)
        self.backbone = model
        hidden = int(model.config.hidden_size)
        out_dim = config.projection_dim or hidden
        self.projection = nn.Linear(hidden, out_dim)
        with torch.no_grad():  # seeded like the audio rows: same seed, same model
            bound = 1.0 / math.sqrt(hidden)
            self.projection.weight.copy_(torch.rand(out_dim, hidden, generator=generator))
            self.projection.weight.mul_(2 * bound).sub_(bound)
            self.projection.bias.zero_()
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(config.logit_scale_init)),
            requires_grad=config.learn_logit_scale,
        )
        self._pool = POOLERS[config.pooling]
        self._head, self._tail = _special_framing(self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self._prefix_ids: dict[tuple[str, str], list[int]] = {}
        self.unused_backbone_parameters = self._freeze_unused_backbone_parameters()

    def _freeze_unused_backbone_parameters(self) -> list[str]:
        """Freeze backbone parameters our forward never reaches (e.g. BERT's pooler).

        Found with one tiny forward/backward. Left trainable they would get no
        gradient, which DDP (``find_unused_parameters=False``) rejects; frozen,
        they are restored from the LLM like the text rows.
        """
        was_training = self.training
        self.eval()
        with torch.enable_grad():
            self.embed(self.encode_text(["a"], ["en"])).sum().backward()
        unused = []
        for name, p in self.named_parameters():
            is_audio = p is self.embedding.audio  # unused by a text probe only
            if name.startswith("backbone.") and p.requires_grad and p.grad is None and not is_audio:
                p.requires_grad_(False)
                unused.append(name)
            p.grad = None
        self.train(was_training)
        return unused

    # -- vocabulary -------------------------------------------------------------------------

    @property
    def embedding(self):
        return self.backbone.get_input_embeddings()

    @property
    def audio_offset(self) -> int:
        """Id of audio token 0: audio token ``c`` is fed as ``audio_offset + c``."""
        return self.embedding.text_vocab_size

    @property
    def embed_dim(self) -> int:
        return int(self.projection.out_features)

    def prefix_ids(self, lang: str, modality: str) -> list[int]:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        key = (lang, modality)
        if key not in self._prefix_ids:
            prefix = self.config.prefix_template.format(lang=lang, modality=modality)
            self._prefix_ids[key] = list(
                self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
            )
        return self._prefix_ids[key]

    # -- inputs -----------------------------------------------------------------------------

    def _pack(self, bodies: list[list[int]], langs: Sequence[str], modality: str) -> Encoded:
        if len(bodies) != len(langs):
            raise ValueError(f"{len(bodies)} sequences but {len(langs)} languages")
        rows, starts, ends = [], [], []
        for body, lang in zip(bodies, langs, strict=True):
            lead = self._head + self.prefix_ids(lang, modality)
            rows.append(lead + body + self._tail)
            starts.append(len(lead))
            ends.append(len(lead) + len(body) + len(self._tail))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        pool = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
            # Pool over content (+ closing specials); a row with no content falls back to all.
            lo = 0 if self.config.pool_prefix or ends[i] == starts[i] else starts[i]
            pool[i, lo : len(row)] = 1
        return Encoded(ids, mask, pool)

    def encode_speech(self, tokens: Sequence[Sequence[int]], langs: Sequence[str]) -> Encoded:
        """Audio-token sequences (codebook ids) -> padded model inputs behind ``[lang] [speech]``."""
        cap, k, offset = self.config.max_speech_tokens, self.codebook_size, self.audio_offset
        bodies = []
        for seq in tokens:
            arr = np.asarray(seq, dtype=np.int64)[:cap]
            if arr.size and (arr.min() < 0 or arr.max() >= k):
                raise ValueError(
                    f"audio token outside the codebook [0, {k}): {arr.min()}..{arr.max()}"
                )
            bodies.append((arr + offset).tolist())
        return self._pack(bodies, langs, "speech")

    def encode_text(self, texts: Sequence[str], langs: Sequence[str]) -> Encoded:
        """Texts -> padded model inputs behind ``[lang] [text]`` (LLM tokenizer ids)."""
        cap = self.config.max_text_tokens
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        return self._pack([list(x[:cap]) for x in ids], langs, "text")

    # -- model ------------------------------------------------------------------------------

    def scale(self):
        """The contrastive logit scale (exp of the learnt log, capped)."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def embed(self, encoded: Encoded | Packed):
        """One backbone pass over one side -> pooled, projected (normalised) embeddings.

        ``encoded`` is padded (:class:`Encoded`) or packed (:class:`trainer.packing.Packed`:
        the same sequences, the same result, fewer pad slots).
        """
        inputs = self.embedding(encoded.input_ids)
        if isinstance(encoded, Packed):
            config = self.backbone.config
            out = self.backbone(
                inputs_embeds=inputs,
                position_ids=encoded.position_ids,
                **attention_inputs(encoded, config),
            )
            flat = out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1])
            hidden = flat[encoded.index]  # the padded view: [B, L, H]
        else:
            out = self.backbone(inputs_embeds=inputs, attention_mask=encoded.attention_mask)
            hidden = out.last_hidden_state
        pooled = self._pool(hidden, encoded.pool_mask)
        emb = self.projection(pooled.to(self.projection.weight.dtype)).float()
        return F.normalize(emb, dim=-1) if self.config.normalize else emb

    def forward(self, speech: Encoded, text: Encoded):
        """Both sides in one call (one DDP forward per step): ``(speech_emb, text_emb, scale)``.

        The logit scale is returned from inside the forward so DDP sees it used there.
        """
        return self.embed(speech), self.embed(text), self.scale()

    def _embed_many(self, encode, items, langs, batch_size, autocast_dtype):
        if len(items) != len(langs):
            raise ValueError(f"{len(items)} inputs but {len(langs)} languages")
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        outs = []
        try:
            with torch.no_grad():
                for i in range(0, len(items), batch_size):
                    enc = encode(items[i : i + batch_size], langs[i : i + batch_size]).to(device)
                    with torch.autocast(
                        device.type,
                        dtype=autocast_dtype or torch.float32,
                        enabled=autocast_dtype is not None,
                    ):
                        outs.append(self.embed(enc).float())
        finally:
            self.train(was_training)
        if not outs:
            return torch.zeros((0, self.embed_dim))
        return torch.cat(outs).cpu()

    def embed_speech(self, tokens_batch, langs, *, batch_size: int = 32, autocast_dtype=None):
        """Embed audio-token sequences (eval mode, no grad): float32 ``[N, D]`` on CPU.

        ``autocast_dtype=torch.bfloat16`` is the fast path on AMX CPUs and GPUs.
        """
        return self._embed_many(
            self.encode_speech, list(tokens_batch), list(langs), batch_size, autocast_dtype
        )

    def embed_text(self, texts, langs, *, batch_size: int = 64, autocast_dtype=None):
        """Embed texts (eval mode, no grad): float32 ``[N, D]`` on CPU."""
        return self._embed_many(
            self.encode_text, list(texts), list(langs), batch_size, autocast_dtype
        )

    # -- parameters -------------------------------------------------------------------------

    def embedding_parameter_names(self) -> dict[str, str]:
        """``{"text": name, "audio": name}`` of the two halves of the extended table."""
        emb = self.embedding
        found = {id(p): n for n, p in self.named_parameters()}
        return {"text": found[id(emb.text.weight)], "audio": found[id(emb.audio)]}

    def new_parameter_names(self) -> set[str]:
        """Parameters that did not exist in the LLM: audio rows, projection, logit scale."""
        names = {n for n, _ in self.named_parameters() if not n.startswith("backbone.")}
        return names | {self.embedding_parameter_names()["audio"]}

    def frozen_parameter_names(self) -> set[str]:
        """Backbone parameters left untouched (the text rows by default): not checkpointed."""
        return {
            n
            for n, p in self.named_parameters()
            if n.startswith("backbone.") and not p.requires_grad
        }


def build_model(config: DualEncoderConfig, codebook_size: int, *, seed: int = 0) -> DualEncoder:
    """Load the backbone named in ``config`` and extend it for a codebook of ``codebook_size``."""
    backbone = load_backbone(config.llm, layers=config.layers, bidirectional=config.bidirectional)
    return DualEncoder(config, backbone, codebook_size, seed=seed)
