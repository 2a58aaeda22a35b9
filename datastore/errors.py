"""Errors that every layer may raise and the CLI reports."""

from __future__ import annotations


class UsageError(ValueError):
    """Arguments that cannot work; reported as one line with exit status 2."""


class JobFailed(RuntimeError):
    """The job ran but did not produce usable output; reported as one line, exit 1."""
