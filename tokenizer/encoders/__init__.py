"""Speech encoders by name: ``mfcc``, ``whisper-base``, ``hf:<dir or hub id>``.

A registry filled by decorator, so the CLI and the Beam jobs build any encoder
from the one string a user typed (``--encoder whisper-base --layer 3``) and a
new encoder is one decorated class, never an edit to a lookup table. Modules
stay light: torch and transformers are imported when an encoder is built.

Example::

    from tokenizer.encoders import build_encoder
    enc = build_encoder("whisper-base", layer=3, mode="unpadded")
    feats = enc.encode([wave_16k])[0]          # float32 [enc.n_frames(len(wave_16k)), 512]
    enc.identity()  # {"encoder": "whisper-base", "layer": 3, "mode": "unpadded", ...}
"""

from __future__ import annotations

from collections.abc import Callable

from tokenizer.encoders.base import Encoder, EncoderConfig

__all__ = [
    "Encoder",
    "EncoderConfig",
    "available_encoders",
    "build_encoder",
    "register_encoder",
]

# name -> factory(config, argument) ; names ending in ":" take an argument (hf:<dir>).
_REGISTRY: dict[str, Callable[..., Encoder]] = {}


def register_encoder(name: str):
    """Class decorator: ``@register_encoder("mfcc")``. A name ending in ``:``
    (``"hf:"``) is a prefix whose remainder is passed to the factory as
    ``source``."""

    def decorate(factory):
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_encoders() -> list[str]:
    """Registered names, sorted; names ending in ':' take an argument."""
    return sorted(_REGISTRY)


def build_encoder(spec: str, **config_overrides) -> Encoder:
    """Build an encoder from its spec and optional config fields (``layer``,
    ``device``, ``dtype``, ``max_batch_seconds``, ``mode``, ``threads``). ``None`` values
    mean "the default", so CLI flags can be passed through unchanged."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"encoder spec must be a non-empty string, got {spec!r}")
    overrides = {k: v for k, v in config_overrides.items() if v is not None}
    config = EncoderConfig(name=spec, **overrides)
    if spec in _REGISTRY and not spec.endswith(":"):
        encoder = _REGISTRY[spec](config)
    else:
        prefix, sep, source = spec.partition(":")
        if not (sep and f"{prefix}:" in _REGISTRY):
            raise ValueError(
                f"unknown encoder {spec!r}; available: {', '.join(available_encoders())} "
                "(hf: takes a local dir or hub id, e.g. hf:/models/hubert)"
            )
        if not source:
            raise ValueError(f"encoder spec {spec!r} needs a source after {prefix + ':'!r}")
        encoder = _REGISTRY[f"{prefix}:"](config, source=source)
    if config.threads is not None and encoder.uses_torch:
        import torch

        torch.set_num_threads(config.threads)  # process-wide, on purpose (see EncoderConfig)
    return encoder


# Registration happens on import; these modules import nothing heavy at top level.
from tokenizer.encoders import hf, mfcc, whisper  # noqa: E402, F401
