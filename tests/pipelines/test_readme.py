"""The user guide (README.md and docs/*.md) as a user reads it: its command
lines parse (speechtok's flags and the installed Beam's options), it names only
files the repository has, the README stays a short guide, and the worker
requirements it documents install the tested pins (constraints.txt)."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from pipelines import beam_options, cli

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
GUIDE = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 300  # a user guide a newcomer finishes; the rest is in docs/
WORKER_REQUIREMENTS = REPO / "requirements-worker.txt"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)


def readme_commands() -> list[list[str]]:
    """Every ``speechtok COMMAND ...`` line of the guide's code blocks
    (continuations joined), except synopsis lines (``[optional]`` and
    ``(a | b)`` placeholders)."""
    commands = []
    for block in (b for doc in GUIDE for b in code_blocks(doc.read_text())):
        for line in block.replace("\\\n", " ").splitlines():
            synopsis = "[" in line or " | " in line
            if line.startswith("speechtok ") and not synopsis:
                argv = shlex.split(line, comments=True)[1:]
                if not argv[0].startswith("-"):  # not ``speechtok --version``
                    commands.append(argv)
    return commands


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` lines of a requirements file."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            out[canonicalize_name(req.name)] = spec.version
    return out


def setup_install_requires() -> list[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "INSTALL_REQUIRES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no INSTALL_REQUIRES")


# -- command lines ----------------------------------------------------------------


def test_installed_beam_is_the_pinned_one():
    """The option checks below validate against the Beam that constraints.txt pins."""
    import apache_beam

    assert apache_beam.__version__ == pins(REPO / "constraints.txt")["apache-beam"]


def test_readme_command_lines_parse():
    from apache_beam.options.pipeline_options import PipelineOptions

    commands = readme_commands()
    with_runner = [argv for argv in commands if "--runner" in argv]
    runners = {argv[argv.index("--runner") + 1] for argv in with_runner}
    assert {"DataflowRunner", "FlinkRunner"} <= runners  # the Dataflow and Flink sections
    parser = cli.build_parser()
    for argv in commands:
        args, extra = parser.parse_known_args(argv)  # SystemExit on a missing required flag
        key = cli._command_key(args)
        if key not in cli.BEAM_JOBS:
            assert extra == [], argv
            continue
        beam_options.check(extra, command=key)
        # Beam itself: a bad value exits (argparse), an unknown flag would be "retained".
        options = PipelineOptions(extra)
        known = options.get_all_options()
        assert set(options.get_all_options(retain_unknown_options=True)) == set(known), extra
        flags = {a.split("=", 1)[0] for a in extra if a.startswith("--")}
        assert {f"--{name}" for name in known} >= flags, flags


def test_readme_is_a_short_guide():
    assert len(README.splitlines()) <= README_MAX_LINES
    linked = set(re.findall(r"\]\((docs/[\w.]+\.md)\)", README))
    assert linked == {str(p.relative_to(REPO)) for p in GUIDE[1:]}  # every doc is reachable


@pytest.mark.parametrize("doc", GUIDE, ids=lambda p: p.name)
def test_guide_stands_alone(doc):
    """No document outside the repository; every file a page names exists
    (a link resolves against the page's folder, a `name` against the root)."""
    text = doc.read_text()
    assert "DESIGN" not in text
    ignored = [
        line.strip().strip("/")
        for line in (REPO / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    top = {p.name for p in REPO.iterdir() if p.is_dir()}
    basenames = set()  # every file's name, the venv and other dot folders left out
    for _, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        basenames.update(files)
    links = re.findall(r"\]\(([^)#]+)\)", text)
    missing = [link for link in links if not (doc.parent / link).exists()]
    # Files a job or an export writes (placeholder folders like DIR/, or named
    # as what a folder holds) are not the repository's.
    written = {"encode.py"}
    for name in re.findall(r"`([\w./-]+)`", text):
        if name.split("/")[0].isupper() or name in written:
            continue
        is_file = name.endswith((".py", ".md", ".txt", ".in", ".toml")) or name in {
            "Dockerfile",
            "Makefile",
        }
        # Under a git-ignored folder (benchmarks/results/...): a run writes it,
        # a clean clone does not have it.
        under_ignored = any(name.strip("/") == i or name.startswith(i + "/") for i in ignored)
        if not (is_file or name.split("/")[0] in top) or under_ignored:
            continue
        if not ((REPO / name).exists() or ("/" not in name and name in basenames)):
            missing.append(name)
    assert not missing, missing


# -- worker requirements -----------------------------------------------------------


def test_worker_requirements_are_the_tested_pins():
    tested = pins(REPO / "constraints.txt")
    worker = pins(WORKER_REQUIREMENTS)
    assert Version(worker["torch"]).local == "cpu"  # the CPU build ...
    assert f"--extra-index-url {PYTORCH_CPU_INDEX}" in WORKER_REQUIREMENTS.read_text()
    for name, version in worker.items():  # ... of exactly the tested versions
        assert Version(version).public == tested[name], name
    # Everything the package asks for on a worker is pinned, within setup.py's range.
    for line in setup_install_requires():
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name != "apache-beam":  # the worker's SDK container holds the launcher's Beam
            assert req.specifier.contains(worker[name], prereleases=True), line


def test_sdist_carries_the_pin_files(tmp_path):
    """What Beam stages for ``--setup_file`` (an sdist) holds both requirement files."""
    subprocess.run(
        [
            *(sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)),
            *("sdist", "--dist-dir", str(tmp_path)),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (sdist,) = tmp_path.glob("speechtok-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(n).name for n in tar.getnames() if n.count("/") == 1}
    assert {"constraints.txt", "requirements-worker.txt", "setup.py"} <= names


def _pytorch_index_reachable() -> bool:
    """Whether PyTorch's own wheel index resolves here (users' workers reach it;
    some build machines reach only PyPI)."""
    import socket

    try:
        socket.getaddrinfo("download.pytorch.org", 443)
    except OSError:
        return False
    return True


def test_worker_requirements_resolve_to_the_tested_pins(tmp_path):
    """What pip would install from the file, in a clean environment (dry run:
    nothing is installed): every package at its constraints.txt pin, nothing
    unpinned, no CUDA package, and the tested torch (CPU) and transformers.

    Where PyTorch's index cannot be reached, the file is resolved without its
    torch lines (the ``+cpu`` build lives only there): everything else must
    still resolve to the pins without pulling any torch or CUDA package, and
    ``test_worker_requirements_are_the_tested_pins`` checks the torch line itself.
    """
    with_torch = _pytorch_index_reachable()
    lines = WORKER_REQUIREMENTS.read_text().splitlines()
    if not with_torch:
        lines = [ln for ln in lines if not ln.startswith(("torch==", "--extra-index-url"))]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q"),
            *("--retries", "0", "--timeout", "60", "--report", str(report)),
            *("-r", str(requirements)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resolved = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    tested = pins(REPO / "constraints.txt")
    if with_torch:
        torch = Version(resolved["torch"])
        assert (torch.public, torch.local) == (tested["torch"], "cpu")
    else:
        assert "torch" not in resolved  # nothing else pulls a (CUDA) torch in
    assert resolved["transformers"] == tested["transformers"]
    cuda = [n for n in resolved if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    assert not cuda, cuda
    # pip freeze leaves setuptools out of constraints.txt; torch requires it.
    unpinned = sorted(set(resolved) - set(tested) - {"setuptools"})
    assert not unpinned, unpinned
    off = {n: v for n, v in resolved.items() if n in tested and Version(v).public != tested[n]}
    assert not off, off


@pytest.mark.parametrize("line", ["--flink_version 1.18", "--runer DataflowRunner"])
def test_the_old_readme_flags_are_refused(line):
    with pytest.raises(beam_options.BeamOptionError):
        beam_options.check(shlex.split(line))
