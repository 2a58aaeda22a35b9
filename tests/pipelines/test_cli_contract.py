"""The CLI as a contract: flags, choices and defaults do not change by accident.

``data/cli_flags.json`` records every command's flags (required, choices,
whether it takes a value) and ``data/effective_configs.json`` the config each
command builds from a few command lines (:mod:`tests.pipelines.cli_capture`).
Both were recorded from the hand-written parser before the flags were
generated from the configs; a deliberate change updates the JSON and is listed
in the README. The generated flags are also checked against the configs
themselves: every user field has a flag whose default is the field's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from datastore import settings
from pipelines import cli
from tests.pipelines.cli_capture import CASES, as_plain_dict, built_config

DATA = Path(__file__).parent / "data"
TRAIN_ARGV = CASES["train"]


def describe(parser: argparse.ArgumentParser) -> dict:
    out = {}
    for leaf in cli._leaf_parsers(parser):
        flags = {}
        for action in leaf._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flags[max(action.option_strings, key=len)] = {
                "required": bool(action.required),
                "choices": sorted(map(str, action.choices)) if action.choices else None,
                "takes_value": action.nargs != 0,
            }
        out[leaf.prog.replace("speechtok ", "")] = flags
    return out


def test_every_command_keeps_its_recorded_flags():
    """In a fresh interpreter: choices read from registries (formats, k-means
    backends) must not include what other tests register."""
    import subprocess
    import sys

    code = (
        "import json; from pipelines import cli; "
        "from tests.pipelines.test_cli_contract import describe; "
        "print(json.dumps(describe(cli.build_parser())))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    recorded = json.loads((DATA / "cli_flags.json").read_text())
    assert json.loads(out) == recorded


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_command_builds_the_recorded_config(case):
    recorded = json.loads((DATA / "effective_configs.json").read_text())
    assert built_config(CASES[case]) == recorded[case]


def _configs(command: str) -> list:
    """The config classes whose user fields make ``command``'s flags."""
    from corpora.bitext import BitextConfig
    from corpora.synth.synth import SynthConfig
    from datastore.shards import WriteConfig
    from pipelines.demo import DemoConfig
    from pipelines.job_configs import BitextJobConfig, FitCodebookJobConfig, TokenizeJobConfig
    from tokenizer.audio_config import AudioConfig
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig
    from trainer.configs import DualEncoderConfig, LossConfig, TrainConfig
    from trainer.data import DataConfig
    from trainer.embed import EmbedConfig
    from trainer.evaluate import EvalConfig
    from trainer.search import SearchConfig

    speech = [ManifestConfig, AudioConfig, EncoderConfig]
    return {
        "tokenize": [*speech, TokenizeJobConfig, WriteConfig],
        "fit-codebook": [*speech, FitCodebookJobConfig],
        "train": [DataConfig, TrainConfig, DualEncoderConfig, LossConfig],
        "bitext": [BitextJobConfig, BitextConfig, WriteConfig],
        "eval": [EvalConfig],
        "embed": [EmbedConfig],
        "search": [SearchConfig],
        "corpus synth": [SynthConfig],
        "demo": [DemoConfig],
    }[command]


@pytest.mark.parametrize(
    "command",
    [
        "tokenize",
        "fit-codebook",
        "train",
        "bitext",
        "eval",
        "embed",
        "search",
        "corpus synth",
        "demo",
    ],
)
def test_every_user_setting_is_a_flag(command):
    parser = cli.command_parser(cli.build_parser(), command)
    flags = {s for a in parser._actions for s in a.option_strings}
    for cls in _configs(command):
        for field in settings.user_fields(cls):
            assert settings.flag_name(field) in flags, f"{cls.__name__}.{field.name}"


