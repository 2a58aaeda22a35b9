"""The dataset card (``README.md``) of an output folder, written after ``_index.json``.

Its YAML header holds the ``configs`` / ``data_files`` block Hugging Face
``datasets`` reads, so ``datasets.load_dataset(OUT)`` gives a ``DatasetDict``
with the folder's splits (token shards: one split per ``split=`` folder),
plus one config per language (token shards) or language pair (bitext) and a
``rejects`` config. ``datasets`` ignores hive folder names, so the keys that
live only in them (``corpus``, ``split``, ``lang``; bitext ``src_lang``,
``tgt_lang``) are not columns there: the split and the per-language configs
stand for them. The body says what the folder holds (job, codebook,
encoder, frame rate, counts per split and language) and how to load it.

Everything is derived from the index, so after a ``--skip-existing`` append
(whose index covers every run) the card describes the whole folder.

Example::

    write_card("out/", Index.read("out/"))     # out/README.md
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from datastore import schema, storage
from datastore.identity import CodebookRef, FeatureIdentity
from datastore.shards import KINDS, Index, parse_partition

# datasets accepts split names matching this (datasets.splits._split_re).
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")
_SPLIT_ORDER = ("train", "dev", "validation", "test")


@dataclass(frozen=True)
class JobCard:
    """What a job says of its output folder on the card: a title ("audio-token
    shards (`speechtok tokenize`)") and facts of its own, ``facts(out_dir, index)``
    -> ``[(name, value)]`` (a module-level function: it travels with the job's
    index step to whichever worker writes the card). The card knows no job."""

    title: str
    facts: Callable[[str, Index], list[tuple[str, str]]] | None = None


def _split_key(name: str) -> tuple[int, str]:
    return (_SPLIT_ORDER.index(name) if name in _SPLIT_ORDER else len(_SPLIT_ORDER), name)


def _kinds(index: Index) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in index.shards:
        out.setdefault(s["path"].split("/", 1)[0], []).append(s)
    return out


def configs(index: Index) -> list[dict]:
    """The ``configs`` entries of the card: ``{"config_name", "data_files": [{split, path}]}``."""
    kinds = _kinds(index)
    out: list[dict] = []
    if schema.TOKENS_DIR in kinds:
        parts = [parse_partition(s["path"], schema.TOKENS_DIR) for s in kinds[schema.TOKENS_DIR]]
        splits = sorted(
            {p["split"] for p in parts if _SPLIT_NAME.match(p["split"])}, key=_split_key
        )
        files = "tokens/corpus=*/split={split}/lang={lang}/part-*.parquet"
        if splits:  # names datasets accepts as split names
            out.append(
                {
                    "config_name": "default",
                    "data_files": [
                        {"split": s, "path": files.format(split=s, lang="*")} for s in splits
                    ],
                }
            )
        for lang in sorted({p["lang"] for p in parts}):
            lang_splits = sorted(
                {p["split"] for p in parts if p["lang"] == lang and p["split"] in splits},
                key=_split_key,
            )
            if lang_splits and lang not in ("default", "rejects"):
                out.append(
                    {
                        "config_name": lang,
                        "data_files": [
                            {"split": s, "path": files.format(split=s, lang=lang)}
                            for s in lang_splits
                        ],
                    }
                )
    if schema.BITEXT_DIR in kinds:
        out.append(
            {
                "config_name": "default" if not out else "bitext",
                "data_files": [{"split": "train", "path": "bitext/*/*/part-*.parquet"}],
            }
        )
        pairs = sorted(
            {
                (p["src_lang"], p["tgt_lang"])
                for p in (parse_partition(s["path"], schema.BITEXT_DIR) for s in kinds["bitext"])
            }
        )
        for src, tgt in pairs:
            path = f"bitext/src_lang={src}/tgt_lang={tgt}/part-*.parquet"
            out.append(
                {"config_name": f"{src}-{tgt}", "data_files": [{"split": "train", "path": path}]}
            )
    if schema.EMBEDDINGS_DIR in kinds:
        split = index.config.get("split")  # embed --split
        out.append(
            {
                "config_name": "default" if not out else "embeddings",
                # embed --split test: the rows are the test split's
                "data_files": [
                    {
                        "split": split if split and _SPLIT_NAME.match(split) else "train",
                        "path": "embeddings/part-*.parquet",
                    }
                ],
            }
        )
    if schema.REJECTS_DIR in kinds:
        out.append(
            {
                "config_name": "default" if not out else "rejects",
                "data_files": [{"split": "train", "path": "rejects/part-*.parquet"}],
            }
        )
    return out


# The hub's size buckets (dataset cards' ``size_categories``).
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
          (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))  # fmt: skip


def size_category(rows: int) -> str:
    return next((name for limit, name in _SIZES if rows < limit), "n>10M")


def languages(index: Index) -> list[str]:
    """The languages of the folder's rows, from its partitions (token ``lang``,
    bitext ``src_lang`` and ``tgt_lang``)."""
    found: set[str] = set()
    for kind, keys in (
        (schema.TOKENS_DIR, ("lang",)),
        (schema.BITEXT_DIR, ("src_lang", "tgt_lang")),
    ):
        for s in _kinds(index).get(kind, []):
            found.update(parse_partition(s["path"], kind)[k] for k in keys)
    return sorted(found)


def header_facts(out_dir: str, index: Index) -> dict:
    """The card's hub metadata: ``pretty_name``, ``language``, ``license``, ``size_categories``."""
    rows = sum(int(s["rows"]) for s in index.shards if not s["path"].startswith("rejects/"))
    write = index.config.get("write") if isinstance(index.config.get("write"), dict) else {}
    return {
        "pretty_name": storage.basename(out_dir.rstrip("/")) or out_dir,
        "language": languages(index),
        "license": write.get("license") or "unknown",
        "size_categories": [size_category(rows)],
    }


