import subprocess
import sys

import pytest

from pipelines import cli

SUBCOMMANDS = ["corpus", "fit-codebook", "tokenize", "bitext", "train", "eval", "demo"]


def test_help_lists_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("argv", [["corpus", "synth"], *[[c] for c in SUBCOMMANDS[1:]]])
def test_each_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: speechtok" in capsys.readouterr().out


def test_missing_required_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["tokenize", "--format", "fleurs"])
    assert exc.value.code == 2
    assert "required" in capsys.readouterr().err


def test_unknown_flag_refused_outside_beam_jobs(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "--run", "r", "--shards", "s", "--out", "o", "--runner", "X"])
    assert exc.value.code == 2


TOKENIZE_ARGV = ["tokenize", "--format", "jsonl", "--input", "m.jsonl", "--encoder", "mfcc"]
TOKENIZE_ARGV += ["--codebook", "c", "--out", "o"]


def test_speech_flags_reach_the_audio_config():
    parser = cli.build_parser()
    args, _ = parser.parse_known_args([*TOKENIZE_ARGV, "--max-seconds", "12", "--split-long"])
    _, audio, _ = cli.speech_configs(args)
    assert (audio.max_seconds, audio.split_long) == (12.0, True)
    args, _ = parser.parse_known_args(TOKENIZE_ARGV)
    assert cli.speech_configs(args)[1].split_long is False


def test_train_flags_reach_the_train_config():
    from trainer.cli import build_train_config

    argv = ["train", "--shards", "s", "--out", "o", "--lr", "3e-5", "--length-jitter", "0.3"]
    args, _ = cli.build_parser().parse_known_args([*argv, "--max-speech-tokens", "384"])
    config = build_train_config(args)
    assert config.lr == 3e-5 and config.data.length_jitter == 0.3
    assert config.model.max_speech_tokens == 384
    defaults = build_train_config(cli.build_parser().parse_known_args(argv[:5])[0])
    assert (defaults.data.length_jitter, defaults.model.max_speech_tokens) == (0.0, 1024)
