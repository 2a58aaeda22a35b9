"""The GPU benchmark: one command, offline, on any CUDA machine.

No pretrained weights: random-weight models with the exact architectures of
Whisper base and Gemma 3 270M, built from ``benchmarks/configs/*.json``
(speed does not depend on the weights). Audio: the MP3 clips of a corpus made
beforehand with ``speechtok corpus synth`` (``--corpus``), listed under
distinct ids until the manifest holds ``--hours`` of audio. Steps (``--steps``):

- ``env``: GPU, GEMM ceilings (8192^3 in bf16, tf32, fp32), cores;
- ``encoder``: ``Encoder.encode`` of Whisper base layer 3 (unpadded), real
  time factor by dtype and ``max_batch_seconds``;
- ``agree``: token agreement per frame: CUDA vs CPU in fp32, bf16 vs fp32
  on CUDA (the job's default dtype on CUDA is bf16 only at >= 95 %);
- ``tokenize`` / ``fit``: the jobs through the CLI on the manifest, whole
  process timed (start-up included), GPU utilisation sampled by
  ``nvidia-smi`` every 0.2 s; "while encoding" = between the first and the
  last sample above 0 %;
- ``trainer``: the lever table of ``benchmarks.trainer_levers`` on the random
  Gemma (18 layers, bf16): s/step, tokens/s, MFU on real and processed
  tokens and peak memory per setting, up to 512 pairs and a 4,096-pair
  gradient-cache batch.

Prints a table and writes JSON (``--json``). Targets (issue: GPU workers):
tokenize >= 2,500x real time with >= 60 % GPU utilisation while encoding,
fit-codebook >= 1,500x, both on >= 30 h of MP3 with 16 cores and one H100.

Usage (on the CUDA machine; Beam and friends may come from carried wheels)::

    speechtok corpus synth --out corpus --langs fr,de,es,it --per-lang 40 --voices 2  # beforehand
    python -m benchmarks.gpu --corpus corpus --hours 30
    python -m benchmarks.gpu --corpus corpus --device cpu --hours 0.2 --steps encoder,tokenize
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._harness import CONFIGS, ROOT, make_gemma, python_path, write_json

STEPS = ("env", "encoder", "agree", "tokenize", "fit", "trainer")
TARGETS = {"tokenize_x_real_time": 2500.0, "tokenize_gpu_util": 60.0, "fit_x_real_time": 1500.0}


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_env(args, work: Path) -> dict:
    import torch

    info = {"torch": torch.__version__, "cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if not info["cuda"]:
        return info
    info["gpu"] = torch.cuda.get_device_name(0)
    n = 8192
    for name, dtype, tf32 in (("bf16", torch.bfloat16, False), ("tf32", torch.float32, True),
                              ("fp32", torch.float32, False)):  # fmt: skip
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        for _ in range(3):
            a @ b
        sync("cuda")
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync("cuda")
        info[f"gemm_{name}_tflops"] = round(2 * n**3 * 10 / (time.perf_counter() - start) / 1e12)
    torch.backends.cuda.matmul.allow_tf32 = False
    return info


def make_models(work: Path, gemma: bool) -> dict:
    """Random-weight Whisper base (an ``hf:`` folder) and, when ``gemma``,
    Gemma 3 270M (+ a byte tokenizer)."""
    import torch
    from transformers import AutoConfig, WhisperFeatureExtractor, WhisperModel

    whisper = work / "whisper-base-random"
    if not (whisper / "config.json").exists():
        config = AutoConfig.for_model(**json.loads((CONFIGS / "whisper-base.json").read_text()))
        torch.manual_seed(0)
        WhisperModel(config).save_pretrained(whisper)
        WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(whisper)
    if not gemma:
        return {"whisper": str(whisper)}
    return {"whisper": str(whisper), "gemma": make_gemma(work)}


def make_manifest(corpus: Path, work: Path, hours: float) -> tuple[Path, float]:
    """The corpus' MP3 clips listed under distinct ids until ``hours`` of audio."""
    import soundfile as sf

    clips = sorted(corpus.resolve().glob("cv/*/clips/*.mp3"))
    if not clips:
        raise SystemExit(f"no cv/*/clips/*.mp3 under {corpus}: run speechtok corpus synth first")
    seconds = [sf.info(str(c)).duration for c in clips]
    lines, total, copy = [], 0.0, 0
    while total < hours * 3600:
        for clip, s in zip(clips, seconds, strict=True):
            meta = {"id": f"{clip.stem}#{copy}", "audio": str(clip.relative_to(corpus.resolve()))}
            lines.append(
                json.dumps({**meta, "text": "x", "lang": clip.parts[-3], "split": "train"})
            )
            total += s
        copy += 1
    manifest = corpus.resolve() / f"gpu-{hours:g}h.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, total


