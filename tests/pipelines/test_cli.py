import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines import cli
from tests.pipelines.test_outcome import write_corpus

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
    from pipelines.trainer_commands import build_train_config

    argv = ["train", "--shards", "s", "--out", "o", "--lr", "3e-5", "--length-jitter", "0.3"]
    args, _ = cli.build_parser().parse_known_args([*argv, "--max-speech-tokens", "384"])
    config = build_train_config(args)
    assert config.lr == 3e-5 and config.data.length_jitter == 0.3
    assert config.model.max_speech_tokens == 384
    defaults = build_train_config(cli.build_parser().parse_known_args(argv[:5])[0])
    assert (defaults.data.length_jitter, defaults.model.max_speech_tokens) == (0.0, 1024)


LEVERS = ("cache_chunk", "layout", "param_dtype", "pad_multiple", "optimizer", "compile")


def test_trainer_levers_reach_the_train_config_and_default_to_todays_step(capsys):
    import dataclasses

    from pipelines.trainer_commands import build_train_config
    from trainer.configs import TrainConfig

    argv = ["train", "--shards", "s", "--out", "o"]
    levers = ["--cache-chunk", "64", "--layout", "varlen", "--param-dtype", "bf16"]
    levers += ["--pad-multiple", "64", "--optimizer", "foreach", "--compile"]
    config = build_train_config(cli.build_parser().parse_known_args([*argv, *levers])[0])
    assert tuple(getattr(config, k) for k in LEVERS) == (64, "varlen", "bf16", 64, "foreach", True)
    # Without the flags: TrainConfig's own defaults (the padded fp32-weight fused-AdamW step).
    defaults = build_train_config(cli.build_parser().parse_known_args(argv)[0])
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert {k: getattr(defaults, k) for k in LEVERS} == {k: fields[k] for k in LEVERS}
    assert (defaults.layout, defaults.param_dtype, defaults.optimizer) == (
        "padded",
        "fp32",
        "fused",
    )
    # Unusable combinations are one-line usage errors before anything is read.
    for bad, reason in (
        (["--param-dtype", "bf16", "--precision", "fp32"], "param_dtype bf16 needs precision bf16"),
        (["--cache-chunk", "0"], "cache_chunk must be >= 1"),
        (["--pad-multiple", "0"], "pad_multiple must be >= 1"),
    ):
        assert cli.main([*argv, *bad]) == 2
        assert reason in capsys.readouterr().err


# -- the front door: flags checked before anything runs -----------------------

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory):
    """A readable JSONL manifest of three tones and an mfcc codebook: enough for
    ``tokenize`` to run and write its output if nothing stopped it."""
    import kmeans

    folder = write_corpus(tmp_path_factory.mktemp("front"))
    frames = np.random.default_rng(0).standard_normal((64, 39)).astype(np.float32)
    cb = kmeans.fit(frames, 4, seed=0).with_metadata(
        encoder="mfcc", layer=0, mode=None, frame_rate=50.0
    )
    cb.save(str(folder / "cb"))
    return folder


def speechtok(*argv, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,  # a hang, not a speed check
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--runer", "DataflowRunner"], "unknown flag --runer (did you mean --runner?)"),
        (
            ["--temp-location", "gs://b/t"],
            "unknown flag --temp-location (did you mean --temp_location?)",
        ),
        (["--num-workers", "4"], "unknown flag --num-workers (did you mean --num_workers?)"),
        (["--dedupe"], "unknown flag --dedupe (did you mean --dedup?)"),
        (
            ["--direct_running_mode", "multi_procesing"],
            "Beam option --direct_running_mode: invalid choice: 'multi_procesing' (choose from "
            "'in_memory', 'multi_threading', 'multi_processing'); did you mean multi_processing?",
        ),
        (["--flink_version=1.18"], "Beam option --flink_version: invalid choice: '1.18'"),
        (
            ["--runner", "DataflowRuner"],
            "unknown Beam runner 'DataflowRuner' (did you mean DataflowRunner?)",
        ),
    ],
)
def test_bad_flag_is_a_usage_error_before_the_job_runs(job_inputs, tmp_path, flags, message):
    out = tmp_path / "out"
    proc = speechtok(
        "tokenize", "--format", "jsonl", "--input", job_inputs / "good.jsonl", "--encoder", "mfcc",
        "--codebook", job_inputs / "cb", "--out", out, *flags,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"speechtok tokenize: error: {message}")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""  # no "tokenize: N manifest source(s)", no summary
    assert not out.exists()  # no output folder, no _index.json


