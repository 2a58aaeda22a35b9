"""The k-means backend registry: ``@register_backend("name")`` on a fit function.

A backend takes float32 ``[n, d]`` rows, ``k``, a ``seed`` and its own options
(validated by a frozen config dataclass next to it) and returns a
:class:`FitResult`. ``kmeans.fit`` turns that into a :class:`~kmeans.Codebook`.

Example::

    @register_backend("mine")
    def fit_mine(x, k, *, seed, **opts) -> FitResult:
        return FitResult(centroids=x[:k].copy())
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BACKENDS: dict[str, Callable[..., FitResult]] = {}


@dataclass(frozen=True, kw_only=True)
class FitResult:
    """What a backend found. ``inertia=None`` lets ``fit`` measure it exactly."""

    centroids: np.ndarray
    inertia: float | None = None
    n_iter: int | None = None
    converged: bool | None = None
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    history: tuple[float, ...] = ()  # inertia after each assignment pass, if known
    history_s: tuple[float, ...] = ()  # seconds since the start, at each of those passes


def register_backend(name: str) -> Callable[[Callable[..., FitResult]], Callable[..., FitResult]]:
    def decorate(fn: Callable[..., FitResult]) -> Callable[..., FitResult]:
        if BACKENDS.get(name, fn) is not fn:
            raise ValueError(f"k-means backend {name!r} is already registered")
        BACKENDS[name] = fn
        return fn

    return decorate


def get_backend(name: str) -> Callable[..., FitResult]:
    try:
        return BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown k-means backend {name!r}; known: {known}") from None


def make_config(config_cls: type, opts: dict[str, Any], backend: str):
    """``config_cls(**opts)`` with a clear error for an option the backend lacks."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for k-means backend {backend!r}; known: {sorted(known)}"
        )
    return config_cls(**opts)