def decoded_waves(manifest: Path, limit: int) -> list:
    from tokenizer.audio import prepare
    from tokenizer.audio_config import AudioConfig
    from tokenizer.manifests import ManifestConfig, read_manifest

    waves = []
    for example in read_manifest(ManifestConfig(format="jsonl", input=str(manifest))):
        result = prepare(example, AudioConfig())
        if isinstance(result, list):
            waves += [w for _, w in result]
        if len(waves) >= limit:
            break
    return waves


def step_encoder(args, work: Path, models: dict, manifest: Path) -> list[dict]:
    from tokenizer.encoders import build_encoder

    waves = decoded_waves(manifest, args.encoder_clips)
    audio_s = sum(len(w) for w in waves) / 16000
    rows = []
    for dtype in ("float32", "bfloat16"):
        for seconds in (40.0, 240.0, 1200.0):
            enc = build_encoder(f"hf:{models['whisper']}", layer=3, device=args.device,
                                dtype=dtype, max_batch_seconds=seconds)  # fmt: skip
            enc.encode(waves[:8])  # warm-up: kernels, allocator
            sync(args.device)
            start = time.perf_counter()
            enc.encode(waves)
            sync(args.device)
            wall = time.perf_counter() - start
            rows.append({"dtype": dtype, "max_batch_seconds": seconds, "audio_s": audio_s,
                         "wall_s": wall, "x_real_time": audio_s / wall})  # fmt: skip
    return rows


def step_agree(args, work: Path, models: dict, manifest: Path) -> dict:
    """Per-frame token agreement: device vs CPU (fp32) and bf16 vs fp32 on the device."""
    import numpy as np

    import kmeans
    from tokenizer.encoders.base import EncoderConfig
    from tokenizer.speech_model import SpeechModel, TokenTask

    waves = decoded_waves(manifest, 64)
    spec = f"hf:{models['whisper']}"
    cpu = SpeechModel.load(EncoderConfig(name=spec, layer=3))
    frames = np.concatenate(cpu.run(waves))
    folder = work / "agree-codebook"
    kmeans.fit(frames, 1024 if len(frames) >= 8192 else 64, seed=0).with_metadata(
        encoder=spec, layer=3, mode="unpadded"
    ).save(str(folder))

    def tokens(device: str, dtype: str):
        config = EncoderConfig(name=spec, layer=3, device=device, dtype=dtype)
        model = SpeechModel.load(config, TokenTask(codebook=str(folder)))
        return np.concatenate([t.tokens for t in model.run(waves)])

    reference = tokens("cpu", "float32")
    out = {"frames": len(reference)}
    if args.device != "cpu":
        fp32 = tokens(args.device, "float32")
        out["device_fp32_vs_cpu_fp32"] = float((fp32 == reference).mean())
        out["device_bf16_vs_device_fp32"] = float((tokens(args.device, "bfloat16") == fp32).mean())
    return out


class GpuSampler:
    """``nvidia-smi`` utilisation every 0.2 s while a command runs (none on CPU)."""

    def __init__(self, device: str, log: Path):
        self.log, self.proc = log, None
        if device.startswith("cuda"):
            query = ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
            self.proc = subprocess.Popen(["nvidia-smi", *query, "-lms", "200"],
                                         stdout=log.open("w"), stderr=subprocess.DEVNULL)  # fmt: skip

    def stop(self) -> dict:
        if self.proc is None:
            return {}
        self.proc.terminate()
        self.proc.wait()
        samples = []
        for line in self.log.read_text().splitlines():
            try:
                samples.append([float(x) for x in line.split(",")])
            except ValueError:
                continue
        util = [s[0] for s in samples]
        busy = [i for i, u in enumerate(util) if u > 0]
        window = util[busy[0] : busy[-1] + 1] if busy else []
        return {
            "gpu_util_mean": round(sum(util) / len(util), 1) if util else None,
            "gpu_util_while_encoding": round(sum(window) / len(window), 1) if window else None,
            "gpu_mem_max_mib": max((s[1] for s in samples), default=None),
        }


def run_cli(argv: list[str], log: Path, device: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": python_path()}
    sampler = GpuSampler(device, log.with_suffix(".smi"))
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], cwd=ROOT, env=env,
                              stdout=f, stderr=subprocess.STDOUT)  # fmt: skip
    wall = time.perf_counter() - start
    return {"rc": proc.returncode, "wall_s": wall, **sampler.stop(),
            "tail": log.read_text()[-800:] if proc.returncode else ""}  # fmt: skip