def _yaml(configs_: list[dict], facts: dict | None = None) -> str:
    """The YAML header; strings are JSON-quoted (valid YAML double-quoted scalars)."""
    lines = ["---"]
    for key, value in (facts or {}).items():
        if isinstance(value, list):
            lines.append(f"{key}:" + ("".join(f"\n- {json.dumps(v)}" for v in value) or " []"))
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    if configs_:
        lines.append("configs:")
        for c in configs_:
            lines.append(f"- config_name: {json.dumps(c['config_name'])}")
            if c["config_name"] == "default":
                lines.append("  default: true")
            lines.append("  data_files:")
            for f in c["data_files"]:
                lines.append(f"  - split: {json.dumps(f['split'])}")
                lines.append(f"    path: {json.dumps(f['path'])}")
    lines.append("tags:")
    lines.append("- speechtok")
    lines.append("---")
    return "\n".join(lines)


def _token_facts(out_dir: str, index: Index, token_shards: list[dict]) -> list[tuple[str, str]]:
    extra, config = index.extra, index.config
    facts = []
    try:
        codebook = CodebookRef.from_index(extra)
    except ValueError:  # an id the card cannot parse is still shown: the card never fails a job
        codebook = None
        facts.append(("codebook", f"`{extra.get('codebook')}`"))
    if codebook:
        facts.append(("codebook", codebook.describe()))
    identity = FeatureIdentity.from_dict(extra.get("encoder"))
    if identity:
        facts.append(("encoder", identity.describe()))
    meta = _first_metadata(out_dir, token_shards)
    if schema.META_FRAME_RATE in meta:
        facts.append(("token rate", f"{float(meta[schema.META_FRAME_RATE].decode()):g} tokens/s"))
    if "dedup" in config:
        facts.append(
            ("run-length dedup", "yes (`durations` holds run lengths)" if config["dedup"] else "no")
        )
    return facts


def _first_metadata(out_dir: str, listed: list[dict]) -> dict:
    """Key-value metadata of the first shard (footer only)."""
    import pyarrow.parquet as pq

    if not listed:
        return {}
    with storage.open_read(storage.join(out_dir, listed[0]["path"])) as f:
        return dict(pq.ParquetFile(f).schema_arrow.metadata or {})


def _count_table(token_shards: list[dict]) -> list[str]:
    rows: Counter = Counter()
    for s in token_shards:
        p = parse_partition(s["path"], schema.TOKENS_DIR)
        rows[(p["split"], p["lang"])] += int(s["rows"])
    splits = sorted({k[0] for k in rows}, key=_split_key)
    langs = sorted({k[1] for k in rows})
    lines = [
        "| split | " + " | ".join(langs) + " | total |",
        "| --- | " + " | ".join("---:" for _ in langs) + " | ---: |",
    ]
    for split in splits:
        cells = [str(rows.get((split, lang), 0)) for lang in langs]
        total = sum(rows.get((split, lang), 0) for lang in langs)
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {total} |")
    return lines


