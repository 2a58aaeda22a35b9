"""The rows of ``benchmarks.tokenize``'s throughput and memory parts, each run
in a fresh process (``python -m benchmarks.tokenize --worker SPEC``, see
``benchmarks._harness``): the job and its Beam-free peers. What each row does
and why is in ``benchmarks/tokenize.py``'s docstring.

A spec names the ``row``, the ``encoder``, the manifest (``format``,
``input``, ``audio_root``), the ``codebook``, the job's ``out`` folder,
torch ``threads`` and ``keep_tokens`` (return every utterance's tokens, so
the driver can compare rows). Every row returns ``wall_s`` (clock from after
the imports to its rows existing), ``audio_s`` and ``utterances``.
"""

from __future__ import annotations

import os
import time


def _manifest(spec: dict):
    from tokenizer.manifests import ManifestConfig

    return ManifestConfig(
        format=spec["format"], input=spec["input"], audio_root=spec.get("audio_root")
    )


def _encoder_config(spec: dict):
    from tokenizer.encoders.base import EncoderConfig

    return EncoderConfig(name=spec["encoder"], threads=spec.get("threads"))


def worker_job(spec: dict) -> dict:
    import pyarrow.dataset as ds

    from pipelines import tokenize as job

    config = job.TokenizeJobConfig(
        manifest=_manifest(spec),
        encoder=_encoder_config(spec),
        codebook=spec["codebook"],
        out=spec["out"],
    )
    start = time.perf_counter()
    index = job.run(config)  # worker_main sends its prints to stderr
    wall = time.perf_counter() - start
    table = ds.dataset(
        os.path.join(spec["out"], "tokens"), format="parquet", partitioning="hive"
    ).to_table(columns=["id", "duration_s", "tokens"])
    ids, tokens = table.column("id").to_pylist(), table.column("tokens").to_pylist()
    return {
        "wall_s": wall,
        "audio_s": float(sum(table.column("duration_s").to_pylist())),
        "utterances": table.num_rows,
        "rejected": index.counts["rejected"],
        "tokens": dict(zip(ids, tokens, strict=True)) if spec.get("keep_tokens") else None,
    }


def _decoded(spec: dict):
    """(example, waveform) pairs of the manifest, in manifest order, as the job decodes them."""
    from datastore.records import AudioExample
    from tokenizer.audio import prepare
    from tokenizer.audio_config import AudioConfig

    config = AudioConfig()
    for item in _read_manifest(spec):
        if isinstance(item, AudioExample):
            result = prepare(item, config)
            if isinstance(result, list):
                yield from result


def _read_manifest(spec: dict):
    from tokenizer.manifests import read_manifest

    return read_manifest(_manifest(spec))


def _rows_result(start: float, rows: list[dict], spec: dict) -> dict:
    return {
        "wall_s": time.perf_counter() - start,
        "audio_s": float(sum(r["duration_s"] for r in rows)),
        "utterances": len(rows),
        "tokens": {r["id"]: r["tokens"].tolist() for r in rows}
        if spec.get("keep_tokens")
        else None,
    }


def worker_bare(spec: dict) -> dict:
    from kmeans import Codebook
    from kmeans.postprocess import frames_to_tokens
    from tokenizer.assign import token_row
    from tokenizer.encoders import build_encoder
    from tokenizer.encoders.base import SAMPLE_RATE
    from tokenizer.speech_model import BATCH_OVER_ENCODER_BATCH

    start = time.perf_counter()
    codebook = Codebook.load(spec["codebook"])
    encoder = build_encoder(spec["encoder"], threads=spec.get("threads"))
    # Batches by audio length in centiseconds, flushed before a clip would overflow.
    target = max(1, round(BATCH_OVER_ENCODER_BATCH * encoder.config.max_batch_seconds * 100))
    rows: list[dict] = []
    batch: list[tuple] = []
    weight = 0

    def flush() -> None:
        features = encoder.encode([wave for _, wave in batch])
        for (example, wave), feats in zip(batch, features, strict=True):
            tokens = frames_to_tokens(codebook, feats)
            rows.append(token_row(example, tokens, codebook.id, n_samples=len(wave)))

    for example, wave in _decoded(spec):
        size = max(1, len(wave) // (SAMPLE_RATE // 100))
        if batch and weight + size > target:
            flush()
            batch, weight = [], 0
        batch.append((example, wave))
        weight += size
    if batch:
        flush()
    return _rows_result(start, rows, spec)


def worker_unbatched(spec: dict) -> dict:
    from kmeans import Codebook
    from kmeans.postprocess import frames_to_tokens
    from tokenizer.assign import token_row
    from tokenizer.encoders import build_encoder

    start = time.perf_counter()
    codebook = Codebook.load(spec["codebook"])
    encoder = build_encoder(spec["encoder"], threads=spec.get("threads"))
    rows = []
    for example, wave in _decoded(spec):  # one file read, encoded and assigned at a time
        feats = encoder.encode([wave])[0]
        tokens = frames_to_tokens(codebook, feats)
        rows.append(token_row(example, tokens, codebook.id, n_samples=len(wave)))
    return _rows_result(start, rows, spec)


def worker_speech2unit(spec: dict) -> dict:
    """fairseq speech2unit's per-file loop with a naive Whisper port (module doc)."""
    import numpy as np
    import torch
    from transformers import WhisperFeatureExtractor

    from kmeans import Codebook
    from tokenizer.encoders.whisper import SAMPLES_PER_FRAME, whisper_module_from_tensors
    from tokenizer.encoders.whisper_convert import load_encoder_weights, whisper_base_weights

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    codebook = Codebook.load(spec["codebook"])
    layer = int(codebook.metadata["layer"])
    tensors, heads = load_encoder_weights(whisper_base_weights())
    model = whisper_module_from_tensors(tensors, heads).float().eval()
    extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    ids, audio_s, tokens = [], 0.0, []
    for example, wave in _decoded(spec):
        mel = extractor(wave, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            hidden = model(mel, output_hidden_states=True).hidden_states[layer]
        n_frames = -(-len(wave) // SAMPLES_PER_FRAME)
        feats = np.ascontiguousarray(hidden[0, :n_frames].numpy())
        ids.append(example.id)
        tokens.append(codebook.assign(feats).astype(np.int16).tolist())
        audio_s += len(wave) / 16000
    return {
        "wall_s": time.perf_counter() - start,
        "audio_s": audio_s,
        "utterances": len(ids),
        "tokens": dict(zip(ids, tokens, strict=True)) if spec.get("keep_tokens") else None,
    }


WORKERS = {
    "job": worker_job,
    "bare": worker_bare,
    "unbatched": worker_unbatched,
    "speech2unit": worker_speech2unit,
}

# Imported before any row's clock starts, the same set in every row:
# interpreter start-up is not throughput.
PREIMPORTS = (
    "pyarrow.dataset",
    "pyarrow.parquet",
    "torch",
    "transformers.models.whisper.modeling_whisper",
    "transformers.models.whisper.feature_extraction_whisper",
    "kmeans.kernels",
    "kmeans.postprocess",
    "pipelines.tokenize",
    "tokenizer.encoders.whisper_convert",
)
