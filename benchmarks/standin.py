"""GPU stand-in on a CPU: the speech jobs with a model that costs nothing,
against bare decode loops of the same parallelism.

What a fast GPU looks like to the CPU side of a job: the model returns at
once, so the job can go no faster than reading and decoding its audio. This
benchmark registers an ``instant`` encoder (16-dim zero frames, no compute)
and a random 16-dim k=16 codebook, and times, each row a fresh process, best
of ``--repeats`` in turns, clock from after imports to the job's end (plan,
pipeline start-up, shards, rejects and index all in):

- ``decode-1``: one thread reads, decodes and validates every clip of the
  manifest (``tokenizer.audio.prepare``), nothing else;
- ``decode-2``: the same on two threads;
- ``decode-p1`` / ``decode-p2`` (``--rows``): the same in one / two worker
  processes, only the seconds coming back: how far decoding itself scales
  with processes on this machine (the ceiling for ``job-proc-2 / job-proc-1``);
- ``job-1``: ``speechtok tokenize`` on the embedded runner, one worker
  (its decode threads: the default, one per core);
- ``job-1-dt1``: the same with one decode thread (Beam's own overhead alone);
- ``job-1-proc`` (``--rows``): the same decoding in worker processes
  (``--decode-pool processes``, the CUDA default);
- ``job-proc-1`` / ``job-proc-2`` (``--rows``): decoding in 1 / 2 worker
  processes (``--decode-pool processes --decode-threads N``): does decoding
  scale with processes (the GPU machine's wall: threads gave ~1x)?
- ``job-2``: two workers, ``--direct_num_workers 2 --direct_running_mode
  multi_threading``;
- ``fit-1`` (``--fit``): ``speechtok fit-codebook`` with the instant encoder;
- ``job-rows`` (``--rows``): ``job-1`` over ``--row-clips`` listings of one
  0.5 s 16 kHz WAV (decoding costs next to nothing): the job's own cost per
  row, in clips per second (GPU issue: >= 2,000 clips/s in process, so a
  GPU at 2,500x real time on 7 s clips, ~360 clips/s, is never row-bound).

Targets (ratios of audio seconds per wall second): ``job-1 / decode-1 >=
0.8``, ``job-2 / decode-2 >= 0.7`` and ``job-proc-2 / job-proc-1 >= 1.7``
(each checked when its rows run). Corpus: mini-FLEURS' Common Voice
style MP3 clips (espeak-ng speech, 22.05 kHz), listed ``--times`` times
under distinct ids in a JSONL manifest (default ~10 h of audio).

Usage::

    python -m benchmarks.standin                 # ~10 h of MP3, best of 2
    python -m benchmarks.standin --quick         # ~1.4 h, one pass
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks._harness import ROOT, best_of, run_row, worker_main, write_json
from benchmarks._machine import machine
from datastore.identity import FeatureIdentity
from tokenizer.encoders import register_encoder
from tokenizer.encoders.base import SAMPLE_RATE, Encoder, EncoderConfig

INSTANT = "instant"
DIM, K = 16, 16
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "standin.json"
LANGS = ("fr", "de", "es", "it")
TARGETS = {"job-1/decode-1": 0.8, "job-2/decode-2": 0.7, "job-proc-2/job-proc-1": 1.7}
ROW_CLIPS_PER_S = 2000.0  # job-rows' target


def describe_instant(config: EncoderConfig) -> FeatureIdentity:
    return FeatureIdentity(encoder=config.name, layer=0, mode=None, frame_rate=50.0, dim=DIM)


@register_encoder(INSTANT, describe=describe_instant)
class InstantEncoder(Encoder):
    """Zero frames at 50 Hz, no compute: the model of a GPU that never makes anyone wait."""

    uses_torch = False

    def __init__(self, config: EncoderConfig):
        self.config = config
        self.frame_rate, self.dim = 50.0, DIM

    def n_frames(self, n_samples: int) -> int:
        return -(-self._check_n_samples(n_samples) // 320)

    def _padding_fraction(self, lengths) -> float:
        return 0.0

    def _encode_batch(self, clips):
        return [np.zeros((self.n_frames(len(c)), DIM), np.float32) for c in clips]


# -- rows (one per process) -------------------------------------------------------
def _examples(spec: dict) -> list:
    from datastore.records import AudioExample
    from tokenizer.manifests import ManifestConfig, read_manifest

    config = ManifestConfig(format="jsonl", input=spec["manifest"])
    return [e for e in read_manifest(config) if isinstance(e, AudioExample)]


def _prepared_seconds(result) -> float:
    if isinstance(result, list):
        return sum(len(w) for _, w in result) / SAMPLE_RATE
    return 0.0


def _decoded_seconds(example) -> float:
    from tokenizer.audio import prepare
    from tokenizer.audio_config import AudioConfig

    return _prepared_seconds(prepare(example, AudioConfig()))


def worker_decode(spec: dict) -> dict:
    examples = _examples(spec)  # the manifest read is not the decode loop's work
    start = time.perf_counter()
    if spec.get("processes"):  # decoding alone in N processes (only seconds come back)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(spec["processes"], mp_context=context) as pool:
            list(pool.map(_decoded_seconds, examples[:2]))  # workers started and warm
            start = time.perf_counter()
            seconds = sum(pool.map(_decoded_seconds, examples, chunksize=16))
    elif spec["threads"] == 1:
        seconds = sum(_decoded_seconds(e) for e in examples)
    else:
        with ThreadPoolExecutor(spec["threads"]) as pool:
            seconds = sum(pool.map(_decoded_seconds, examples))
    return {"wall_s": time.perf_counter() - start, "audio_s": seconds, "clips": len(examples)}


def worker_job(spec: dict) -> dict:
    from pipelines import fit_codebook, tokenize
    from tokenizer.manifests import ManifestConfig

    manifest = ManifestConfig(format="jsonl", input=spec["manifest"])
    encoder = EncoderConfig(name=INSTANT)
    start = time.perf_counter()
    if spec.get("job") == "fit":
        config = fit_codebook.FitCodebookJobConfig(
            manifest=manifest, encoder=encoder, k=K, out=spec["out"], sample_frames=50_000
        )
        index = fit_codebook.run(config, spec["beam_args"])
    else:
        config = tokenize.TokenizeJobConfig(
            manifest=manifest,
            encoder=encoder,
            codebook=spec["codebook"],
            out=spec["out"],
            decode_threads=spec.get("decode_threads"),
            decode_pool=spec.get("decode_pool", "auto"),
        )
        index = tokenize.run(config, spec["beam_args"])
    wall = time.perf_counter() - start
    timings = index.extra.get("timings", {})
    return {"wall_s": wall, "audio_s": timings.get("audio_s"), "counts": index.counts}


WORKERS = {"decode": worker_decode, "job": worker_job}
# Imported before the clock starts in every row (the decode rows import none of
# them): Beam, the jobs, and torch, which the codebook's assignment kernels
# (kmeans.kernels) load on a worker's first batch - seconds on this machine
# that are start-up, not work, and that a GPU worker pays once per process.
PREIMPORTS = (
    "apache_beam",
    "pyarrow.parquet",
    "pipelines.tokenize",
    "pipelines.fit_codebook",
    "kmeans.kernels",
)


# -- driver -------------------------------------------------------------------------
ROWS = {
    "decode-1": {"row": "decode", "threads": 1},
    "decode-2": {"row": "decode", "threads": 2},
    "decode-p1": {"row": "decode", "threads": 1, "processes": 1},
    "decode-p2": {"row": "decode", "threads": 2, "processes": 2},
    "job-1": {"row": "job", "beam_args": []},
    "job-1-dt1": {"row": "job", "beam_args": [], "decode_threads": 1},
    "job-1-proc": {"row": "job", "beam_args": [], "decode_pool": "processes"},
    "job-proc-1": {"row": "job", "beam_args": [], "decode_pool": "processes", "decode_threads": 1},
    "job-proc-2": {"row": "job", "beam_args": [], "decode_pool": "processes", "decode_threads": 2},
    "job-2": {
        "row": "job",
        "beam_args": ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"],
    },
    "fit-1": {"row": "job", "job": "fit", "beam_args": []},
    "job-rows": {"row": "job", "beam_args": [], "manifest": "rows"},
}


def prepare_corpus(work: Path, per_lang: int, times: int) -> tuple[Path, float]:
    """mini-FLEURS (cached by its settings) and a JSONL manifest listing its
    Common Voice clips ``times`` times under distinct ids."""
    from corpora.synth.synth import SynthConfig, synthesize_corpus

    corpus = work / "corpus"
    stamp = work / "corpus.stamp.json"
    want = {"langs": LANGS, "per_lang": per_lang, "voices": 2}
    if not (stamp.exists() and json.loads(stamp.read_text()) == json.loads(json.dumps(want))):
        synthesize_corpus(SynthConfig(out=str(corpus), langs=LANGS, per_lang=per_lang, voices=2))
        stamp.write_text(json.dumps(want))
    import soundfile as sf

    clips = sorted(corpus.glob("cv/*/clips/*.mp3"))
    seconds = sum(sf.info(str(c)).duration for c in clips)
    lines = []
    for copy in range(times):
        for clip in clips:
            rel = clip.relative_to(corpus).as_posix()
            lang = clip.parts[-3]
            meta = {"id": f"{clip.stem}#{copy}", "audio": rel, "text": "x", "lang": lang}
            lines.append(json.dumps({**meta, "split": "train"}))
    manifest = corpus / f"standin-{times}x.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, seconds * times


def prepare_row_manifest(work: Path, clips: int) -> Path:
    """``clips`` listings of one 0.5 s WAV under distinct ids: rows, not audio."""
    import soundfile as sf

    folder = work / "rows"
    folder.mkdir(parents=True, exist_ok=True)
    wave = 0.1 * np.sin(np.arange(SAMPLE_RATE // 2) * 2 * np.pi * 220 / SAMPLE_RATE)
    sf.write(folder / "clip.wav", wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    line = {"audio": "clip.wav", "text": "x", "lang": "fr", "split": "train"}
    manifest = folder / f"rows-{clips}.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"r{i}", **line}) + "\n" for i in range(clips)))
    return manifest


def prepare_codebook(work: Path) -> Path:
    import kmeans

    folder = work / "codebook-instant"
    x = np.random.default_rng(0).standard_normal((4096, DIM)).astype(np.float32)
    kmeans.fit(x, K, seed=0).with_metadata(encoder=INSTANT, layer=0, mode=None).save(str(folder))
    return folder


def ratio(best: dict, a: str, b: str) -> float | None:
    ra, rb = best.get(a, {}), best.get(b, {})
    if "error" in ra or "error" in rb or not ra.get("audio_s") or not rb.get("audio_s"):
        return None
    return (ra["audio_s"] / ra["wall_s"]) / (rb["audio_s"] / rb["wall_s"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="~1.4 h of audio, one pass")
    p.add_argument("--times", type=int, help="manifest repetitions (default 9: ~10 h; quick 1)")
    p.add_argument("--per-lang", type=int, default=60, help="sentences per language")
    p.add_argument("--repeats", type=int, help="passes per row, best kept (default 2; quick 1)")
    p.add_argument("--rows", default="decode-1,decode-2,job-1,job-1-dt1,job-2")
    p.add_argument("--fit", action="store_true", help="add the fit-codebook row")
    p.add_argument("--row-clips", type=int, default=20_000, help="job-rows' manifest size")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "results" / "standin-work"))
    p.add_argument("--json", default=str(DEFAULT_JSON))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(WORKERS, args.worker, PREIMPORTS)
    times = args.times or (1 if args.quick else 9)
    repeats = args.repeats or (1 if args.quick else 2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    manifest, audio_s = prepare_corpus(work, args.per_lang, times)
    codebook = prepare_codebook(work)
    names = args.rows.split(",") + (["fit-1"] if args.fit else [])
    manifests = {"audio": manifest}
    if "job-rows" in names:
        manifests["rows"] = prepare_row_manifest(work, args.row_clips)
    print(f"stand-in: {audio_s / 3600:.2f} h of MP3 in {manifest}", file=sys.stderr)

    def run(name: str, repeat: int) -> dict:
        spec = {**ROWS[name], "codebook": str(codebook)}
        spec["manifest"] = str(manifests[ROWS[name].get("manifest", "audio")])
        spec["out"] = str(work / f"out-{name}")
        return {"name": name, **run_row("benchmarks.standin", spec)}

    best = best_of(names, repeats, run)
    checks = {
        key: ratio(best, *key.split("/"))
        for key in TARGETS
        if set(key.split("/")) <= set(names)  # a target is checked when its rows ran
    }
    info = {
        "decode-p2/decode-p1": ratio(best, "decode-p2", "decode-p1"),
        "job-1-dt1/decode-1": ratio(best, "job-1-dt1", "decode-1"),
        "job-1-proc/job-1": ratio(best, "job-1-proc", "job-1"),
    }
    print(f"\n{'row':<12}{'wall s':>9}{'x real time':>13}{'peak MB':>9}")
    for name in names:
        r = best[name]
        if "error" in r:
            print(f"{name:<12}  ERROR {r['error'][:200]}")
            continue
        x = r["audio_s"] / r["wall_s"] if r.get("audio_s") else float("nan")
        print(f"{name:<12}{r['wall_s']:>9.2f}{x:>13.0f}{r['peak_rss_mb']:>9.0f}")
    rows = best.get("job-rows", {})
    if rows.get("wall_s") and "error" not in rows:
        rate = rows["counts"].get("accepted", 0) / rows["wall_s"]
        info["job-rows clips/s"] = rate
        verdict = "met" if rate >= ROW_CLIPS_PER_S else "MISSED"
        print(f"job-rows: {rows['counts']} in {rows['wall_s']:.2f} s: {rate:,.0f} clips/s "
              f"(target >= {ROW_CLIPS_PER_S:,.0f}) {verdict}")  # fmt: skip
    for key, value in {**checks, **info}.items():
        limit = TARGETS.get(key)
        verdict = "" if limit is None else ("met" if value and value >= limit else "MISSED")
        shown = "n/a" if value is None else f"{value:.2f}"
        print(f"{key:<22}{shown:>6}  {'target >= ' + str(limit) if limit else 'info'} {verdict}")
    write_json(
        args.json,
        {
            "machine": machine(),
            "audio_hours": audio_s / 3600,
            "rows": best,
            "ratios": {**checks, **info},
            "targets": TARGETS,
            "command": " ".join(["python -m benchmarks.standin", *(argv or sys.argv[1:])]),
            "pid": os.getpid(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
