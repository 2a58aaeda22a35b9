"""``gs://`` with no way to authenticate: the job fails at once with one line
saying how to authenticate, instead of after ~2 minutes of client retries."""

from __future__ import annotations

import os

import pytest

from datastore import storage
from tests.pipelines.test_runners import free_port
from tests.reliability.helpers import assert_no_traceback, speechtok

CREDENTIAL_VARS = ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG")


@pytest.fixture
def no_credentials(tmp_path):
    """This environment minus every credential source google.auth looks at: no key
    file, an empty HOME (no gcloud login), and a metadata server address that
    refuses connections (so the test also holds on a GCE machine)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(HOME=str(home), GCE_METADATA_IP=f"127.0.0.1:{free_port()}")
    env["GCE_METADATA_HOST"] = env["GCE_METADATA_IP"]
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["bitext", "--input", "gs://bkt/wm/*.tsv.gz", "--min-score", "1.04", "--out", "{tmp}/o"],
        ["bitext", "--input", "{tmp}/wm/*.tsv.gz", "--min-score", "1.04", "--out", "gs://bkt/o"],
        [
            "tokenize", "--format", "fleurs", "--input", "gs://bkt/fleurs", "--encoder", "mfcc",
            "--codebook", "gs://bkt/cb", "--out", "{tmp}/t",
        ],
    ],
    ids=["gs-input", "gs-output", "tokenize-gs-input"],
)  # fmt: skip
def test_gs_without_credentials_fails_in_one_line(no_credentials, tmp_path, args):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = speechtok(*argv, timeout=60, env=no_credentials)
    assert proc.returncode != 0
    assert_no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    for hint in ("gcloud auth application-default login", "GOOGLE_APPLICATION_CREDENTIALS"):
        assert hint in lines[0]
    assert "STORAGE_EMULATOR_HOST" in lines[0]


def test_probe_accepts_each_credential_source(tmp_path, monkeypatch):
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{free_port()}")
    with pytest.raises(storage.GcsCredentialsError, match="no Google Cloud credentials"):
        storage.check_gcs_credentials()
    key = tmp_path / "key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    with pytest.raises(storage.GcsCredentialsError, match=r"key\.json is not a file"):
        storage.check_gcs_credentials()
    key.write_text("{}")
    storage.check_gcs_credentials()  # a key file: fine (its validity is Google's to judge)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    adc = tmp_path / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text("{}")
    storage.check_gcs_credentials()  # `gcloud auth application-default login` was run
    adc.unlink()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    storage.check_gcs_credentials()  # an emulator needs none
