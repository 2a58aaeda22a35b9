"""``hf:<dir or hub id>``: any transformers speech encoder, hidden state of one layer.

Why: the paper's USM is not public; users pick the best open encoder for
their languages (mHuBERT-147, XLS-R, w2v-BERT 2.0, Whisper) without code
changes. Whisper checkpoints go through :mod:`tokenizer.encoders.whisper`
(log-mel, padded/unpadded modes); every other model (wav2vec 2.0, HuBERT,
WavLM, w2v-BERT 2.0...) runs with its own feature extractor.

Layer ``L`` follows transformers' ``hidden_states[L]``: 0 is the input of the
first transformer block and ``L`` the output of block ``L``, the last one
included (before any final encoder norm, as transformers 5 reports it for
wav2vec 2.0-style models; Whisper's last layer includes its final norm, as
Whisper's own encoder output does). Only the blocks up to ``L`` run: a hook
on block ``L`` captures its output and stops the forward pass, and the blocks
past it are dropped from memory. Adapters or heads after the encoder never
run, so frames come at the encoder's rate.

Padding: models whose feature extractor returns an attention mask (w2v-BERT,
large wav2vec 2.0 / HuBERT with layer-norm feature encoders) are batched with
masks. Models trained without masks (base wav2vec 2.0 / HuBERT) would see
padding as signal, so their clips run one at a time: features never depend
on the batch.

Sources: a local folder, a remote folder (``gs://...``, copied once through
:mod:`datastore.storage` into the user cache), or a hub id (transformers' own
cache; set ``HF_HUB_OFFLINE=1`` to forbid downloads).

Example::

    enc = build_encoder("hf:/models/mhubert-147", layer=9)
    enc.encode([wave])[0].shape          # (n_frames, 768), 50 Hz
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import os
import threading
import warnings

import numpy as np

from datastore import storage
from datastore.identity import FeatureIdentity
from tokenizer.encoders import register_encoder
from tokenizer.encoders.base import (
    SAMPLE_RATE,
    Encoder,
    EncoderConfig,
    resolve_layer,
    torch_or_hint,
)


class _StopForward(Exception):
    """Raised by the capture hook once the wanted layer has run."""


def _transformers_or_hint():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError("hf: encoders need transformers: pip install transformers") from err
    return transformers


def materialize(source: str) -> str:
    """A path transformers can load: local dirs as they are, remote folders
    copied once into the user cache, anything else (a hub id) unchanged."""
    if storage.is_local(source):
        path = storage.local_path(source)
        if os.path.isdir(path):
            return path
        if os.path.isabs(path) or path.startswith(".") or os.path.exists(path):
            raise ValueError(f"hf: encoder folder not found: {source}")
        return source  # a hub id such as "utter-project/mHuBERT-147"
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    local = os.path.join(storage.user_cache_dir(), "hf", digest)
    marker = os.path.join(local, ".complete")
    if not os.path.exists(marker):
        prefix = source.rstrip("/") + "/"
        files = storage.list_files(source)
        if not files:
            raise ValueError(f"hf: encoder folder is empty or missing: {source}")
        for uri in files:
            # resolve_under: a crafted object name cannot write outside the cache.
            target = storage.resolve_under(local, uri[len(prefix) :])
            storage.write_bytes(target, storage.read_bytes(uri))
        storage.write_text(marker, source)
    return local


def _find_blocks(model):
    """The module owning a speech encoder's transformer blocks (``.layers``)."""
    torch = torch_or_hint()
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(getattr(module, "layers", None), torch.nn.ModuleList)
        and len(module.layers) > 0
    ]
    if not found:
        raise ValueError(f"cannot find the encoder blocks of {type(model).__name__}")
    # Prefer a module named "encoder" (wav2vec2, HuBERT, w2v-BERT, WavLM).
    found.sort(key=lambda item: (item[0].split(".")[-1] != "encoder", item[0].count(".")))
    return found[0][1]


