"""A registry fills itself from its package's files: a reader or an encoder is
one new file, no list to edit."""

from __future__ import annotations

import sys

from datastore.discover import import_modules
from tokenizer.encoders import available_encoders
from tokenizer.manifests import available_formats


def test_every_module_of_a_package_registers_itself(tmp_path, monkeypatch):
    package = tmp_path / "toyplugins"
    package.mkdir()
    (package / "__init__.py").write_text("FOUND = []\n")
    for name in ("alpha", "beta", "_private"):
        (package / f"{name}.py").write_text(
            f"from toyplugins import FOUND\nFOUND.append({name!r})\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert import_modules("toyplugins") == ["alpha", "beta"]
        assert sys.modules["toyplugins"].FOUND == ["alpha", "beta"]
    finally:
        for name in [m for m in sys.modules if m.startswith("toyplugins")]:
            del sys.modules[name]


def test_the_built_in_readers_and_encoders_come_from_their_files():
    assert available_formats() == [
        "covost", "fleurs", "hf-parquet", "jsonl", "kaldi", "lhotse", "nemo",
    ]  # fmt: skip
    assert {"mfcc", "whisper-base", "hf:"} <= set(available_encoders())
