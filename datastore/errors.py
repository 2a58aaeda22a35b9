"""Errors that every layer may raise and the CLI reports."""

from __future__ import annotations


class UsageError(ValueError):
    """Arguments that cannot work; reported as one line with exit status 2."""
