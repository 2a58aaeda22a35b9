"""Speech encoders by name: ``mfcc``, ``whisper-base``, ``hf:<dir or hub id>``.

A registry filled by decorator, so the CLI and the Beam jobs build any encoder
from the one string a user typed (``--encoder whisper-base --layer 3``) and a
new encoder is one decorated class, never an edit to a lookup table. Modules
stay light: torch and transformers are imported when an encoder is built.

Example::

    from tokenizer.encoders import build_encoder
    enc = build_encoder("whisper-base", layer=3, mode="unpadded")
    feats = enc.encode([wave_16k])[0]          # float32 [enc.n_frames(len(wave_16k)), 512]
    enc.identity()  # FeatureIdentity(encoder="whisper-base", layer=3, mode="unpadded", ...)
"""

from __future__ import annotations

from collections.abc import Callable

from datastore.identity import FeatureIdentity
from tokenizer.encoders.base import Encoder, EncoderConfig

__all__ = [
    "Encoder",
    "EncoderConfig",
    "available_encoders",
    "build_encoder",
    "build_from_config",
    "describe_config",
    "describe_encoder",
    "register_encoder",
]

# name -> factory(config, argument) ; names ending in ":" take an argument (hf:<dir>).
_REGISTRY: dict[str, Callable[..., Encoder]] = {}
# name -> describe(config[, source]) -> FeatureIdentity, without loading weights.
_DESCRIBERS: dict[str, Callable[..., FeatureIdentity | None]] = {}


def register_encoder(name: str, *, describe: Callable[..., FeatureIdentity | None] | None = None):
    """Class decorator: ``@register_encoder("mfcc")``. A name ending in ``:``
    (``"hf:"``) is a prefix whose remainder is passed to the factory as
    ``source``. ``describe(config[, source=...])`` returns what
    :meth:`Encoder.identity` would, from configs only (no weights), or None
    when it cannot tell; :func:`describe_encoder` then builds the encoder."""

    def decorate(factory):
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = factory
        if describe is not None:
            _DESCRIBERS[name] = describe
        return factory

    return decorate


def available_encoders() -> list[str]:
    """Registered names, sorted; names ending in ':' take an argument."""
    return sorted(_REGISTRY)


PLUGINS_ENV = "SPEECHTOK_PLUGINS"


def load_plugins() -> None:
    """Import the modules named in ``$SPEECHTOK_PLUGINS`` (comma-separated), for
    the encoders they register. Why an environment variable: a Beam job's
    worker processes inherit it, so an encoder defined outside this package (a
    benchmark's, a user's) is found in every worker, not only in the launcher."""
    import importlib
    import os

    for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        importlib.import_module(name)


def _lookup(spec: str) -> tuple[str, dict]:
    """Registry key and extra factory arguments for a spec (``hf:/dir`` -> ``hf:``, source)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"encoder spec must be a non-empty string, got {spec!r}")
    if spec not in _REGISTRY and spec.partition(":")[0] + ":" not in _REGISTRY:
        load_plugins()
    if spec in _REGISTRY and not spec.endswith(":"):
        return spec, {}
    prefix, sep, source = spec.partition(":")
    if not (sep and f"{prefix}:" in _REGISTRY):
        raise ValueError(
            f"unknown encoder {spec!r}; available: {', '.join(available_encoders())} "
            "(hf: takes a local dir or hub id, e.g. hf:/models/hubert)"
        )
    if not source:
        raise ValueError(f"encoder spec {spec!r} needs a source after {prefix + ':'!r}")
    return f"{prefix}:", {"source": source}


def _config(spec: str, overrides: dict) -> EncoderConfig:
    return EncoderConfig(name=spec, **{k: v for k, v in overrides.items() if v is not None})


def build_encoder(spec: str, **config_overrides) -> Encoder:
    """Build an encoder from its spec and optional config fields (``layer``,
    ``device``, ``dtype``, ``max_batch_seconds``, ``mode``, ``threads``). ``None`` values
    mean "the default", so CLI flags can be passed through unchanged."""
    return build_from_config(_config(spec, config_overrides))


def build_from_config(config: EncoderConfig) -> Encoder:
    """The encoder a whole :class:`EncoderConfig` names."""
    key, extra = _lookup(config.name)
    encoder = _REGISTRY[key](config, **extra)
    if config.threads is not None and encoder.uses_torch:
        import torch

        torch.set_num_threads(config.threads)  # process-wide, on purpose (see EncoderConfig)
    return encoder


def describe_encoder(spec: str, **config_overrides) -> FeatureIdentity:
    """What ``build_encoder(spec, ...).identity()`` returns, read from configs
    without loading weights where the encoder knows how (every built-in one
    does), so a job's launcher checks a codebook in a second instead of
    loading the model it will not run."""
    return describe_config(_config(spec, config_overrides))


def describe_config(config: EncoderConfig) -> FeatureIdentity:
    """:func:`describe_encoder` for a whole :class:`EncoderConfig`."""
    key, extra = _lookup(config.name)
    describe = _DESCRIBERS.get(key)
    identity = describe(config, **extra) if describe else None
    return build_from_config(config).identity() if identity is None else identity


def check_identity(encoder: Encoder, expected: FeatureIdentity) -> None:
    """Raise when a built encoder is not what :func:`describe_encoder` promised."""
    actual = encoder.identity()
    if actual != expected:
        raise RuntimeError(
            f"{encoder.config.name}: the loaded model gives {actual}, the launcher planned "
            f"{expected}: the model changed between planning and loading"
        )


# Every module of this package is imported (nothing heavy at their top level):
# encoders register themselves.
from datastore.discover import import_modules  # noqa: E402

import_modules(__name__)
