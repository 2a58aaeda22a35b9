"""Untrusted artifacts: a codebook, a checkpoint or a model folder from
elsewhere can be wrong or hostile. A tampered codebook is refused by its
sha256; nothing is ever unpickled (a hostile pickle's payload never runs);
and no code path in the repo can unpickle outside the explicit
``--trust-pickle`` importer (checked on the source's syntax tree)."""

from __future__ import annotations

import ast
import io as stdio
import json
import os
from pathlib import Path

import numpy as np
import pytest

from kmeans import Codebook
from kmeans.codebook import CodebookIntegrityError
from pipelines.cli import main
from tests.reliability.catalogue import SR, encoded, tone

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("datastore", "pipelines", "tokenizer", "kmeans", "trainer", "benchmarks")
TRUST_PICKLE_MODULE = "kmeans/import_pickle.py"  # the one explicit, opt-in pickle import


class Payload:
    """Unpickling this creates a folder: if the folder exists, the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def codebook_dir(tmp_path):
    x = np.random.default_rng(0).standard_normal((200, 39)).astype(np.float32)
    cb = Codebook(x[:8]).with_metadata(encoder="mfcc", layer=0, mode=None, frame_rate=50.0)
    folder = tmp_path / "cb"
    cb.save(str(folder))
    return folder


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "a.wav").write_bytes(encoded(tone(1.0, SR), SR, "WAV", "PCM_16"))
    line = {"id": "a", "audio": "a.wav", "text": "x", "lang": "fr", "split": "test"}
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n")
    return tmp_path / "m.jsonl"


def tokenize_status(manifest, codebook, out) -> int:
    return main(
        [
            "tokenize", "--format", "jsonl", "--input", str(manifest), "--encoder", "mfcc",
            "--codebook", str(codebook), "--out", str(out),
        ]
    )  # fmt: skip


def test_tampered_codebook_is_refused_before_any_work(codebook_dir, manifest, tmp_path, capsys):
    assert tokenize_status(manifest, codebook_dir, tmp_path / "ok") == 0  # intact: fine
    capsys.readouterr()
    arr = np.load(codebook_dir / "centroids.npy", allow_pickle=False)
    arr[3, 5] += 1e-3  # one value nudged, a valid .npy of the right shape and dtype
    np.save(codebook_dir / "centroids.npy", arr, allow_pickle=False)
    out = tmp_path / "out"
    assert tokenize_status(manifest, codebook_dir, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0] and "centroids.npy" in err[0]
    assert not out.exists()


def test_pickled_npy_never_runs(codebook_dir, manifest, tmp_path, capsys):
    marker = tmp_path / "pwned"
    buf = stdio.BytesIO()
    np.save(buf, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    (codebook_dir / "centroids.npy").write_bytes(buf.getvalue())
    with pytest.raises(CodebookIntegrityError, match=r"not a plain \.npy"):
        Codebook.load(str(codebook_dir))
    assert tokenize_status(manifest, codebook_dir, tmp_path / "out") == 2
    assert "not a plain .npy" in capsys.readouterr().err
    assert not marker.exists()


def test_checkpoint_pickle_never_runs(tmp_path, monkeypatch):
    """A run folder whose safetensors file was replaced by a torch pickle."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch

    from trainer import checkpoint
    from trainer.configs import DualEncoderConfig
    from trainer.model import build_model

    run = str(tmp_path / "run")
    model = build_model(DualEncoderConfig(llm="debug"), 16)
    checkpoint.save_model(run, model, step=0)
    config = checkpoint.run_config(model, codebook={"id": "cb"}, step=0, train=None)
    checkpoint.write_config(run, config)
    _, _, loaded = checkpoint.load_run(run)  # the genuine folder loads
    assert loaded["step"] == 0
    marker = tmp_path / "pwned"
    torch.save({"weights": Payload(marker)}, str(tmp_path / "run" / checkpoint.MODEL_FILE))
    with pytest.raises(Exception, match=r"(?i)deserializ|header"):
        checkpoint.load_run(run)
    assert not marker.exists()