class HFSpeechEncoder(Encoder):
    """A non-Whisper transformers speech encoder run up to ``layer``."""

    def __init__(self, config: EncoderConfig, path: str):
        torch = torch_or_hint()
        transformers = _transformers_or_hint()
        if config.mode is not None:
            raise ValueError("mode applies to Whisper encoders only")
        model = transformers.AutoModel.from_pretrained(path)
        try:
            extractor = transformers.AutoFeatureExtractor.from_pretrained(path)
        except (OSError, ValueError):
            if "input_values" not in getattr(model, "main_input_name", ""):
                raise ValueError(
                    f"{config.name}: no preprocessor_config.json beside the model"
                ) from None
            # wav2vec2-style raw-waveform models: transformers' defaults.
            extractor = transformers.Wav2Vec2FeatureExtractor(
                feature_size=1,
                sampling_rate=SAMPLE_RATE,
                do_normalize=True,
                return_attention_mask=getattr(model.config, "feat_extract_norm", "") == "layer",
            )
        if getattr(extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise ValueError(
                f"{config.name}: expects {extractor.sampling_rate} Hz audio, not 16 kHz"
            )
        owner = _find_blocks(model)
        layer = resolve_layer(config.name, config.layer, len(owner.layers))
        self.config = dataclasses.replace(config, layer=layer)
        self._extractor = extractor
        self._input_name = extractor.model_input_names[0]
        self._masks = bool(getattr(extractor, "return_attention_mask", False))
        self._local = threading.local()  # the model is shared by Beam's threads
        if layer == 0:
            owner.layers[0].register_forward_pre_hook(self._capture_input, with_kwargs=True)
        else:
            owner.layers[layer - 1].register_forward_hook(self._capture_output)
        owner.layers = owner.layers[: max(layer, 1)]  # blocks past L never run: free them
        self._model = model.to(config.device, self.compute_dtype()).eval()
        self._torch = torch
        # Frames at the encoder's rate: never count an adapter after it.
        self._output_lengths = model._get_feat_extract_output_lengths
        params = inspect.signature(self._output_lengths).parameters
        self._no_adapter = {"add_adapter": False} if "add_adapter" in params else {}
        self.dim = int(getattr(model.config, "hidden_size", 0) or model.config.d_model)
        ten_s = self.n_frames(10 * SAMPLE_RATE)
        self.frame_rate = float(self.n_frames(20 * SAMPLE_RATE) - ten_s) / 10.0

    # -- capture hooks (thread-local: one model, several Beam threads) --------
    def _capture_input(self, module, args, kwargs):
        self._local.hidden = args[0] if args else kwargs["hidden_states"]
        raise _StopForward

    def _capture_output(self, module, args, output):
        self._local.hidden = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    # -- frames -----------------------------------------------------------------
    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one encoder per worker, bounded
    def _input_length(self, n_samples: int) -> int:
        """Length of the model input for a clip: samples, or feature frames."""
        if self._input_name == "input_values":
            return n_samples
        if n_samples == 0:
            return 0
        # Only the mask's length matters; noise, because silence normalises to 0/0.
        probe = 0.1 * np.random.default_rng(0).standard_normal(n_samples).astype(np.float32)
        try:
            with warnings.catch_warnings():  # one-frame clips: numpy warns on var(ddof=1)
                warnings.simplefilter("ignore", RuntimeWarning)
                out = self._extractor(
                    [probe],
                    sampling_rate=SAMPLE_RATE,
                    return_attention_mask=True,
                    return_tensors="np",
                )
        except (ValueError, RuntimeError):  # shorter than one analysis window
            return 0
        return int(out["attention_mask"].sum())

    def n_frames(self, n_samples: int) -> int:
        n = self._input_length(self._check_n_samples(n_samples))
        if n <= 0:
            return 0
        lengths = self._output_lengths(self._torch.tensor([n]), **self._no_adapter)
        return max(int(lengths[0]), 0)

    def _max_batch_size(self) -> int | None:
        return None if self._masks else 1

    def _encode_batch(self, clips: list[np.ndarray]) -> list:
        inputs = self._extractor(
            clips,
            sampling_rate=SAMPLE_RATE,
            padding=True,
            return_attention_mask=self._masks,
            return_tensors="pt",
        )
        kwargs = {
            self._input_name: inputs[self._input_name].to(self.config.device, self.compute_dtype())
        }
        if self._masks:
            kwargs["attention_mask"] = inputs["attention_mask"].to(self.config.device)
        self._local.hidden = None
        with contextlib.suppress(_StopForward):  # raised by the hook once block L has run
            self._model(**kwargs)
        hidden = self._local.hidden
        self._local.hidden = None
        if hidden is None:
            raise RuntimeError(f"{self.config.name}: layer {self.config.layer} was never reached")
        # Device tensors: Encoder.encode moves them to the host only when asked.
        return [hidden[i, : self.n_frames(len(c))] for i, c in enumerate(clips)]


def _read_config(source: str) -> dict | None:
    """A model folder's config.json as a dict, without weights (None: a hub id
    whose config is not cached; the caller then builds the encoder)."""
    import json

    if storage.is_local(source) and not os.path.isdir(storage.local_path(source)):
        transformers = _transformers_or_hint()
        try:  # a hub id: transformers' cache (offline when HF_HUB_OFFLINE=1)
            return transformers.AutoConfig.from_pretrained(source).to_dict()
        except (OSError, ValueError):
            return None
    uri = storage.join(source, "config.json")
    if not storage.exists(uri):
        raise ValueError(f"hf: encoder folder has no config.json: {source}")
    return json.loads(storage.read_text(uri))


def _conv_frame_rate(cfg: dict) -> float | None:
    """Frames per second of a wav2vec 2.0-style model (conv feature encoder on samples)."""
    strides = cfg.get("conv_stride")
    if not strides:
        return None
    return SAMPLE_RATE / float(np.prod(strides))


# Models whose inputs are 10 ms filter-bank frames stacked by 2 (SeamlessM4T's
# feature extractor): 50 frames per second.
_STACKED_FBANK_TYPES = {"wav2vec2-bert": 50.0}


def describe_hf(config: EncoderConfig, *, source: str) -> FeatureIdentity | None:
    """An ``hf:`` encoder's identity from its config.json (None: build to find out)."""
    cfg = _read_config(source)
    if cfg is None:
        return None
    model_type = cfg.get("model_type")
    if model_type == "whisper":
        from tokenizer.encoders.whisper import describe_whisper

        return describe_whisper(config, depth=cfg["encoder_layers"], d_model=cfg["d_model"])
    if config.mode is not None:
        raise ValueError("mode applies to Whisper encoders only")
    frame_rate = _STACKED_FBANK_TYPES.get(model_type) or _conv_frame_rate(cfg)
    depth, dim = cfg.get("num_hidden_layers"), cfg.get("hidden_size")
    if frame_rate is None or not depth or not dim:
        return None
    layer = resolve_layer(config.name, config.layer, int(depth))
    return FeatureIdentity(
        encoder=config.name, layer=layer, mode=None, frame_rate=frame_rate, dim=int(dim)
    )


@register_encoder("hf:", describe=describe_hf)
def build_hf_encoder(config: EncoderConfig, *, source: str) -> Encoder:
    """Any transformers speech encoder from a folder or hub id (see module doc)."""
    transformers = _transformers_or_hint()
    path = materialize(source)
    hf_config = transformers.AutoConfig.from_pretrained(path)
    if hf_config.model_type == "whisper":
        from tokenizer.encoders.whisper import WhisperEncoder

        model = transformers.AutoModel.from_pretrained(path, attn_implementation="sdpa")
        return WhisperEncoder(config, model.get_encoder())
    return HFSpeechEncoder(config, path)