def step_jobs(args, work: Path, models: dict, manifest: Path, audio_s: float) -> dict:
    spec = ["--encoder", f"hf:{models['whisper']}", "--layer", "3", "--device", args.device]
    source = ["--format", "jsonl", "--input", str(manifest)]
    out: dict = {}
    codebook = work / "codebook"
    if "fit" in args.steps or not (codebook / "codebook.json").exists():
        k = "1024" if args.device != "cpu" else "64"
        argv = ["fit-codebook", *source, *spec, "--k", k, "--out", str(codebook), *args.job_args]
        out["fit"] = run_cli(argv, work / "fit.log", args.device)
        out["fit"]["x_real_time"] = audio_s / out["fit"]["wall_s"]
    if "tokenize" in args.steps:
        argv = ["tokenize", *source, *spec, "--codebook", str(codebook),
                "--out", str(work / "tokens"), *args.job_args]  # fmt: skip
        out["tokenize"] = run_cli(argv, work / "tokenize.log", args.device)
        out["tokenize"]["x_real_time"] = audio_s / out["tokenize"]["wall_s"]
        index = work / "tokens" / "_index.json"
        if index.exists():
            data = json.loads(index.read_text())
            out["tokenize"]["timings"] = data.get("extra", {}).get("timings")
    return out


def step_trainer(args, work: Path, models: dict) -> list[dict]:
    """The trainer's lever table (``benchmarks.trainer_levers``) on the random Gemma."""
    from benchmarks import trainer_levers

    argv = ["--device", args.device, "--llm", f"hf:{models['gemma']}"]
    return trainer_levers.main([*argv, "--json", str(work / "trainer-levers.json")])["rows"]


def report(results: dict) -> None:
    env = results.get("env", {})
    print(f"\nGPU: {env.get('gpu', 'none')}; cores {env.get('cpus')}; GEMM TFLOP/s "
          f"bf16 {env.get('gemm_bf16_tflops')}, tf32 {env.get('gemm_tf32_tflops')}, "
          f"fp32 {env.get('gemm_fp32_tflops')}")  # fmt: skip
    for row in results.get("encoder", []):
        print(f"encode {row['dtype']:<9} {row['max_batch_seconds']:>6.0f} s batches: "
              f"{row['x_real_time']:>8,.0f}x real time")  # fmt: skip
    if "agree" in results:
        print(f"token agreement: {results['agree']}")
    for job in ("fit", "tokenize"):
        r = results.get("jobs", {}).get(job)
        if r:
            print(f"{job:<9} rc {r['rc']}: {r['wall_s']:.1f} s, {r['x_real_time']:,.0f}x real time,"
                  f" GPU {r.get('gpu_util_while_encoding')} % while encoding "
                  f"(mean {r.get('gpu_util_mean')} %)")  # fmt: skip
    if results.get("trainer"):
        from benchmarks.trainer_levers import table

        print("trainer, Gemma 3 270M architecture, 18 layers, bf16:")
        print(table(results["trainer"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="a `speechtok corpus synth` output folder")
    p.add_argument("--hours", type=float, default=30.0, help="audio in the job manifest")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", default=",".join(STEPS))
    p.add_argument("--encoder-clips", type=int, default=400, help="clips for the encoder step")
    p.add_argument("--job-args", default="", help="extra flags for both jobs (quoted)")
    p.add_argument("--work", default="/tmp/speechtok-gpu")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    args = p.parse_args(argv)
    args.steps = set(args.steps.split(","))
    args.job_args = args.job_args.split()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: dict = {"command": " ".join(["python -m benchmarks.gpu", *(argv or sys.argv[1:])])}
    results["env"] = step_env(args, work) if "env" in args.steps else {}
    models = make_models(work, gemma="trainer" in args.steps)
    manifest, audio_s = make_manifest(Path(args.corpus), work, args.hours)
    results["audio_hours"] = audio_s / 3600
    timed = time.perf_counter()
    if "encoder" in args.steps:
        results["encoder"] = step_encoder(args, work, models, manifest)
    if "agree" in args.steps:
        results["agree"] = step_agree(args, work, models, manifest)
    if args.steps & {"fit", "tokenize"}:
        results["jobs"] = step_jobs(args, work, models, manifest, audio_s)
    if "trainer" in args.steps:
        results["trainer"] = step_trainer(args, work, models)
    results["total_s"] = time.perf_counter() - timed
    report(results)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
