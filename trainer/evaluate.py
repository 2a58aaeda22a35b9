"""``speechtok eval``: retrieval with a trained run, per language.

Speech -> transcript: every recording of a language in the split is a query;
the pool is that language's distinct sentences (one candidate per
``sentence_id``), as in FLEURS retrieval. ``pool_splits`` widens the pool to
the sentences of more splits (dev + test: a larger pool than one split
holds), the queries staying those of ``split``. Speech -> translation: each query
retrieves from the pool of English sentences of the split (joined by
``sentence_id`` for n-way parallel corpora such as FLEURS, else the rows'
``translation`` column) and the retrieved sentence is scored against the
reference with BLEU. Languages of the run's training shards are "seen".

The shards must carry the run's codebook (the ``codebook`` column's id and the
sha256 in the Parquet file metadata against the run's ``config.json``): token
ids of another codebook of the same k are valid numbers with another meaning,
and gave a plausible but meaningless report. ``report.json`` names the
codebook it was computed with.

Example::

    report = evaluate(EvalConfig(run="runs/a", shards="out/tokens-test", out="reports/a"))
    report["mean_r_at_1_unseen"]
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from datastore import schema, storage
from datastore.outlock import check_still_held
from datastore.settings import setting
from datastore.shards import READ_FAILED_HELP
from trainer import report as report_lib
from trainer import retrieval

log = logging.getLogger(__name__)
PIVOT = "en"
COLUMNS = ["id", "lang", "split", "sentence_id", "text", "translation", "tokens", "codebook"]
RANKS_FILE = "ranks.json"


class CodebookMismatch(ValueError):
    """Eval shards tokenized with another codebook than the run was trained on."""


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """``langs``: evaluate only these; ``seen``: override the languages counted as seen
    (default: the languages of the run's training shards); ``allow_hub``: the run's
    LLM may be downloaded when its config names a hub id (see
    :func:`trainer.checkpoint.load_run`); ``pool_splits``: the splits whose
    sentences are candidates (default: ``split`` alone); ``write_ranks``: also
    write ``ranks.json`` (each query's id and 0-based rank, per language), for
    intervals across runs."""

    run: str = setting(help="train --out folder")
    shards: str = setting(help="tokenize --out folder")
    out: str = setting(help="report folder")
    split: str = setting("test", help="token-shard split to evaluate")
    langs: tuple[str, ...] | None = setting(
        None, help="evaluate only these languages (default: all in the split)"
    )
    seen: tuple[str, ...] | None = setting(
        None, help="languages to count as seen (default: those of the run's training shards)"
    )
    device: str | None = setting(None, help="cpu | cuda (default: cuda when available)")
    batch_size: int = 32
    allow_hub: bool = setting(
        False,
        help="let the run's config.json name a Hugging Face hub model to download "
        "(also needs HF_HUB_OFFLINE unset); default: local folders only",
    )
    pool_splits: tuple[str, ...] | None = None  # the candidate pool's splits (default: split)
    write_ranks: bool = False  # also write ranks.json (each query's rank)
    read_failed: bool = setting(False, help=READ_FAILED_HELP)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.pool_splits is not None and self.split not in self.pool_splits:
            raise ValueError(f"pool_splits {self.pool_splits} must include split {self.split!r}")


@dataclass
class Split:
    """The eval rows of one split, column-wise."""

    ids: list[str]
    langs: list[str]
    sentence_ids: list[str]
    texts: list[str]
    translations: list[str | None]
    tokens: list[np.ndarray]
    codebook_ids: set[str] = field(default_factory=set)  # the rows' ``codebook`` values
    codebook_sha256s: set[str] = field(default_factory=set)  # from the files' metadata
    splits: list[str] | None = None  # each row's split (None: all rows of one split)


def read_split(
    shards: str, split: str | tuple[str, ...], langs=None, *, allow_failed: bool = False
) -> Split:
    """The rows of one split or several (optionally some languages), sorted by id:
    the shard reader's files, i.e. those ``_index.json`` lists."""
    from datastore import shards as shard_io

    root = storage.join(shards, schema.TOKENS_DIR)
    if not storage.exists(storage.join(shards, schema.INDEX_FILE)) and not storage.exists(root):
        raise FileNotFoundError(f"no token shards under {root}")
    tables, shas = [], set()
    wanted = [split] if isinstance(split, str) else list(split)
    where = {"split": wanted, "lang": langs}
    # verify: each file's sha256 against the index (a swapped shard must not be scored).
    listed = shard_io.iter_shards(
        shards,
        schema.TOKENS_DIR,
        columns=COLUMNS,
        where=where,
        verify=True,
        allow_failed=allow_failed,
    )
    for _, table in listed:
        meta = table.schema.metadata or {}
        if schema.META_CODEBOOK_SHA256 in meta:  # the file's own record of its codebook
            shas.add(meta[schema.META_CODEBOOK_SHA256].decode())
        tables.append(table.replace_schema_metadata(None))
    if not tables or sum(t.num_rows for t in tables) == 0:
        raise ValueError(f"no rows of split {split!r} in {root}")
    cols = pa.concat_tables(tables).sort_by("id").to_pydict()
    # Rows without a sentence id are their own sentence (keyed by text).
    sentence_ids = [
        s if s is not None else f"text:{t}"
        for s, t in zip(cols["sentence_id"], cols["text"], strict=True)
    ]
    return Split(
        ids=cols["id"],
        langs=cols["lang"],
        sentence_ids=sentence_ids,
        texts=cols["text"],
        translations=cols["translation"],
        tokens=[np.asarray(t, dtype=np.int64) for t in cols["tokens"]],
        codebook_ids=set(cols["codebook"]),
        codebook_sha256s=shas,
        splits=cols["split"],
    )


def check_codebook(split: Split, run_codebook: dict, shards: str, run: str) -> None:
    """Refuse shards whose codebook (id, and sha256 where both sides know it) is
    not the run's: one line naming both."""
    run_id, run_sha = run_codebook.get("id"), run_codebook.get("sha256")
    ids, shas = sorted(split.codebook_ids), sorted(split.codebook_sha256s)
    same_id = ids == [run_id]
    same_sha = not run_sha or not shas or shas == [run_sha]
    if not (same_id and same_sha):
        shard_sha = ", ".join(s[:16] for s in shas) or "unknown"
        raise CodebookMismatch(
            f"{shards} holds tokens of codebook {', '.join(map(str, ids))} (sha256 {shard_sha}), "
            f"the run {run} was trained on {run_id} (sha256 {(run_sha or 'unknown')[:16]}): "
            "tokenize the eval split with the run's codebook"
        )


@dataclass
class _Report(report_lib.Report):
    """The report plus the codebook it was computed with."""

    codebook: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "codebook": self.codebook}


def seen_languages(run_config: dict) -> list[str]:
    """The languages the run trained on (its training shards' split, or its --langs)."""
    data = (run_config.get("train") or {}).get("data") or {}
    if data.get("langs"):
        return sorted(data["langs"])
    try:
        train = read_split(data["shards"], data.get("split", "train"))
    except (KeyError, FileNotFoundError, ValueError):
        log.warning("cannot read the run's training shards: no language counts as seen")
        return []
    return sorted(set(train.langs))


def _pool(indices: list[int], split: Split) -> tuple[list[str], dict[str, int]]:
    """Distinct sentences of some rows: texts and ``sentence_id -> pool index``."""
    texts, where = [], {}
    for i in indices:
        sid = split.sentence_ids[i]
        if sid not in where:
            where[sid] = len(texts)
            texts.append(split.texts[i])
    return texts, where


def english_pool(split: Split) -> tuple[list[str], dict[str, str]]:
    """Candidate English sentences and ``sentence_id -> English text``.

    The pool holds the split's English sentences (one per sentence id) and
    every distinct ``translation``, so n-way parallel corpora (FLEURS) and
    translation-column corpora (CoVoST 2) are both covered.
    """
    english = {}
    for i, lang in enumerate(split.langs):
        if lang == PIVOT:
            english.setdefault(split.sentence_ids[i], split.texts[i])
    pool = list(dict.fromkeys([*english.values(), *(t for t in split.translations if t)]))
    return pool, english


def references(rows: list[int], split: Split, english: dict[str, str]) -> list[str | None]:
    """The English reference of each query row (None when there is none)."""
    return [english.get(split.sentence_ids[i]) or split.translations[i] for i in rows]


def evaluate(config: EvalConfig) -> dict:
    """Embed, retrieve and write the report (json, md, png); returns report.json's content."""
    import torch

    from trainer.checkpoint import load_run, read_config

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    split = read_split(
        config.shards,
        config.pool_splits or config.split,
        config.langs,
        allow_failed=config.read_failed,
    )
    run_codebook = read_config(config.run).get("codebook") or {}
    check_codebook(split, run_codebook, config.shards, config.run)  # before loading the model
    model, _, run_config = load_run(config.run, device=device, allow_hub=config.allow_hub)
    precision = (run_config.get("train") or {}).get("precision") or "bf16"
    autocast = torch.bfloat16 if precision == "bf16" else None
    seen = set(config.seen if config.seen is not None else seen_languages(run_config))

    by_lang: dict[str, list[int]] = defaultdict(list)  # queries: rows of config.split
    candidates: dict[str, list[int]] = defaultdict(list)  # pool: rows of every read split
    for i, lang in enumerate(split.langs):
        candidates[lang].append(i)
        if split.splits is None or split.splits[i] == config.split:
            by_lang[lang].append(i)
    pool, english = english_pool(split)
    pool_emb = (
        model.embed_text(pool, [PIVOT] * len(pool), autocast_dtype=autocast).numpy()
        if pool
        else None
    )

    results, ranks_out = {}, {}
    for lang in sorted(by_lang):
        rows = by_lang[lang]
        texts, where = _pool(candidates[lang], split)
        speech = model.embed_speech(
            [split.tokens[i] for i in rows],
            [lang] * len(rows),
            batch_size=config.batch_size,
            autocast_dtype=autocast,
        ).numpy()
        text_emb = model.embed_text(texts, [lang] * len(texts), autocast_dtype=autocast).numpy()
        targets = [where[split.sentence_ids[i]] for i in rows]
        ranks = retrieval.target_ranks(speech, text_emb, targets, device=device)
        m = retrieval.retrieval_metrics(ranks)
        ranks_out[lang] = {"ids": [split.ids[i] for i in rows], "ranks": ranks.tolist()}
        bleu = None
        refs = references(rows, split, english)
        if lang != PIVOT and pool_emb is not None and any(refs):
            keep = [j for j, r in enumerate(refs) if r]
            hyps = [pool[j] for j in retrieval.top1(speech[keep], pool_emb, device=device)]
            bleu = retrieval.corpus_bleu(hyps, [refs[j] for j in keep])
        results[lang] = report_lib.LanguageResult(
            r_at_1=m["r_at_1"],
            r_at_5=m["r_at_5"],
            mrr=m["mrr"],
            n_queries=len(rows),
            pool_size=len(texts),
            bleu=bleu,
            hits=(ranks == 0).astype(float).tolist(),
        )
        log.info(
            "%s: R@1 %.3f (chance %.3f), %d queries", lang, m["r_at_1"], 1 / len(texts), len(rows)
        )
    langs = sorted(results)
    unknown = sorted(set(config.seen or ()) - set(langs))
    if unknown:  # a typo here would silently count a seen language as unseen
        log.warning(
            "--seen names %s, which the evaluated shards do not hold (they hold %s)",
            ", ".join(unknown),
            ", ".join(langs),
        )
    rep = _Report(
        results=results,
        seen=[x for x in langs if x in seen],
        unseen=[x for x in langs if x not in seen],
        codebook={"id": run_codebook.get("id"), "sha256": run_codebook.get("sha256")},
    )
    check_still_held(config.out)  # fencing: a broken lock publishes no report
    data = report_lib.write_report(rep, config.out)
    if config.write_ranks:
        storage.write_text(
            storage.join(config.out, RANKS_FILE), json.dumps(ranks_out, sort_keys=True)
        )
    return data
