"""The manifest-format flags of the speech jobs: they reach the reader's config,
and arguments that cannot work stop with exit status 2 and one line before
anything is read."""

from __future__ import annotations

import pytest

from pipelines import cli

BASE = ["--encoder", "mfcc", "--codebook", "cb", "--out", "o"]


def configs(*argv: str):
    args, _ = cli.build_parser().parse_known_args(["tokenize", *argv, *BASE])
    return cli.speech_configs(args)[0]


def test_format_flags_reach_the_manifest_config():
    m = configs(
        "--format",
        "hf-parquet",
        "--input",
        "x.parquet",
        "--lang",
        "fr",
        "--split",
        "dev",
        "--columns",
        "text=sentence, lang=locale",
        "--confine-audio-to",
        "/data",
    )
    assert (m.format, m.lang, m.split, m.confine_audio_to) == ("hf-parquet", "fr", "dev", "/data")
    assert m.columns == (("text", "sentence"), ("lang", "locale"))
    assert configs("--format", "kaldi", "--input", "d", "--allow-commands").allow_commands
    assert configs("--format", "nemo", "--input", "m.json").default_split == "train"


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--format", "fleurs", "--input", "d", "--split", "dev"], "own split"),
        (["--format", "nemo", "--input", "m", "--columns", "text=t"], "hf-parquet only"),
        (["--format", "hf-parquet", "--input", "x", "--columns", "words"], "KEY=COLUMN"),
        (["--format", "hf-parquet", "--input", "x", "--columns", "txt=a"], "unknown keys"),
        (["--format", "nemo", "--input", "m", "--lang", "fr/x"], "not a language code"),
        (
            ["--format", "kaldi", "--input", "d", "--allow-commands", "--confine-audio-to", "/"],
            "confined",
        ),
    ],
)
def test_unusable_format_flags_are_usage_errors(argv, says):
    with pytest.raises(cli.UsageError, match=says):
        configs(*argv)


def test_missing_inputs_stop_before_the_job(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("r a.wav\n")
    (data / "text").write_text("r bonjour\n")
    argv = ["tokenize", "--format", "kaldi", "--input", str(data), *BASE[:2]]
    argv += ["--codebook", str(tmp_path / "cb"), "--out", str(tmp_path / "o")]
    assert cli.main([*argv, "--audio-root", str(tmp_path / "absent")]) == 2
    assert "--audio-root" in capsys.readouterr().err
    missing = ["tokenize", "--format", "kaldi", "--input", str(tmp_path / "nope"), *BASE]
    assert cli.main(missing) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_format_that_needs_a_language_says_so(tmp_path, mfcc_codebook, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("r a.wav\n")
    (data / "text").write_text("r bonjour\n")
    argv = ["tokenize", "--format", "kaldi", "--input", str(data), "--encoder", "mfcc"]
    argv += ["--codebook", str(mfcc_codebook), "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    assert "give --lang" in capsys.readouterr().err
    assert not (tmp_path / "o" / "_index.json").exists()