def test_hf_model_folder_pickle_never_runs(tmp_path, monkeypatch):
    """``--encoder hf:<dir>`` with a hostile pytorch_model.bin: transformers loads
    .bin files with ``weights_only=True``, which refuses the payload."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch

    from tests.tokenizer.encoders.helpers import save_tiny_wav2vec2
    from tokenizer.encoders import build_encoder

    folder = tmp_path / "w2v"
    save_tiny_wav2vec2(str(folder))
    build_encoder(f"hf:{folder}")  # the genuine folder loads
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"weights": Payload(marker)}, str(folder / "pytorch_model.bin"))
    with pytest.raises(Exception, match=r"(?i)weights_only|unpickl|unsupported global"):
        build_encoder(f"hf:{folder}")
    assert not marker.exists()


# -- the source scan -----------------------------------------------------------
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve"}
LOADERS = {"load", "loads", "Unpickler", "open"}  # shelve.open unpickles too


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_false(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def unsafe_loads(source: str, filename: str = "<src>") -> list[str]:
    """Calls that can unpickle: ``pickle/joblib/dill... .load``, ``torch.load``
    without ``weights_only=True``, ``np.load(allow_pickle=<not False>)``,
    ``pandas.read_pickle``, and ``from pickle import load``-style imports."""
    tree = ast.parse(source, filename)
    modules: dict[str, str] = {}  # local name -> module it names
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            for alias in node.names:
                if root in PICKLE_MODULES and alias.name in LOADERS:
                    found.append(
                        f"{filename}:{node.lineno}: from {node.module} import {alias.name}"
                    )
                if root == "torch" and alias.name == "load":
                    found.append(f"{filename}:{node.lineno}: from torch import load")
                if root == "pandas" and alias.name == "read_pickle":
                    found.append(f"{filename}:{node.lineno}: from pandas import read_pickle")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not isinstance(owner, ast.Name) or owner.id not in modules:
            continue
        module, attr = modules[owner.id].split(".")[0], node.func.attr
        kwargs = {k.arg: k.value for k in node.keywords}
        where = f"{filename}:{node.lineno}: {owner.id}.{attr}"
        if module in PICKLE_MODULES and attr in LOADERS:
            found.append(where)
        elif module == "torch" and attr == "load" and not _is_true(kwargs.get("weights_only")):
            found.append(f"{where} without weights_only=True")
        elif module == "numpy" and attr == "load" and "allow_pickle" in kwargs:
            if not _is_false(kwargs["allow_pickle"]):
                found.append(f"{where} with allow_pickle not False")
        elif module == "pandas" and attr == "read_pickle":
            found.append(where)
    return found


def test_scanner_finds_every_unsafe_form():
    unsafe = [
        "import pickle\npickle.load(f)",
        "import pickle as p\np.loads(b)",
        "from pickle import loads",
        "import joblib\njoblib.load('km.bin')",
        "import dill\ndill.load(f)",
        "import torch\ntorch.load('x.pt')",
        "import torch\ntorch.load('x.pt', weights_only=False)",
        "import torch as t\nt.load('x.pt', map_location='cpu')",
        "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
        "import pandas as pd\npd.read_pickle('x.pkl')",
        "import shelve\nshelve.open('db')",
    ]
    for snippet in unsafe:
        assert unsafe_loads(snippet), snippet
    safe = [
        "import torch\ntorch.load('x.pt', weights_only=True)",
        "import numpy as np\nnp.load('x.npy', allow_pickle=False)",
        "import numpy as np\nnp.load('x.npy')",  # numpy's default refuses pickles
        "import json\njson.load(f)",
        "from safetensors.torch import load\nload(b)",
    ]
    for snippet in safe:
        assert not unsafe_loads(snippet), snippet


def test_no_unpickling_outside_the_trust_pickle_importer():
    files = sorted(p for d in SCANNED for p in (REPO / d).rglob("*.py"))
    assert len(files) > 40  # the scan did look at the code
    found = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        hits = unsafe_loads(path.read_text(encoding="utf-8"), rel)
        if rel == TRUST_PICKLE_MODULE:
            # The importer may unpickle, and only behind its explicit trust flag.
            text = path.read_text(encoding="utf-8")
            assert hits and "if trust_pickle is not True" in text
            continue
        found += hits
    assert not found, "unpickling code paths:\n" + "\n".join(found)
