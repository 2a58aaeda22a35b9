"""``speechtok embed``: a trained run turns token shards or texts into embeddings.

Input is streamed: token shards file by file through the shard reader (the
files ``_index.json`` lists; a split and languages prune whole files), a
JSONL file line by line (``{"id", "text", "lang"}``; a bad line becomes a
reject with a reason, never a crash). Rows are embedded batch-wise with the
evaluator's model calls (:meth:`trainer.model.DualEncoder.embed_speech` /
``embed_text``) and written as they come:
``OUT/embeddings/part-NNNNN.parquet`` (``datastore.schema.EMBEDDING_SCHEMA``:
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

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from datastore import card, outfolder, schema, shards, storage
from datastore.errors import JobFailed
from datastore.outlock import held_token
from datastore.records import Reason, Reject
from datastore.settings import setting
from datastore.shards import READ_FAILED_HELP

log = logging.getLogger(__name__)
FAISS_FILE = "index.faiss"


def embed_card_facts(_out_dir: str, index: shards.Index) -> list[tuple[str, str]]:
    """The run's identity and the faiss file, as the index's extra names them."""
    return [(k, f"`{v}`") for k, v in index.extra.items() if not isinstance(v, (dict, list))]


CARD = card.JobCard(
    title="embeddings of a trained dual encoder (`speechtok embed`)", facts=embed_card_facts
)
MODALITIES = ("speech", "text")
PRECISIONS = ("fp32", "bf16")
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True, kw_only=True)
class EmbedConfig:
    """One of ``shards`` (a tokenize output folder) or ``text`` (a JSONL file).

    ``modality``: with ``shards``, embed the recordings (``speech``) or their
    transcripts (``text``). ``split``/``langs``: which shards (default: all).
    """

    run: str = setting(help="train --out folder")
    out: str = setting(help="embedding folder to write")
    shards: str | None = setting(None, help="tokenize --out folder")
    text: str | None = setting(None, help="JSONL file, one {id, text, lang} per line")
    split: str | None = setting(None, help="--shards: only this split (default: all)")
    langs: tuple[str, ...] | None = setting(
        None, help="--shards: comma-separated languages (default: all)"
    )
    modality: str = setting(
        "speech",
        choices=MODALITIES,
        help="--shards: embed the recordings (speech) or their transcripts (text)",
    )
    faiss: bool = setting(False, help="also write an inner-product index")
    device: str | None = setting(None, help="cpu | cuda | cuda:N (default: cuda when available)")
    precision: str = setting(
        "fp32",
        choices=PRECISIONS,
        help="fp32 (matches `speechtok export` to 1e-4) or bf16 autocast",
    )
    batch_size: int = setting(32, help="inputs per forward pass")
    rows_per_shard: int = 50_000
    read_failed: bool = setting(False, help=READ_FAILED_HELP)

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
        config.shards,
        schema.TOKENS_DIR,
        columns=columns,
        where=where,
        allow_failed=config.read_failed,
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
    """``{"id", "text", "lang"}`` per JSONL line (``id`` defaults to ``line:N``).

    A line is read like a manifest line (:func:`tokenizer.manifests.fields.
    json_object`): whatever it holds is an item or one reject, never a crash.
    """
    from tokenizer.manifests.fields import clean_lang, json_object, lang_problem
    from tokenizer.manifests.lines import iter_lines, line_reject, text_problem, unwritable

    for lineno, raw in iter_lines(uri, MAX_LINE_BYTES):
        obj, reject = json_object(uri, lineno, raw, MAX_LINE_BYTES)
        if reject is not None:  # ids of lines without one read "line:N", as items'
            yield dataclasses.replace(reject, id=f"line:{lineno}")
        if obj is None:
            continue
        given = obj.get("id")
        row_id = given if isinstance(given, str) and given and not unwritable(given) else None
        row_id = row_id or f"line:{lineno}"
        text, lang = obj.get("text"), obj.get("lang")
        problem = text_problem(text) if isinstance(text, str) else "no text"
        if problem:
            yield line_reject(uri, lineno, Reason.BAD_TEXT, problem, id=row_id)
            continue
        lang = clean_lang(lang) if isinstance(lang, str) else None
        problem = "no lang" if not lang else lang_problem(lang)
        if problem:
            yield line_reject(uri, lineno, Reason.MALFORMED_LINE, problem, id=row_id)
            continue
        yield Item(id=row_id, lang=lang, modality="text", text=text)


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
    outfolder.check_folder_job(out, outfolder.readable_index(out), "embed")
    outfolder.start_fresh(out, (schema.EMBEDDINGS_DIR, schema.REJECTS_DIR, FAISS_FILE))


def embed(config: EmbedConfig) -> shards.Index:
    """Embed, write shards (+ faiss index), the index and the card; returns the index."""
    import torch

    from trainer.checkpoint import load_run

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if config.shards is not None and shards.Index.read(config.shards) is None:
        raise FileNotFoundError(f"{config.shards}: no _index.json (not a tokenize output folder)")
    if config.text is not None and not storage.exists(config.text):
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
    files = []
    if index_faiss is not None:
        faiss = import_faiss()

        data = faiss.serialize_index(index_faiss).tobytes()
        storage.write_bytes(storage.join(config.out, FAISS_FILE), data)
        files.append(listed_file(FAISS_FILE, data))
    index = shards.Index(
        job="embed",
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        counts={"input": n_in, "accepted": n_ok, "rejected": len(rejects)},
        rejects_by_reason=dict(Counter(r["reason"] for r in rejects)),
        shards=shards.shard_dicts(infos),
        extra=run_identity(config.run, run_config, model.embed_dim, config.precision)
        | {"faiss": FAISS_FILE if config.faiss else None},
        files=files,
    )
    if n_in == 0:  # published as failed: search refuses the folder
        where = config.shards or config.text
        index.status, index.failure = shards.FAILED, f"no input records found in {where}"
    index.write(config.out, fence=held_token(config.out))
    card.write_card(config.out, index, CARD)
    if n_in == 0:
        raise JobFailed(index.failure)
    return index


def listed_file(path: str, data: bytes) -> dict:
    """An index's entry for a file it lists besides shards."""
    import hashlib

    return {"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


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
