"""``speechtok embed``: a trained run turns token shards or texts into embeddings.

Input is streamed: token shards file by file through the shard reader (the
files ``_index.json`` lists; a split and languages prune whole files), a
JSONL file line by line (``{"id", "text", "lang"}``; a bad line becomes a
reject with a reason, never a crash). Rows are embedded batch-wise with the
evaluator's model calls (:meth:`trainer.model.DualEncoder.embed_speech` /
``embed_text``) and written as they come:
``OUT/embeddings/part-NNNNN.parquet`` (``tokenizer.schema.EMBEDDING_SCHEMA``:
``id, lang, modality, text, embedding``, in input order), ``OUT/rejects/``,
``OUT/_index.json`` (counts, the run and its step, dimension), the dataset
card, and with ``faiss`` an inner-product index ``OUT/index.faiss`` whose row
``i`` is the ``i``-th embedding row in shard order.

fp32 by default: the exported model (``speechtok export``) gives the same
vectors to 1e-4; ``precision="bf16"`` is faster on GPUs and AMX CPUs.

Example::

    embed(EmbedConfig(run="runs/a", shards="tok", split="test", out="emb", faiss=True))
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from tokenizer import card, io, schema, shards
from tokenizer.records import Reason, Reject

log = logging.getLogger(__name__)
FAISS_FILE = "index.faiss"
MODALITIES = ("speech", "text")
PRECISIONS = ("fp32", "bf16")
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True, kw_only=True)
class EmbedConfig:
    """One of ``shards`` (a tokenize output folder) or ``text`` (a JSONL file).

    ``modality``: with ``shards``, embed the recordings (``speech``) or their
    transcripts (``text``). ``split``/``langs``: which shards (default: all).
    """

    run: str
    out: str
    shards: str | None = None
    text: str | None = None
    split: str | None = None
    langs: tuple[str, ...] | None = None
    modality: str = "speech"
    faiss: bool = False
    device: str | None = None  # None: cuda when available
    precision: str = "fp32"
    batch_size: int = 32
    rows_per_shard: int = 50_000

    def __post_init__(self) -> None:
        if (self.shards is None) == (self.text is None):
            raise ValueError("give exactly one of --shards DIR and --text FILE.jsonl")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.text is not None and (self.split or self.langs):
            raise ValueError("--split and --langs select token shards; a --text file has neither")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch_size < 1 or self.rows_per_shard < 1:
            raise ValueError("batch_size and rows_per_shard must be >= 1")


@dataclass
class Item:
    """One thing to embed: speech tokens or a text, with its language."""

    id: str
    lang: str
    modality: str
    text: str | None
    tokens: np.ndarray | None = None


def shard_items(config: EmbedConfig, codebook_id: str) -> Iterator[Item]:
    """Rows of the token shards, file by file (the shard reader: listed files only)."""
    where = {"split": [config.split] if config.split else None, "lang": config.langs}
    columns = ["id", "lang", "text", "tokens", "codebook"]
    for shard, table in shards.iter_shards(
        config.shards, schema.TOKENS_DIR, columns=columns, where=where
    ):
        found = set(table.column("codebook").unique().to_pylist())
        if found - {codebook_id}:
            raise ValueError(
                f"{shard.path} holds tokens of codebook {sorted(found)}, the run was trained "
                f"on {codebook_id}"
            )
        cols = table.select(["id", "lang", "text"]).to_pydict()
        tokens = table.column("tokens").to_pylist() if config.modality == "speech" else None
        for i, row_id in enumerate(cols["id"]):
            yield Item(
                id=row_id,
                lang=cols["lang"][i],
                modality=config.modality,
                text=cols["text"][i],
                tokens=None if tokens is None else np.asarray(tokens[i], dtype=np.int64),
            )


def text_items(uri: str) -> Iterator[Item | Reject]:
    """``{"id", "text", "lang"}`` per JSONL line (``id`` defaults to ``line:N``)."""
    from tokenizer.manifests.lines import iter_lines

    for lineno, raw in iter_lines(uri, MAX_LINE_BYTES):
        source = f"{uri}:{lineno}"
        if raw is None:
            yield Reject(
                id=f"line:{lineno}",
                source=source,
                stage="read",
                reason=Reason.MALFORMED_LINE,
                detail=f"line longer than {MAX_LINE_BYTES} bytes",
            )
            continue
        if not raw.strip():
            continue  # blank lines are not records
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield Reject(id=f"line:{lineno}", source=source, stage="read", reason=Reason.NON_UTF8)
            continue
        except json.JSONDecodeError as exc:
            yield Reject(
                id=f"line:{lineno}",
                source=source,
                stage="read",
                reason=Reason.MALFORMED_LINE,
                detail=str(exc),
            )
            continue
        obj = obj if isinstance(obj, dict) else {}
        row_id = str(obj.get("id") or f"line:{lineno}")
        text, lang = obj.get("text"), obj.get("lang")
        if not isinstance(text, str) or not text.strip():
            yield Reject(
                id=row_id, source=source, stage="read", reason=Reason.BAD_TEXT, detail="no text"
            )
        elif not isinstance(lang, str) or not lang.strip():
            yield Reject(
                id=row_id,
                source=source,
                stage="read",
                reason=Reason.MALFORMED_LINE,
                detail="no lang",
            )
        else:
            yield Item(id=row_id, lang=lang.strip(), modality="text", text=text)


def embed_items(model, items: list[Item], *, batch_size: int, autocast_dtype) -> np.ndarray:
    """float32 ``[n, dim]`` embeddings of items of one modality (the evaluator's calls)."""
    langs = [it.lang for it in items]
    if items and items[0].modality == "speech":
        out = model.embed_speech(
            [it.tokens for it in items], langs, batch_size=batch_size, autocast_dtype=autocast_dtype
        )
    else:
        out = model.embed_text(
            [it.text for it in items], langs, batch_size=batch_size, autocast_dtype=autocast_dtype
        )
    return out.numpy().astype(np.float32, copy=False)


def embedding_table(items: list[Item], embeddings: np.ndarray):
    import pyarrow as pa

    dim = embeddings.shape[1] if embeddings.ndim == 2 else 0
    offsets = pa.array(np.arange(len(items) + 1, dtype=np.int32) * dim)
    values = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1))
    return pa.table(
        {
            "id": pa.array([it.id for it in items], pa.string()),
            "lang": pa.array([it.lang for it in items], pa.string()),
            "modality": pa.array([it.modality for it in items], pa.string()),
            "text": pa.array([it.text for it in items], pa.string()),
            "embedding": pa.ListArray.from_arrays(offsets, values),
        },
        schema=schema.EMBEDDING_SCHEMA,
    )


