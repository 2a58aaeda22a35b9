"""``speechtok search``: the top hits of a text or audio query in an embedding folder.

The query is embedded with the run that made the folder (checked: same run
step, codebook and dimension, and the folder's precision): a text behind
``[lang] [text]``, or an audio file turned into tokens exactly as the run's
training shards were (:func:`trainer.provenance.audio_to_tokens`: the run's
encoder and its copy of the codebook) behind ``[lang] [speech]``. Hits are
ranked by dot product (cosine for normalised runs): through
``OUT/index.faiss`` when ``embed --faiss`` wrote one, else by an exact scan
of the embedding shards, one file in memory at a time.

Example::

    hits = search(SearchConfig(run="runs/a", index="emb", query_text="Bonjour", lang="fr"))
    hits[0].id, hits[0].score, hits[0].text
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass

import numpy as np

from datastore import schema, shards, storage
from datastore.settings import setting
from trainer.embed import FAISS_FILE, import_faiss, run_identity


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """Exactly one of ``query_text`` (needs ``lang``) and ``query_audio`` (a file URI)."""

    run: str = setting(help="train --out folder")
    index: str = setting(help="embed --out folder")
    query_text: str | None = setting(None, help="a sentence (with --lang)")
    query_audio: str | None = setting(None, help="an audio file (local path or gs://)")
    lang: str | None = setting(
        None, help="language of the query (audio: default the run's one training language)"
    )
    top_k: int = setting(5, help="hits to print")
    device: str | None = setting(None, help="cpu | cuda | cuda:N (default: cuda when available)")

    def __post_init__(self) -> None:
        if (self.query_text is None) == (self.query_audio is None):
            raise ValueError("give exactly one of --query-text and --query-audio")
        if self.query_text is not None and not self.lang:
            raise ValueError("--query-text needs --lang (the [lang] [text] prefix)")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    id: str
    lang: str
    modality: str
    text: str | None


def query_language(config: SearchConfig, run_config: dict) -> str:
    """``--lang``, or the run's one training language for an audio query."""
    if config.lang:
        return config.lang
    data = (run_config.get("train") or {}).get("data") or {}
    langs = data.get("langs") or []
    if len(langs) == 1:
        return langs[0]
    raise ValueError("--query-audio needs --lang (the [lang] [speech] prefix) for this run")


def check_folder(index: shards.Index, run: str, run_config: dict, dim: int) -> None:
    """Refuse an embedding folder made by another run (or another step of this one)."""
    if index.job != "embed":
        raise ValueError(f"--index holds `speechtok {index.job}` output, not embeddings")
    if index.status == shards.FAILED:
        raise ValueError(f"--index: the embed run that wrote it failed: {index.failure}")
    want = run_identity(run, run_config, dim, index.extra.get("precision", "fp32"))
    made_by = index.extra.get("run")
    if made_by and _same_path(made_by) != _same_path(run):
        raise ValueError(
            f"the embeddings were made with run {made_by} (step {index.extra.get('run_step')}), "
            f"not with {run} (step {want['run_step']}): embed again with this run"
        )
    for key in ("run_step", "codebook", "llm", "dim"):
        if index.extra.get(key) != want[key]:
            raise ValueError(
                f"the embeddings were made with {key}={index.extra.get(key)!r}, this run has "
                f"{want[key]!r}: embed again with this run"
            )


def _same_path(uri: str) -> str:
    import os

    return os.path.realpath(uri) if storage.is_local(uri) else uri.rstrip("/")


def embed_query(model, config: SearchConfig, run_config: dict, device: str, precision: str):
    import torch

    from trainer.provenance import audio_to_tokens

    autocast = torch.bfloat16 if precision == "bf16" else None
    if config.query_text is not None:
        return model.embed_text([config.query_text], [config.lang], autocast_dtype=autocast)
    tokens = audio_to_tokens(config.run, [config.query_audio], device=device, run_config=run_config)
    lang = query_language(config, run_config)
    return model.embed_speech(tokens, [lang], autocast_dtype=autocast)