def _type_name(t) -> str:
    """``float32``, ``list<int16>``: the names the README's schema table uses."""
    import pyarrow as pa

    if pa.types.is_list(t):
        return f"list<{_type_name(t.value_type)}>"
    return {pa.float32(): "float32", pa.float64(): "float64"}.get(t, str(t))


def _columns(kind: str) -> str:
    row_schema, keys = KINDS[kind]
    return ", ".join(
        f"`{f.name}` {_type_name(f.type)}" + (" (folder name)" if f.name in keys else "")
        for f in row_schema
    )


def _loading(out_dir: str, kinds: dict[str, list[dict]]) -> list[str]:
    main = next(
        (
            k
            for k in (
                schema.TOKENS_DIR,
                schema.BITEXT_DIR,
                schema.EMBEDDINGS_DIR,
                schema.REJECTS_DIR,
            )
            if k in kinds
        ),
        None,
    )
    if main is None:
        return []
    hive = "true" if KINDS[main][1] else "false"
    return [
        "## Loading",
        "",
        "```python",
        f"OUT = {json.dumps(out_dir)}",
        "import pandas as pd",
        f'df = pd.read_parquet(f"{{OUT}}/{main}")                 # pyarrow.parquet.read_table works the same',
        "import pyarrow.dataset as ds",
        f'table = ds.dataset(f"{{OUT}}/{main}", partitioning="hive").to_table()',
        "import duckdb",
        f"duckdb.sql(f\"SELECT * FROM read_parquet('{{OUT}}/{main}/**/*.parquet', hive_partitioning={hive})\")",
        "import polars as pl",
        f'pl.read_parquet(f"{{OUT}}/{main}/**/*.parquet", hive_partitioning={hive.title()})',
        "import datasets",
        "dd = datasets.load_dataset(OUT)                     # DatasetDict, one entry per split",
        "```",
        "",
        "Partition keys live in the folder names only: pandas and `pq.read_table` return",
        "them as categoricals, `pyarrow.dataset`, DuckDB and polars as strings, and",
        "`datasets` (which ignores folder names) not at all: use the split and the",
        'per-language (or per-pair) configs, e.g. `load_dataset(OUT, "fr")`.',
        "Only files listed in `_index.json` belong to the dataset.",
    ]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def render(out_dir: str, index: Index, job: JobCard | None = None) -> str:
    """The card's text (YAML header + Markdown body); ``job``: what the job that
    wrote the folder says of it (None: a generic title)."""
    kinds = _kinds(index)
    c = index.counts
    title = storage.basename(out_dir) or out_dir
    body = [
        _yaml(configs(index), header_facts(out_dir, index)),
        "",
        f"# {title}",
        "",
        _capital(job.title if job else f"`speechtok {index.job}` output")
        + f", shard schema version {schema.SCHEMA_VERSION}. Written with `_index.json` "
        "(every shard with rows, bytes and sha256; the job's config).",
        "",
        "| | |",
        "| --- | --- |",
    ]
    facts: list[tuple[str, str]] = []
    if schema.TOKENS_DIR in kinds:
        facts += _token_facts(out_dir, index, kinds[schema.TOKENS_DIR])
    if job and job.facts:
        facts += job.facts(out_dir, index)
    facts.append(
        ("records", f"input {c['input']}, accepted {c['accepted']}, rejected {c['rejected']}")
    )
    if index.rejects_by_reason:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(index.rejects_by_reason.items()))
        facts.append(("rejected by reason", reasons))
    runs = index.extra.get("runs")
    if runs:
        facts.append(("runs", f"{len(runs)} (appended with `--skip-existing`)"))
    for kind, group in sorted(kinds.items()):
        n_rows = sum(int(s["rows"]) for s in group)
        facts.append((f"{kind} shards", f"{len(group)} files, {n_rows} rows"))
    body += [f"| {k} | {v} |" for k, v in facts]
    if schema.TOKENS_DIR in kinds:
        body += ["", "Rows per split and language:", "", *_count_table(kinds[schema.TOKENS_DIR])]
    if kinds:
        body += ["", "## Columns", ""]
        body += [f"- `{kind}/`: {_columns(kind)}" for kind in sorted(kinds)]
    else:
        body += ["", "No shard files (no rows and no rejects)."]
    body += ["", *_loading(out_dir, kinds), ""]
    return "\n".join(body)


def write_card(out_dir: str, index: Index, job: JobCard | None = None) -> None:
    """Write ``out_dir/README.md`` (atomically, through :mod:`datastore.storage`)."""
    storage.write_text(storage.join(out_dir, schema.CARD_FILE), render(out_dir, index, job))