def _prepare_out(out: str) -> None:
    previous = shards.Index.read(out)
    if previous is not None and previous.job != "embed":
        raise ValueError(
            f"{out} holds the output of `speechtok {previous.job}`: choose another --out"
        )
    shards.sweep_temp_files(out)
    for name in (schema.EMBEDDINGS_DIR, schema.REJECTS_DIR, FAISS_FILE, schema.INDEX_FILE):
        io.delete(io.join(out, name))


def embed(config: EmbedConfig) -> shards.Index:
    """Embed, write shards (+ faiss index), the index and the card; returns the index."""
    import torch

    from trainer.checkpoint import load_run

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if config.shards is not None and shards.Index.read(config.shards) is None:
        raise FileNotFoundError(f"{config.shards}: no _index.json (not a tokenize output folder)")
    if config.text is not None and not io.exists(config.text):
        raise FileNotFoundError(f"{config.text} does not exist")
    model, _, run_config = load_run(config.run, device=device)
    _prepare_out(config.out)
    autocast = torch.bfloat16 if config.precision == "bf16" else None
    source: Iterator = (
        shard_items(config, run_config["codebook"]["id"])
        if config.shards is not None
        else text_items(config.text)
    )
    write = shards.WriteConfig(rows_per_shard=config.rows_per_shard)
    index_faiss = _faiss_index(model.embed_dim) if config.faiss else None
    infos: list[shards.ShardInfo] = []
    rejects: list[dict] = []
    pending: list = []  # embedding tables not yet written
    n_pending = n_in = n_ok = 0
    batch: list[Item] = []

    def flush_batch() -> None:
        nonlocal n_pending, n_ok
        emb = embed_items(model, batch, batch_size=config.batch_size, autocast_dtype=autocast)
        if index_faiss is not None:
            index_faiss.add(emb)
        pending.append(embedding_table(batch, emb))
        n_pending += len(batch)
        n_ok += len(batch)
        batch.clear()

    def flush_shard(final: bool) -> None:
        nonlocal n_pending
        import pyarrow as pa

        while n_pending >= config.rows_per_shard or (final and n_pending):
            table = pa.concat_tables(pending)
            head = table.slice(0, config.rows_per_shard)
            infos.append(
                shards.write_shard(
                    head,
                    out_dir=config.out,
                    kind=schema.EMBEDDINGS_DIR,
                    index=len(infos),
                    config=write,
                )
            )
            rest = table.slice(head.num_rows)
            pending[:] = [rest] if rest.num_rows else []
            n_pending = rest.num_rows

    for item in source:
        n_in += 1
        if isinstance(item, Reject):
            rejects.append(item.as_row())
            continue
        batch.append(item)
        if len(batch) >= config.batch_size:
            flush_batch()
            flush_shard(final=False)
    if batch:
        flush_batch()
    flush_shard(final=True)
    if rejects:
        infos += shards.write_partition(
            rejects, out_dir=config.out, kind=schema.REJECTS_DIR, config=write
        )
    if index_faiss is not None:
        faiss = import_faiss()

        io.write_bytes(
            io.join(config.out, FAISS_FILE), faiss.serialize_index(index_faiss).tobytes()
        )
    index = shards.Index(
        job="embed",
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        counts={"input": n_in, "accepted": n_ok, "rejected": len(rejects)},
        rejects_by_reason=dict(Counter(r["reason"] for r in rejects)),
        shards=shards.shard_dicts(infos),
        extra=run_identity(config.run, run_config, model.embed_dim, config.precision)
        | {"faiss": FAISS_FILE if config.faiss else None},
    )
    index.write(config.out)
    card.write_card(config.out, index)
    return index


def run_identity(run: str, run_config: dict, dim: int, precision: str) -> dict:
    """What an embedding folder records of the run that made it (checked by search)."""
    return {
        "run": run,
        "run_step": int(run_config["step"]),
        "codebook": run_config["codebook"]["id"],
        "llm": run_config["llm"]["name"],
        "dim": int(dim),
        "normalized": bool(run_config["model"].get("normalize", True)),
        "precision": precision,
    }


def import_faiss():
    """faiss, with its loader's INFO lines (which CPU build it picked) kept out of the output."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is in the extras
        raise ImportError("--faiss needs faiss: pip install 'speechtok[faiss]'") from exc
    return faiss


def _faiss_index(dim: int):
    return import_faiss().IndexFlatIP(int(dim))
