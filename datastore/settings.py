"""Config fields that describe themselves, so the CLI is generated from them.

A field declared with :func:`setting` carries its help text (and optionally
its choices, flag name and metavar) next to its default; :func:`add_flags`
turns such fields into command-line flags and :func:`values` reads them back. Defaults therefore live once, in
the config dataclass: a flag the user does not give leaves the field's
default, whatever the entry point (CLI, Python API, benchmarks). A field
declared without :func:`setting` is internal and has no flag.

Flags use ``argparse.SUPPRESS`` as the parser's default, so a flag left out is
absent from the parsed namespace and the config keeps its own default;
``--help`` states that default, read from the field. Types: ``bool`` fields
are switches (``--x`` for a False default, ``--x/--no-x`` otherwise);
``tuple[str, ...]`` and ``frozenset[str]`` take a comma-separated list;
``int``, ``float`` and ``str`` (optional or not) take one value.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable
from typing import Any

HELP = "speechtok.help"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Iterable[str] | Callable[[], Iterable[str]] | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    default_text: str | None = None,
    parse: Callable[[str], Any] | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field a user may set from the command line.

    ``choices``: the allowed values, or a function returning them (a registry
    listing, read when the parser is built); ``flag``: the option name when it
    is not ``--field-name``; ``default_text``: how ``--help`` states a default
    that is worked out rather than fixed (``None`` fields); ``parse``: turns the
    flag's text into the value when the annotation alone cannot say how (the
    config may take the text and parse it itself, raising ``ValueError``).
    """
    meta = {
        HELP: {
            "help": help,
            "choices": choices,
            "flag": flag,
            "metavar": metavar,
            "default_text": default_text,
            "parse": parse,
        }
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def user_fields(cls) -> list[dataclasses.Field]:
    """The fields of ``cls`` declared with :func:`setting`."""
    return [f for f in dataclasses.fields(cls) if HELP in f.metadata]


def _csv(value: str) -> tuple[str, ...] | None:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


def _kind(cls, name: str) -> str:
    """``bool``, ``int``, ``float``, ``str``, ``csv`` or ``csvset`` for a field's annotation."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args and typing.get_origin(hint) in (typing.Union, type(int | None)) else hint
    origin = typing.get_origin(base)
    if origin is tuple:
        return "csv"
    if origin is frozenset:
        return "csvset"
    if base in (bool, int, float, str):
        return base.__name__
    raise TypeError(f"{cls.__name__}.{name}: no flag type for {hint!r}")


def flag_name(field: dataclasses.Field) -> str:
    return field.metadata[HELP]["flag"] or "--" + field.name.replace("_", "-")


def default_of(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _help(field: dataclasses.Field) -> str:
    meta = field.metadata[HELP]
    default = default_of(field)
    if meta["default_text"]:
        stated = meta["default_text"]
    elif default is dataclasses.MISSING or default is None or default is False:
        return meta["help"]
    else:
        stated = ",".join(default) if isinstance(default, tuple | frozenset) else str(default)
    return f"{meta['help']} (default: {stated})"


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls,
    *,
    only: tuple[str, ...] | None = None,
    skip: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
    added: set[str] | None = None,
) -> None:
    """One flag per user field of ``cls`` (``only``: just these, e.g. the members of
    a mutually exclusive group; ``skip``: leave these out; ``required``: the user
    must give them). ``added``: flag names already on this parser: a field two
    configs share (``seed``) gets one flag, and a field given its own place
    (a group) is not added twice."""
    for field in user_fields(cls):
        name = flag_name(field)
        if only is not None and field.name not in only:
            continue
        if field.name in skip or (added is not None and name in added):
            continue
        meta = field.metadata[HELP]
        kind = "parsed" if meta.get("parse") else _kind(cls, field.name)
        kwargs: dict = {"dest": field.name, "default": argparse.SUPPRESS, "help": _help(field)}
        if kind == "bool":
            if default_of(field):
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["action"] = "store_true"
        else:
            kwargs["type"] = {
                "parsed": meta.get("parse"),
                "csv": _csv,
                "csvset": lambda v: frozenset(_csv(v) or ()),
                "int": int,
                "float": float,
                "str": str,
            }[kind]
            choices = meta["choices"]
            if choices is not None:
                kwargs["choices"] = tuple(choices() if callable(choices) else choices)
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            if kind in ("csv", "csvset"):
                kwargs["metavar"] = meta["metavar"] or "A,B"
        if field.name in required:
            kwargs["required"] = True
        parser.add_argument(name, **kwargs)
        if added is not None:
            added.add(name)


def values(cls, args: argparse.Namespace) -> dict:
    """The user fields of ``cls`` that ``args`` sets (flags given on the command line)."""
    return {f.name: getattr(args, f.name) for f in user_fields(cls) if hasattr(args, f.name)}