def test_missing_manifest_is_a_usage_error(job_inputs, tmp_path):
    out = tmp_path / "out"
    missing = job_inputs / "nope.jsonl"
    proc = speechtok(
        "fit-codebook", "--format", "jsonl", "--input", missing, "--encoder", "mfcc",
        "--k", "4", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"speechtok fit-codebook: error: --input {missing}: no such file\n"
    assert not out.exists()


def test_missing_fleurs_folder_is_a_usage_error(tmp_path, capsys):
    argv = ["tokenize", "--format", "fleurs", "--input", str(tmp_path / "none"), "--encoder"]
    assert cli.main([*argv, "mfcc", "--codebook", "c", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--input {tmp_path / 'none'}: no such folder")


def test_good_beam_flags_pass_the_check_and_reach_beam():
    """``--flag=value``, repeated ``--experiments``, a Dataflow service option with ``;``."""
    from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, GoogleCloudOptions

    from pipelines import beam_options, common

    flags = [
        "--experiments", "a", "--experiments=b", "--direct_running_mode=multi_processing",
        "--direct_num_workers", "2", "--temp_location", "gs://b/tmp",
        "--dataflow_service_options", "worker_accelerator=type:nvidia-l4;count:1",
    ]  # fmt: skip
    beam_options.check(flags)
    options = common.pipeline_options(flags)
    assert options.view_as(DebugOptions).experiments == ["a", "b"]
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.view_as(GoogleCloudOptions).dataflow_service_options == [
        "worker_accelerator=type:nvidia-l4;count:1"
    ]


def test_the_checker_knows_every_runner_family():
    from pipelines import beam_options

    names = set(beam_options.option_names())
    assert {
        "--runner", "--project", "--temp_location", "--setup_file", "--requirements_file",
        "--sdk_container_image", "--num_workers", "--machine_type", "--experiments",
        "--flink_master", "--flink_version", "--parallelism", "--spark_master_url",
        "--job_endpoint", "--environment_type", "--direct_running_mode", "--prism_location",
    } <= names  # fmt: skip


def test_library_callers_get_the_check_too():
    """``run(config, beam_args)`` goes through ``common.pipeline_options``."""
    from pipelines import common

    with pytest.raises(cli.UsageError, match="did you mean --runner"):
        common.pipeline_options(["--runer", "DataflowRunner"])


@pytest.mark.parametrize("where", ["before", "after", "none"])
def test_verbose_before_or_after_the_command(where):
    argv = {"before": ["-v", *TOKENIZE_ARGV], "after": [*TOKENIZE_ARGV, "-v"]}.get(where)
    args, extra = cli.build_parser().parse_known_args(argv or TOKENIZE_ARGV)
    assert extra == []  # never handed to Beam
    assert args.verbose is (where != "none")
    args, _ = cli.build_parser().parse_known_args(["train", "--shards", "s", "--out", "o", "-v"])
    assert args.verbose is True


def setup_py_version() -> str:
    import re

    text = (REPO / "setup.py").read_text()
    return re.search(r'^\s*version="([^"]+)"', text, re.M).group(1)


def test_version_prints_the_package_version():
    proc = speechtok("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"speechtok {setup_py_version()}\n"


def test_version_falls_back_to_setup_py(monkeypatch):
    from importlib import metadata

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert cli.version() == setup_py_version()


def test_max_reject_fraction_must_be_a_fraction(capsys):
    for bad in ("1.5", "-0.1", "x"):
        with pytest.raises(SystemExit) as exc:
            cli.main([*TOKENIZE_ARGV, "--max-reject-fraction", bad])
        assert exc.value.code == 2
    assert "--max-reject-fraction" in capsys.readouterr().err


def test_train_help_names_every_backbone_and_no_stale_demo_setting(capsys):
    from dataclasses import fields

    from pipelines.demo import DemoConfig
    from trainer.backbones import backbone_names

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in backbone_names() if name != "hf")
    demo = {f.name.replace("_", "-"): f.default for f in fields(DemoConfig)}
    for said in re.finditer(r"\(the demo uses ([^)]+)\)", text):
        flag = re.findall(r"  ?--([a-z-]+) [A-Z_{]", text[: said.start()])[-1]
        assert str(demo[flag]) == said[1], (flag, said[1], demo.get(flag))
