"""Check the flags passed through to Beam against Beam's own option definitions.

Beam reads its flags late (when a pipeline asks for an option view) and only
warns about one it does not know: ``--runer DataflowRunner`` used to print a
warning and run the whole job on the local runner, and a bad value
(``--direct_running_mode multi_procesing``) surfaced as Beam's argparse usage
text from inside ``pipeline.run()``. :func:`check` parses the pass-through
flags up front with one parser built from every registered
``PipelineOptions`` subclass (the same set Beam's ``get_all_options`` uses),
so a typo or a bad value is a usage error (one line, exit status 2) before any
input is read or any output touched.

Example::

    check(["--runner", "DataflowRunner", "--experiments", "a", "--experiments=b"])  # ok
    check(["--runer", "DataflowRunner"])  # BeamOptionError: ... did you mean --runner?
"""

from __future__ import annotations

import argparse
import difflib
import functools
import importlib
from collections.abc import Iterable, Sequence

from datastore.errors import UsageError


class BeamOptionError(UsageError):
    """An unknown pass-through flag or a value Beam's option definitions refuse."""


def _option_classes() -> list[type]:
    """Every registered ``PipelineOptions`` subclass, one per class name, as Beam's
    ``PipelineOptions.get_all_options`` collects them."""
    from apache_beam.options.pipeline_options import PipelineOptions

    unique: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        unique.setdefault(str(cls), cls)
    return list(unique.values())


def _parser_class():
    from apache_beam.options import pipeline_options

    # Beam's parser adds ``add_value_provider_argument`` (templated options);
    # errors raise instead of printing Beam's usage text and exiting.
    base = getattr(pipeline_options, "_BeamArgumentParser", argparse.ArgumentParser)

    class _RaisingParser(base):
        def error(self, message):
            raise BeamOptionError(
                f"Beam option {' '.join(message.split()).removeprefix('argument ')}"
            )

    return _RaisingParser


@functools.lru_cache(maxsize=4)
def _parser(classes: tuple[type, ...]) -> argparse.ArgumentParser:
    parser = _parser_class()(add_help=False, allow_abbrev=False, exit_on_error=False)
    for cls in classes:
        cls._add_argparse_args(parser)
    return parser


def beam_parser() -> argparse.ArgumentParser:
    """One parser holding every Beam pipeline option registered in this process."""
    return _parser(tuple(_option_classes()))


def option_names() -> list[str]:
    """Every ``--flag`` Beam accepts (each alias listed)."""
    return sorted(s for s in beam_parser()._option_string_actions if s.startswith("--"))


def _import_runner_module(args: Sequence[str]) -> bool:
    """Import the module of a runner named by its full path (``--runner pkg.mod.Cls``),
    so that option classes it defines (e.g. ``DaskOptions``) are registered."""
    runner = None
    for i, arg in enumerate(args):
        if arg == "--runner" and i + 1 < len(args):
            runner = args[i + 1]
        elif arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
    if not runner or "." not in runner:
        return False
    try:
        importlib.import_module(runner.rsplit(".", 1)[0])
    except ImportError:
        return False
    return True


def _norm(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_").lower()


def closest(flag: str, candidates: Iterable[str]) -> str | None:
    """The valid flag nearest ``flag``, ignoring ``-``/``_`` (``--temp-location`` ->
    ``--temp_location``); None when nothing is close."""
    by_norm: dict[str, str] = {}
    for c in candidates:
        by_norm.setdefault(_norm(c), c)
    name = _norm(flag.split("=", 1)[0])
    if name in by_norm:
        return by_norm[name]
    hits = difflib.get_close_matches(name, list(by_norm), n=1, cutoff=0.6)
    return by_norm[hits[0]] if hits else None


def _check_runner(namespace: argparse.Namespace) -> None:
    """A runner Beam cannot resolve fails only when the pipeline runs: say it now."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = getattr(namespace, "runner", None)
    if not runner or "." in runner:
        return  # unset (the caller's default) or a class path Beam imports itself
    known = {n.lower(): n for n in StandardOptions.KNOWN_RUNNER_NAMES}
    if runner.lower() in known or runner.lower() + "runner" in known:
        return
    hits = difflib.get_close_matches(runner.lower(), list(known), n=1, cutoff=0.6)
    hint = (
        f"did you mean {known[hits[0]]}?" if hits else f"known: {', '.join(sorted(known.values()))}"
    )
    raise BeamOptionError(f"unknown Beam runner {runner!r} ({hint})")


def _value_error(exc: argparse.ArgumentError, parser: argparse.ArgumentParser) -> BeamOptionError:
    """``argument --x: invalid choice: ...`` as one line, with the nearest choice."""
    message = " ".join(str(exc).split()).removeprefix("argument ")
    action = next(
        (a for a in parser._actions if exc.argument_name == "/".join(a.option_strings)), None
    )
    if action is not None and action.choices and "invalid choice" in message:
        bad = message.split("invalid choice: ", 1)[1].split(" (choose", 1)[0].strip("'\"")
        hits = difflib.get_close_matches(bad, [str(c) for c in action.choices], n=1)
        if hits:
            message += f"; did you mean {hits[0]}?"
    return BeamOptionError(f"Beam option {message}")


def check(beam_args: Sequence[str], own_flags: Iterable[str] = (), command: str = "") -> None:
    """Raise :class:`BeamOptionError` (a usage error) unless every flag in
    ``beam_args`` is a Beam pipeline option with a value Beam accepts.

    ``own_flags``: the command's own flags, offered as "did you mean" too (a
    misspelt ``--dedupe`` lands here because the command's parser did not know it).
    """
    args = list(beam_args)
    if not args:
        return
    parser = beam_parser()
    try:
        namespace, unknown = parser.parse_known_args(args)
        if unknown and _import_runner_module(args):
            parser = beam_parser()
            namespace, unknown = parser.parse_known_args(args)
    except argparse.ArgumentError as exc:
        raise _value_error(exc, parser) from None
    flags = [a for a in unknown if a.startswith("-") and a != "--"]
    where = f"speechtok {command} flag" if command else "speechtok flag"
    if flags:
        flag = flags[0].split("=", 1)[0]
        suggestion = closest(flag, [*own_flags, *option_names()])
        hint = f"did you mean {suggestion}?" if suggestion else f"not a {where} or Beam option"
        raise BeamOptionError(f"unknown flag {flag} ({hint})")
    if unknown:
        raise BeamOptionError(f"unexpected argument {unknown[0]!r}")
    _check_runner(namespace)
