"""Portability: the tokenize job on Beam's portability layer (PortableRunner
against the local job service, LOOPBACK: what Flink and Dataflow use) and on
the FnApiRunner with real worker processes; shards load in pyarrow and HF."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pyarrow.dataset as ds
import pytest

from pipelines.cli import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job_service():
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("local job service did not start")
    yield f"localhost:{port}"
    proc.kill()
    proc.wait()


def tokenize_args(corpus, codebook, out):
    return [
        "tokenize",
        "--format",
        "fleurs",
        "--input",
        str(corpus / "fleurs"),
        "--encoder",
        "mfcc",
        "--codebook",
        str(codebook),
        "--out",
        str(out),
    ]


def rows(out):
    table = ds.dataset(str(out / "tokens"), format="parquet", partitioning="hive").to_table()
    return sorted(
        zip(table.column("id").to_pylist(), table.column("tokens").to_pylist(), strict=True)
    )


@pytest.fixture(scope="module")
def reference(mini_corpus, mfcc_codebook, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    assert main(tokenize_args(mini_corpus, mfcc_codebook, out)) == 0
    return rows(out)


def test_portable_runner_loopback(mini_corpus, mfcc_codebook, tmp_path, job_service, reference):
    args = tokenize_args(mini_corpus, mfcc_codebook, tmp_path)
    assert (
        main(
            [
                *args,
                "--runner",
                "PortableRunner",
                "--job_endpoint",
                job_service,
                "--environment_type",
                "LOOPBACK",
            ]
        )
        == 0
    )
    assert rows(tmp_path) == reference


def test_fnapi_multi_processing(mini_corpus, mfcc_codebook, tmp_path, reference):
    args = tokenize_args(mini_corpus, mfcc_codebook, tmp_path)
    assert main([*args, "--direct_running_mode=multi_processing", "--direct_num_workers=2"]) == 0
    assert rows(tmp_path) == reference


def test_shards_load_in_hf_datasets(mini_corpus, mfcc_codebook, tmp_path, reference):
    import datasets

    assert main([*tokenize_args(mini_corpus, mfcc_codebook, tmp_path), "--dedup"]) == 0
    # The folder's dataset card (README.md) names the splits.
    dsets = datasets.load_dataset(str(tmp_path), cache_dir=str(tmp_path / "hf"))
    assert sum(d.num_rows for d in dsets.values()) == len(reference)
    dset = dsets["train"]
    assert {"id", "tokens", "durations", "text"} <= set(dset.column_names)
    first = dset[0]
    assert sum(first["durations"]) == first["n_frames"]
