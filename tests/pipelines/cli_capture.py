"""The config each command builds from a command line, without running it.

Each command hands its config to one library function; :func:`built_config`
replaces that function for the call and returns the config as a dict.
"""

from __future__ import annotations

import dataclasses
from unittest import mock

from pipelines import cli

# command -> (module of the function the command calls, its name)
RECEIVERS = {
    "train": ("trainer.train", "train"),
    "bitext": ("pipelines.bitext", "run"),
    "eval": ("trainer.evaluate", "evaluate"),
    "embed": ("trainer.embed", "embed"),
    "search": ("trainer.search", "search"),
    "corpus": ("pipelines.corpus_commands", "synthesize_corpus"),
    "tokenize": ("pipelines.tokenize", "plan"),
    "fit-codebook": ("pipelines.fit_codebook", "plan"),
    "demo": ("pipelines.demo", "run_demo"),
}
SPEECH = ["--format", "jsonl", "--input", "M.jsonl", "--encoder", "mfcc"]

CASES = {
    "train": ["train", "--shards", "S", "--out", "O"],
    "train-bitext": ["train", "--shards", "S", "--out", "O", "--bitext", "B"],
    "bitext": ["bitext", "--input", "I/*.tsv.gz", "--min-score", "1.04", "--out", "O"],
    "bitext-langs": [
        "bitext",
        "--input",
        "I",
        "--min-score",
        "1",
        "--out",
        "O",
        "--langs",
        "fr,en",
    ],
    "eval": ["eval", "--run", "R", "--shards", "S", "--out", "O"],
    "embed-shards": ["embed", "--run", "R", "--shards", "S", "--out", "O"],
    "embed-text": ["embed", "--run", "R", "--text", "T.jsonl", "--out", "O"],
    "search": ["search", "--run", "R", "--index", "I", "--query-text", "q", "--lang", "fr"],
    "corpus": ["corpus", "synth", "--out", "O", "--langs", "fr,de"],
    "corpus-all": ["corpus", "synth", "--out", "O", "--all"],
    "tokenize": ["tokenize", *SPEECH, "--codebook", "C", "--out", "O"],
    "tokenize-options": [
        "tokenize", "--format", "fleurs", "--input", "F", "--encoder", "whisper-base",
        "--layer", "3", "--dtype", "bfloat16", "--max-seconds", "20", "--split-long",
        "--langs", "fr,de", "--splits", "train", "--codebook", "C", "--out", "O", "--dedup",
        "--skip-existing", "--rows-per-shard", "100", "--decode-threads", "1",
    ],
    "fit-codebook": ["fit-codebook", *SPEECH, "--k", "16", "--out", "O"],
    "fit-codebook-options": [
        "fit-codebook", *SPEECH, "--k", "64", "--out", "O", "--sample-frames", "1000",
        "--max-frames-per-utt", "20", "--downsample", "2", "--backend", "sklearn",
        "--save-sample", "--seed", "3", "--device", "cpu", "--threads", "1",
    ],
}  # fmt: skip


class _Captured(BaseException):  # not an Exception: the CLI reports those
    def __init__(self, config):
        self.config = config


def as_plain_dict(config) -> dict:
    """A config as JSON would give it back (tuples and sets as lists)."""
    d = dataclasses.asdict(config)

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, frozenset | set):
            return sorted(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(d)


def built_config(argv: list[str]) -> dict:
    import importlib

    module, name = RECEIVERS[argv[0]]
    target = importlib.import_module(module)

    def receive(config, *args, **kwargs):
        raise _Captured(config)

    # Output locks and input checks are not what is compared here.
    with (
        mock.patch.object(target, name, receive),
        mock.patch("pipelines.corpus_commands.choose_languages", lambda c: None),
        mock.patch.object(cli, "check_input", lambda *a: None),
        mock.patch("datastore.outlock.hold_output_lock", _no_lock),
    ):
        try:
            cli.main(argv)
        except _Captured as got:
            return as_plain_dict(got.config)
    raise AssertionError(f"{argv}: the command did not reach {module}.{name}")


class _no_lock:
    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
