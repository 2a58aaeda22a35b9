"""DDP for real: ``torchrun`` with 2 CPU processes and the gloo backend, through the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from trainer.checkpoint import load_run

REPO = Path(__file__).resolve().parents[2]


def test_torchrun_two_processes_gloo(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "pipelines.cli", "train", "--shards", shards, "--llm", "debug"]
    cmd += ["--out", str(run), "--steps", "2", "--batch-size", "4", "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # rank 0 reports, rank 1 stays quiet
    assert json.loads(summaries[0])["step"] == 2
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # Each rank trained on its own 4 pairs; the loss saw all 8 (gathered embeddings).
    assert [m["pairs"] for m in metrics] == [8, 8]
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["data"]["index"] == 2
    model, _, config = load_run(str(run))
    assert config["step"] == 2
    assert torch.isfinite(model.embed_speech([[1, 2]], ["fr"])).all()
