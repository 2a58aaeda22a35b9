"""How a run's audio tokens were made, so new audio becomes the very same tokens.

At train time :func:`token_provenance` reads the shards' ``_index.json`` (the
tokenize job's config and encoder identity) and the codebook folder it names
(downsampling), and the run keeps the result in ``config.json`` under
``tokens``: encoder (name, layer, mode, dtype), codebook (id, sha256, k,
downsampling, token rate), run-length dedup, audio decoding settings.
:func:`copy_codebook` copies ``centroids.npy`` + ``codebook.json`` into
``RUN_DIR/codebook/`` (about 4 KB per centroid of 1,024 floats; a 1024 x
512 codebook is 2 MB), so a run folder alone turns audio into tokens:
:func:`audio_to_tokens` decodes, encodes and assigns as the tokenize job does
for one clip (:func:`kmeans.postprocess.frames_to_tokens`).

Example::

    tokens = audio_to_tokens("runs/a", ["query.wav"], device="cpu")[0]
"""

from __future__ import annotations

import json

import numpy as np

from datastore import storage
from datastore.identity import CodebookRef, FeatureIdentity

CODEBOOK_DIR = "codebook"
CODEBOOK_FILES = ("centroids.npy", "codebook.json")


class ProvenanceError(ValueError):
    """A run that does not record enough to tokenize new audio."""


def token_provenance(shards: str, codebook: dict) -> dict:
    """The ``tokens`` block of a run's ``config.json`` for shards of ``codebook``.

    ``codebook``: ``{"id", "k", "sha256"}`` as the trainer read it from the
    shards. Unknown fields (synthetic shards, a codebook folder that moved)
    stay ``None``; :func:`audio_to_tokens` then says what is missing.
    """
    from datastore.shards import Index

    index = Index.read(shards)
    config = (index.config if index else {}) or {}
    extra = (index.extra if index else {}) or {}
    identity = FeatureIdentity.from_dict(extra.get("encoder"))
    encoder = config.get("encoder") if isinstance(config.get("encoder"), dict) else None
    recorded = CodebookRef.from_index(extra, config)
    source = storage.absolute_uri(recorded.uri) if recorded and recorded.uri else None
    meta = _codebook_meta(source, codebook.get("sha256"), shards)
    return {
        "shards": storage.absolute_uri(shards),
        "job": index.job if index else None,
        "encoder": (
            {k: encoder.get(k) for k in ("name", "layer", "mode", "dtype")} if encoder else None
        ),
        "identity": identity.as_dict() if identity else None,
        "codebook": {
            **codebook,
            "source": source if meta else None,
            "downsample": int(meta.get("downsample") or 1) if meta else None,
            "downsample_mode": (meta.get("downsample_mode") or "mean") if meta else None,
            "frame_rate": meta.get("frame_rate") if meta else None,
        },
        "dedup": config.get("dedup"),
        "audio": config.get("audio"),
        "codebook_dir": None,  # set by copy_codebook
    }


def _codebook_meta(source: str | None, sha256: str | None, shards: str) -> dict | None:
    """``codebook.json`` of the folder the shards were made with (None when they
    name none, e.g. synthetic shards). A named folder that is not there, or
    holds another codebook, is an error: a run without its codebook cannot
    tokenize new audio, and the cause must be said now, not at search time."""
    if not source:
        return None
    if not storage.exists(storage.join(source, "codebook.json")):
        raise ProvenanceError(
            f"{shards} was tokenized with the codebook {source}, which is not there (an "
            "older tokenize index records --codebook as typed: train from the folder tokenize "
            "ran in, or tokenize again)"
        )
    meta = json.loads(storage.read_text(storage.join(source, "codebook.json")))
    if sha256 and meta.get("sha256") != sha256:
        raise ProvenanceError(
            f"{source} holds codebook {meta.get('sha256', '?')[:12]}..., the shards in {shards} "
            f"were made with {sha256[:12]}...: not their codebook"
        )
    return meta


def copy_codebook(provenance: dict, run_dir: str) -> dict:
    """Copy the codebook folder into ``run_dir/codebook`` (once); returns the updated block."""
    source = provenance["codebook"].get("source")
    if not source:
        return provenance
    target = storage.join(run_dir, CODEBOOK_DIR)
    if not storage.exists(storage.join(target, "codebook.json")):
        for name in CODEBOOK_FILES:  # codebook.json last: its presence means complete
            storage.write_bytes(
                storage.join(target, name), storage.read_bytes(storage.join(source, name))
            )
    return {**provenance, "codebook_dir": CODEBOOK_DIR}


def audio_to_tokens(
    run_dir: str, uris: list[str], *, device: str = "cpu", run_config: dict | None = None
) -> list[np.ndarray]:
    """Decode, encode and assign audio files as the run's training shards were made."""
    from kmeans import Codebook
    from kmeans.postprocess import frames_to_tokens
    from tokenizer.audio import load_waveform
    from tokenizer.audio_config import AudioConfig
    from tokenizer.encoders import build_encoder
    from trainer.checkpoint import read_config

    config = run_config or read_config(run_dir)
    prov = config.get("tokens") or {}
    enc = prov.get("encoder")
    if not enc or not prov.get("codebook_dir") or prov.get("dedup") is None:
        raise ProvenanceError(
            f"{run_dir} does not record how its tokens were made (encoder, codebook folder, "
            "dedup): it was trained on shards without a tokenize index or codebook folder, "
            "so --query-audio cannot work; query with --query-text"
        )
    codebook = Codebook.load(storage.join(run_dir, prov["codebook_dir"]))
    if codebook.sha256 != prov["codebook"]["sha256"]:
        raise ProvenanceError(f"{run_dir}/{prov['codebook_dir']} is not the run's codebook")
    dtype = enc.get("dtype") or "float32"
    if dtype == "float16" and not device.startswith("cuda"):
        dtype = "float32"  # float16 runs on CUDA only; features differ by rounding only
    encoder = build_encoder(
        enc["name"], layer=enc.get("layer"), mode=enc.get("mode"), dtype=dtype, device=device
    )
    why = encoder.identity().mismatch(prov.get("identity") or {}, "the run's tokens were made")
    if why:
        raise ProvenanceError(why)
    audio = AudioConfig(**(prov.get("audio") or {}))
    dedup = bool(prov["dedup"])
    out = []
    for uri in uris:
        wave = load_waveform(uri, audio)
        # As the tokenize job assigns one clip on CPU: frames -> codebook
        # (downsampled as it was fitted) -> optional run-length dedup.
        tokens, _ = frames_to_tokens(codebook, encoder.encode([wave])[0], dedup=dedup)
        out.append(np.asarray(tokens, dtype=np.int64))
    return out