def top_hits(folder: str, query: np.ndarray, k: int) -> list[tuple[float, int]]:
    """``(score, row)`` of the best ``k`` rows, best first (ties: lower row first).

    The faiss index must be the file the folder's index lists (size, sha256)
    and hold one vector per listed row; ``k`` is clamped to the rows."""
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    n_rows = sum(s.rows for s in shards.listed_shards(folder, schema.EMBEDDINGS_DIR))
    k = min(k, n_rows)  # --top-k 1000000000 must not allocate a billion results
    if k < 1:
        return []
    faiss_uri = storage.join(folder, FAISS_FILE)
    if storage.exists(faiss_uri):
        faiss = import_faiss()

        data = storage.read_bytes(faiss_uri)
        listed = {f["path"]: f for f in shards.Index.read(folder).files}.get(FAISS_FILE)
        if listed is not None and (
            len(data) != listed["bytes"] or hashlib.sha256(data).hexdigest() != listed["sha256"]
        ):
            raise ValueError(
                f"{faiss_uri} is not the file its embed run wrote (size or sha256 differs from "
                "_index.json): run embed again"
            )
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if index.ntotal != n_rows:
            raise ValueError(
                f"{faiss_uri} holds {index.ntotal} vectors but the folder lists {n_rows} rows: "
                "it belongs to another run of embed (run embed again)"
            )
        scores, rows = index.search(query[None, :], k)
        return [(float(s), int(r)) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]
    best: list[tuple[float, int]] = []
    start = 0
    for _, table in shards.iter_shards(folder, schema.EMBEDDINGS_DIR, columns=["embedding"]):
        column = table.column("embedding").combine_chunks()
        matrix = column.values.to_numpy(zero_copy_only=False).reshape(len(column), -1)
        scores = matrix @ query
        for j in np.argsort(-scores, kind="stable")[:k]:
            item = (float(scores[j]), -(start + int(j)))
            if len(best) < k:
                heapq.heappush(best, item)
            else:
                heapq.heappushpop(best, item)
        start += len(column)
    return [(s, -neg) for s, neg in sorted(best, key=lambda x: (-x[0], -x[1]))]


def rows_at(folder: str, rows: list[int]) -> dict[int, dict]:
    """The ``id, lang, modality, text`` of some row numbers (shard order)."""
    wanted, out, start = set(rows), {}, 0
    for _, table in shards.iter_shards(
        folder, schema.EMBEDDINGS_DIR, columns=["id", "lang", "modality", "text"]
    ):
        for j in sorted(r - start for r in wanted if start <= r < start + table.num_rows):
            out[start + j] = table.slice(j, 1).to_pylist()[0]
        start += table.num_rows
    return out


def search(config: SearchConfig) -> list[Hit]:
    import torch

    from trainer.checkpoint import load_run

    index = shards.Index.read(config.index)
    if index is None:
        raise FileNotFoundError(f"{config.index}: no _index.json (make it with speechtok embed)")
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, _, run_config = load_run(config.run, device=device)
    check_folder(index, config.run, run_config, model.embed_dim)
    precision = index.extra.get("precision", "fp32")
    query = embed_query(model, config, run_config, device, precision).numpy()[0]
    found = top_hits(config.index, query, config.top_k)
    rows = rows_at(config.index, [r for _, r in found])
    return [
        Hit(rank=i + 1, score=s, **{k: rows[r][k] for k in ("id", "lang", "modality", "text")})
        for i, (s, r) in enumerate(found)
    ]


def format_hits(hits: list[Hit]) -> str:
    lines = [f"{'rank':>4}  {'score':>8}  id\tlang\tmodality\ttext"]
    for h in hits:
        lines.append(
            f"{h.rank:>4}  {h.score:>8.4f}  {h.id}\t{h.lang}\t{h.modality}\t{h.text or ''}"
        )
    return "\n".join(lines)
