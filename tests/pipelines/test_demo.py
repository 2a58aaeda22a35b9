"""The demo's every stage, with tiny models (the full demo is `make demo`)."""

import json

from pipelines.cli import main


def test_tiny_demo_runs_every_stage(tmp_path, capsys):
    assert main(["demo", "--tiny", "--out", str(tmp_path), "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "| fr | seen" in out and "| sw | unseen" in out and "where things are" in out
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert list(summary["times"]) == [
        "synthesize mini-FLEURS",
        "fit codebook",
        "tokenize",
        "bitext",
        "train",
        "evaluate",
    ]
    peaks = list(summary["peak_rss_mb"].values())  # per stage, the peak so far: monotonic
    assert list(summary["peak_rss_mb"]) == list(summary["times"])
    assert peaks == sorted(peaks) and peaks[0] > 50 and "peak RSS so far" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report == summary["report"] and report["seen"] == ["de", "fr"]
    for stage in ("codebook", "tokens", "bitext"):
        index = json.loads((tmp_path / stage / "_index.json").read_text())
        assert index["counts"]["input"] == index["counts"]["accepted"] + index["counts"]["rejected"]
    assert (tmp_path / "run" / "model.safetensors").exists()
    # dev is tokenized for every language (settings are chosen there); train only for seen.
    folders = (tmp_path / "tokens" / "tokens").glob("corpus=*/split=*/lang=*")
    got = {(f.parent.name.split("=")[1], f.name.split("=")[1]) for f in folders}
    seen = {(s, x) for x in ("fr", "de") for s in ("train", "dev", "test")}
    assert got == seen | {(s, x) for x in ("sw", "en") for s in ("dev", "test")}
    # The demo's training choices (chosen on dev) reach the run.
    from pipelines.demo import DemoConfig

    chosen = DemoConfig()
    trained = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert trained["audio_init"] == chosen.audio_init
    assert trained["loss"]["spread_out_weight"] == chosen.spread_out_weight
    assert trained["lr"] == chosen.lr and trained["data"]["length_jitter"] == chosen.length_jitter
    assert trained["precision"] == "fp32"  # --precision reaches the run
    assert trained["cache_chunk"] == chosen.cache_chunk  # the gradient cache bounds train's peak