def test_defaults_live_once_in_the_configs():
    """The config a command line without optional flags builds equals the one
    the Python API builds from the same required values."""
    from corpora.bitext import BitextConfig
    from datastore.shards import WriteConfig
    from pipelines.job_configs import BitextJobConfig
    from pipelines.trainer_commands import build_train_config
    from trainer.configs import DualEncoderConfig, LossConfig, TrainConfig
    from trainer.data import DataConfig
    from trainer.embed import EmbedConfig
    from trainer.evaluate import EvalConfig
    from trainer.search import SearchConfig

    built = build_train_config(cli.build_parser().parse_args(TRAIN_ARGV))
    api = TrainConfig(
        out="O", model=DualEncoderConfig(), data=DataConfig(shards="S"), loss=LossConfig()
    )
    assert built == api
    bitext = BitextJobConfig(
        input="I/*.tsv.gz", out="O", filters=BitextConfig(min_score=1.04), write=WriteConfig()
    )
    assert built_config(CASES["bitext"]) == as_plain_dict(bitext)
    assert built_config(CASES["eval"]) == as_plain_dict(EvalConfig(run="R", shards="S", out="O"))
    embed = EmbedConfig(run="R", out="O", shards="S")
    assert built_config(CASES["embed-shards"]) == as_plain_dict(embed)
    search = SearchConfig(run="R", index="I", query_text="q", lang="fr")
    assert built_config(CASES["search"]) == as_plain_dict(search)
    from pipelines.job_configs import FitCodebookJobConfig, TokenizeJobConfig
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.manifests import ManifestConfig

    manifest = ManifestConfig(format="jsonl", input="M.jsonl")
    encoder = EncoderConfig(name="mfcc")
    tokenize = TokenizeJobConfig(manifest=manifest, encoder=encoder, codebook="C", out="O")
    assert built_config(CASES["tokenize"]) == as_plain_dict(tokenize)
    fit = FitCodebookJobConfig(manifest=manifest, encoder=encoder, k=16, out="O")
    assert built_config(CASES["fit-codebook"]) == as_plain_dict(fit)
    from pipelines.demo import DemoConfig

    assert built_config(["demo"]) == as_plain_dict(DemoConfig())
    tiny = dataclasses.replace(DemoConfig.tiny("demo-out"), steps=3)
    assert built_config(["demo", "--tiny", "--steps", "3"]) == as_plain_dict(tiny)


def test_the_python_api_and_the_cli_agree_on_the_bitext_ratio():
    """Was 0.2 from the CLI and 0.0 from ``DataConfig`` for the same input."""
    from pipelines.trainer_commands import build_train_config
    from trainer.data import DataConfig

    built = build_train_config(cli.build_parser().parse_args([*TRAIN_ARGV, "--bitext", "B"]))
    assert built.data.bitext_ratio == DataConfig(shards="S", bitext="B").bitext_ratio == 0.2
    assert DataConfig(shards="S").bitext_ratio == 0.0


def test_generated_flags_types_and_help(capsys):
    """A made-up config through the generator: each kind of field becomes the
    flag a user expects, and a flag left out keeps the field's default."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Example:
        name: str = settings.setting(help="a name")
        count: int = settings.setting(3, help="how many")
        ratio: float | None = settings.setting(None, help="a share", default_text="worked out")
        langs: tuple[str, ...] | None = settings.setting(None, help="languages")
        fast: bool = settings.setting(False, help="go fast")
        safe: bool = settings.setting(True, help="stay safe")
        mode: str = settings.setting("a", choices=lambda: ("a", "b"), help="a mode")
        internal: int = 7

    parser = argparse.ArgumentParser(prog="x")
    settings.add_flags(parser, Example, required=("name",))
    args = parser.parse_args(["--name", "n", "--langs", "fr, de,", "--fast", "--no-safe"])
    assert settings.values(Example, args) == {
        "name": "n",
        "langs": ("fr", "de"),
        "fast": True,
        "safe": False,
    }
    assert Example(**settings.values(Example, args)).count == 3
    assert not hasattr(args, "internal") and "--internal" not in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "n", "--mode", "c"])
    assert "invalid choice" in capsys.readouterr().err
    text = " ".join(parser.format_help().split())
    assert "how many (default: 3)" in text and "a share (default: worked out)" in text
