"""Training data from token shards (+ bitext shards): reading, batching, position.

Rows come from ``DIR/tokens/corpus=C/split=S/lang=L/part-*.parquet`` through
the shard reader (:func:`datastore.shards.iter_shards`): only files listed in
``DIR/_index.json`` are read (a stale shard of an earlier run in the folder
is not), a split/language/corpus filter prunes whole files by their folder
names, and every read goes through :mod:`datastore.storage`. The selected columns
are held in memory column-wise (tokens as one int16 buffer + offsets: ~2
bytes per token), which fits CoVoST 2 or FLEURS comfortably.

Batches follow a plan that is a pure function of ``(seed, epoch)``:

1. permute all rows;
2. walk the permutation in windows of ``shuffle_buffer`` rows (the shuffle
   buffer); inside a window, group rows by language (one language per batch
   worked best), sort by length and cut batches greedily under both a pair
   cap (``batch_size``) and a padded-token budget (``max_tokens``), so each
   batch holds similar lengths (length bucketing). The sort key is the length
   times a random factor in ``1 +- length_jitter`` drawn per epoch: with a
   strict sort a small corpus is cut into the *same* batches every epoch, so
   each utterance only ever meets the same handful of negatives;
3. shuffle the window's batches; a language's last, partial batch waits for
   the next window.

Because the plan is recomputed, the loader's position is just ``(epoch,
index)`` (+ the bitext cursor): resuming replays nothing and is exact. With
``world`` DDP ranks, round ``i`` gives rank ``r`` batch ``i * world + r``.

Example::

    rows = TokenRows.read("out/", split="train")
    loader = ShardLoader(rows, DataConfig(batch_size=16, seed=0))
    batch = loader.next_batch()      # Batch(speech=[...], texts=[...], langs=[...])
    state = loader.state_dict()      # {"epoch": 0, "index": 1, ...}
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from datastore import schema, storage
from datastore import shards as shard_io
from datastore.identity import CodebookRef
from datastore.settings import setting

PREFIX_TOKENS_ESTIMATE = 8  # specials + "[fr] [speech]" in the budget estimate
TOKEN_COLUMNS = ["id", "lang", "tokens", "text", "codebook"]
BITEXT_COLUMNS = ["src_lang", "tgt_lang", "src_text", "tgt_text"]


class ShardError(ValueError):
    """Shards that cannot be trained on as asked (no rows, mixed codebooks...)."""


DEFAULT_BITEXT_RATIO = 0.2


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which rows to read and how to batch them."""

    shards: str = setting(help="tokenize --out folder")  # holds tokens/
    bitext: str | None = setting(None, help="bitext --out folder (text<->text pairs)")
    split: str = setting("train", help="token-shard split to train on")
    langs: tuple[str, ...] | None = setting(
        None, help="comma-separated languages to train on (default: all)"
    )
    corpora: tuple[str, ...] | None = None
    batch_size: int = setting(16, help="pairs per batch (at most)")
    max_tokens: int = setting(16384, help="padded speech + text tokens per batch")
    shuffle_buffer: int = 4096
    # None: 0.2 with bitext shards, else 0 (one rule for the CLI and the Python API).
    bitext_ratio: float | None = setting(
        None,
        help="share of the pairs of a batch drawn from bitext",
        default_text="0.2 with --bitext, else 0",
    )
    min_batch_size: int = 2  # contrastive needs in-batch negatives
    length_jitter: float = setting(
        0.0,
        help="length-bucketing noise: sort key = length x U(1 - j, 1 + j), redrawn per "
        "epoch (the demo uses 0.3)",
    )
    seed: int = 0  # set from TrainConfig.seed by the CLI
    read_failed: bool = setting(False, help=shard_io.READ_FAILED_HELP)

    def __post_init__(self):
        if self.bitext_ratio is None:
            object.__setattr__(self, "bitext_ratio", DEFAULT_BITEXT_RATIO if self.bitext else 0.0)
        if not 0.0 <= self.length_jitter < 1.0:
            raise ValueError(f"length_jitter must be in [0, 1), got {self.length_jitter}")
        if self.batch_size < 1 or self.max_tokens < 1 or self.shuffle_buffer < 1:
            raise ValueError("batch_size, max_tokens and shuffle_buffer must be >= 1")
        if not 1 <= self.min_batch_size <= self.batch_size:
            raise ValueError("need 1 <= min_batch_size <= batch_size")
        if not 0.0 <= self.bitext_ratio < 1.0:
            raise ValueError(f"bitext_ratio must be in [0, 1), got {self.bitext_ratio}")
        if self.bitext_ratio > 0 and not self.bitext:
            raise ValueError("bitext_ratio > 0 needs bitext shards")


def text_group(text: str) -> int:
    """A stable 63-bit id of a text: pairs with the same text are not negatives of each other."""
    digest = hashlib.blake2b(" ".join(text.split()).casefold().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(kw_only=True)
class TokenRows:
    """The selected token-shard rows, column-wise in memory."""

    ids: list[str]
    langs: np.ndarray  # object array of str
    values: np.ndarray  # int16, every row's tokens back to back
    offsets: np.ndarray  # int64 [n + 1]
    texts: list[str]
    groups: np.ndarray  # int64 text ids
    codebook: CodebookRef  # without uri: the shards do not say where it is

    def __len__(self) -> int:
        return len(self.ids)

    def tokens(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def read(
        cls,
        shards: str,
        *,
        split: str = "train",
        langs=None,
        corpora=None,
        allow_failed: bool = False,
    ) -> TokenRows:
        """Read ``shards/tokens`` filtered by split (+ languages, corpora) from the hive keys."""
        import pyarrow as pa
        import pyarrow.compute as pc

        root = storage.join(shards, schema.TOKENS_DIR)
        if not storage.exists(storage.join(shards, schema.INDEX_FILE)) and not storage.exists(root):
            raise FileNotFoundError(f"no token shards: {root} does not exist")
        where = {"split": [split], "lang": langs, "corpus": corpora}
        try:
            parts = list(
                shard_io.iter_shards(
                    shards,
                    schema.TOKENS_DIR,
                    columns=TOKEN_COLUMNS,
                    where=where,
                    verify=True,
                    allow_failed=allow_failed,
                )
            )
        except ValueError as exc:  # a listed file without the token columns
            raise ShardError(str(exc)) from None
        if not parts:
            raise ShardError(f"{root}: no rows for split={split} langs={langs} corpora={corpora}")
        table = pa.concat_tables([t.replace_schema_metadata(None) for _, t in parts])
        if table.num_rows == 0:
            raise ShardError(f"{root}: no rows for split={split} langs={langs} corpora={corpora}")
        codebook = _codebook_of(table, [t.schema.metadata for _, t in parts])
        tokens = table.column("tokens").combine_chunks()
        values = tokens.values.to_numpy(zero_copy_only=False).astype(np.int16, copy=False)
        offsets = tokens.offsets.to_numpy().astype(np.int64)
        values = values[offsets[0] : offsets[-1]]
        offsets = offsets - offsets[0]
        if values.size and (int(values.min()) < 0 or int(values.max()) >= codebook.k):
            raise ShardError(
                f"token ids {int(values.min())}..{int(values.max())} outside codebook "
                f"{codebook.id} (k={codebook.k})"
            )
        texts = table.column("text").to_pylist()
        return cls(
            ids=table.column("id").to_pylist(),
            langs=np.asarray(pc.cast(table.column("lang"), "string").to_pylist(), dtype=object),
            values=values,
            offsets=offsets,
            texts=texts,
            groups=np.fromiter((text_group(t) for t in texts), dtype=np.int64, count=len(texts)),
            codebook=codebook,
        )


def _codebook_of(table, metadatas) -> CodebookRef:
    """The one codebook of the rows (id column + sha256 from the files' metadata)."""
    import pyarrow.compute as pc

    ids = pc.unique(table.column("codebook")).to_pylist()
    if len(ids) != 1:
        raise ShardError(f"shards mix codebooks {sorted(ids)}: train on one codebook at a time")
    shas = set()
    for meta in metadatas:
        if meta and schema.META_CODEBOOK_SHA256 in meta:
            shas.add(meta[schema.META_CODEBOOK_SHA256].decode())
    if len(shas) > 1:
        raise ShardError(f"shards of codebook {ids[0]} carry different sha256s: {sorted(shas)}")
    try:
        return CodebookRef.from_id(ids[0], shas.pop() if shas else None)
    except ValueError as error:
        raise ShardError(str(error)) from None


@dataclass(kw_only=True)
class BitextRows:
    """Translation pairs from ``bitext/src_lang=A/tgt_lang=B`` shards, in memory."""

    src_langs: list[str]
    tgt_langs: list[str]
    src_texts: list[str]
    tgt_texts: list[str]

    def __len__(self) -> int:
        return len(self.src_texts)

    @classmethod
    def read(cls, bitext: str, *, langs=None, allow_failed: bool = False) -> BitextRows:
        """Read pairs; with ``langs``, keep those with either side in ``langs``."""
        import pyarrow as pa

        root = storage.join(bitext, schema.BITEXT_DIR)
        if not storage.exists(storage.join(bitext, schema.INDEX_FILE)) and not storage.exists(root):
            raise FileNotFoundError(f"no bitext shards: {root} does not exist")
        wanted = set(langs or ())
        tables = [
            t.replace_schema_metadata(None)
            for shard, t in shard_io.iter_shards(
                bitext,
                schema.BITEXT_DIR,
                columns=BITEXT_COLUMNS,
                verify=True,
                allow_failed=allow_failed,
            )
            if not wanted or wanted & set(shard.partition.values())
        ]
        table = pa.concat_tables(tables) if tables else None
        if table is None or table.num_rows == 0:
            raise ShardError(f"{root}: no bitext pairs for langs={langs}")
        cols = {c: [str(v) for v in table.column(c).to_pylist()] for c in BITEXT_COLUMNS}
        return cls(
            src_langs=cols["src_lang"],
            tgt_langs=cols["tgt_lang"],
            src_texts=cols["src_text"],
            tgt_texts=cols["tgt_text"],
        )


@dataclass(kw_only=True)
class Batch:
    """One rank's batch: speech/transcript pairs (+ text/text pairs from bitext)."""

    ids: list[str]
    speech: list[np.ndarray]  # codebook ids per utterance
    texts: list[str]
    langs: list[str]
    groups: np.ndarray  # int64 text ids (same text: not a negative)
    bitext_src: list[str] = field(default_factory=list)
    bitext_src_langs: list[str] = field(default_factory=list)
    bitext_tgt: list[str] = field(default_factory=list)
    bitext_tgt_langs: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids) + len(self.bitext_src)


def plan_epoch(
    lengths: np.ndarray,
    text_lengths: np.ndarray,
    langs: np.ndarray,
    *,
    seed: int,
    epoch: int,
    batch_size: int,
    max_tokens: int,
    shuffle_buffer: int,
    min_batch_size: int = 2,
    length_jitter: float = 0.0,
) -> list[np.ndarray]:
    """The epoch's batches as row-index arrays (see the module docstring); deterministic."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    sort_key = np.asarray(lengths, dtype=np.float64)
    if length_jitter > 0:
        sort_key = sort_key * rng.uniform(1 - length_jitter, 1 + length_jitter, len(lengths))
    names, codes = np.unique(np.asarray(langs, dtype=object).astype(str), return_inverse=True)
    pending: dict[int, np.ndarray] = {}
    batches: list[np.ndarray] = []
    for start in range(0, len(order), shuffle_buffer):
        window = order[start : start + shuffle_buffer]
        last_window = start + shuffle_buffer >= len(order)
        window_batches: list[np.ndarray] = []
        for code in range(len(names)):
            rows = np.concatenate([pending.pop(code, window[:0]), window[codes[window] == code]])
            if not rows.size:
                continue
            rows = rows[np.lexsort((rows, sort_key[rows]))]  # by (jittered) length, ties by row
            cut = _cut(rows, lengths, text_lengths, batch_size, max_tokens, min_batch_size)
            if cut and not last_window and len(cut[-1]) < batch_size:
                pending[code] = cut.pop()  # a partial batch waits for more rows of its language
            window_batches += cut
        for j in rng.permutation(len(window_batches)):
            batches.append(window_batches[j])
    return [b for b in batches if len(b) >= min_batch_size]


def _cut(rows, lengths, text_lengths, batch_size, max_tokens, min_batch_size) -> list[np.ndarray]:
    """Greedy cut of length-sorted rows under the pair cap and the padded-token budget."""
    out: list[np.ndarray] = []
    first = 0
    longest_speech = longest_text = 0
    for pos, i in enumerate(rows.tolist()):
        speech = max(longest_speech, int(lengths[i]))
        text = max(longest_text, int(text_lengths[i]))
        size = pos - first
        over_budget = (size + 1) * (speech + text) > max_tokens
        if size and (size >= batch_size or (over_budget and size >= min_batch_size)):
            out.append(rows[first:pos])
            first, speech, text = pos, int(lengths[i]), int(text_lengths[i])
        longest_speech, longest_text = speech, text
    if first < len(rows):
        out.append(rows[first:])
    return out


class ShardLoader:
    """Deterministic, resumable batches for one rank (see the module docstring)."""

    def __init__(
        self,
        rows: TokenRows,
        config: DataConfig,
        *,
        bitext: BitextRows | None = None,
        max_speech_tokens: int = 1024,
        max_text_tokens: int = 128,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        if config.bitext_ratio > 0 and bitext is None:
            raise ValueError("bitext_ratio > 0 but no bitext rows given")
        self.rows, self.config, self.bitext = rows, config, bitext
        self.rank, self.world_size = rank, world_size
        self.max_speech_tokens = max_speech_tokens
        self.max_text_tokens = max_text_tokens
        self._speech_cost = np.minimum(rows.lengths, max_speech_tokens) + PREFIX_TOKENS_ESTIMATE
        # Budget estimate of text tokens without tokenizing: ~3 UTF-8 bytes per LLM token.
        utf8 = np.fromiter((len(t.encode()) for t in rows.texts), np.int64, count=len(rows))
        self._text_cost = np.minimum(utf8 // 3 + 1, max_text_tokens) + PREFIX_TOKENS_ESTIMATE
        self.epoch = self.index = 0
        self.bitext_epoch = self.bitext_index = 0
        self._plan_epoch: int | None = None
        self._plan: list[np.ndarray] = []
        self._bitext_cache: tuple = (None, None, None)

    # -- position ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "index": self.index,
            "bitext_epoch": self.bitext_epoch,
            "bitext_index": self.bitext_index,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self.bitext_epoch = int(state.get("bitext_epoch", 0))
        self.bitext_index = int(state.get("bitext_index", 0))

    def rounds_per_epoch(self) -> int:
        return len(self._epoch_plan(self.epoch)) // self.world_size

    # -- batches ----------------------------------------------------------------------------

    def _epoch_plan(self, epoch: int) -> list[np.ndarray]:
        if self._plan_epoch != epoch:
            cfg = self.config
            self._plan = plan_epoch(
                self._speech_cost,
                self._text_cost,
                self.rows.langs,
                seed=cfg.seed,
                epoch=epoch,
                batch_size=cfg.batch_size,
                max_tokens=cfg.max_tokens,
                shuffle_buffer=cfg.shuffle_buffer,
                min_batch_size=cfg.min_batch_size,
                length_jitter=cfg.length_jitter,
            )
            self._plan_epoch = epoch
            if len(self._plan) < self.world_size:
                raise ShardError(
                    f"{len(self.rows)} rows make {len(self._plan)} batches of >= "
                    f"{cfg.min_batch_size} pairs: not enough for {self.world_size} rank(s)"
                )
        return self._plan

    def next_batch(self) -> Batch:
        plan = self._epoch_plan(self.epoch)
        if self.index >= len(plan) // self.world_size:
            self.epoch, self.index = self.epoch + 1, 0
            plan = self._epoch_plan(self.epoch)
        round_batches = plan[self.index * self.world_size : (self.index + 1) * self.world_size]
        self.index += 1
        # Every rank draws the round's bitext for all ranks, so the cursors stay in step.
        bitext_parts = [self._draw_bitext(self._bitext_count(len(b))) for b in round_batches]
        return self._make_batch(round_batches[self.rank], bitext_parts[self.rank])

    def __iter__(self):
        while True:
            yield self.next_batch()

    def _bitext_count(self, n_speech: int) -> int:
        ratio = self.config.bitext_ratio
        return round(n_speech * ratio / (1.0 - ratio)) if ratio > 0 else 0

    def _bitext_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._bitext_cache[0] != epoch:
            rng = np.random.default_rng([self.config.seed, 1, epoch])
            order = rng.permutation(len(self.bitext))
            swap = rng.random(len(self.bitext)) < 0.5
            self._bitext_cache = (epoch, order, swap)
        return self._bitext_cache[1], self._bitext_cache[2]

    def _draw_bitext(self, count: int) -> list[tuple[int, bool]]:
        """``count`` (row, swapped) pairs from the bitext stream; directions are mixed."""
        out: list[tuple[int, bool]] = []
        while count > 0 and self.bitext is not None:
            order, swap = self._bitext_order(self.bitext_epoch)
            take = order[self.bitext_index : self.bitext_index + count]
            out += [(int(i), bool(swap[i])) for i in take]
            count -= len(take)
            self.bitext_index += len(take)
            if self.bitext_index >= len(order):
                self.bitext_epoch, self.bitext_index = self.bitext_epoch + 1, 0
        return out

    def _make_batch(self, idx: np.ndarray, bitext: list[tuple[int, bool]]) -> Batch:
        rows = self.rows
        batch = Batch(
            ids=[rows.ids[i] for i in idx],
            speech=[rows.tokens(int(i)) for i in idx],
            texts=[rows.texts[i] for i in idx],
            langs=[str(rows.langs[i]) for i in idx],
            groups=rows.groups[idx].copy(),
        )
        bt = self.bitext
        for i, swapped in bitext:
            src, tgt = (
                (bt.tgt_texts[i], bt.src_texts[i])
                if swapped
                else (bt.src_texts[i], bt.tgt_texts[i])
            )
            src_lang, tgt_lang = (
                (bt.tgt_langs[i], bt.src_langs[i])
                if swapped
                else (bt.src_langs[i], bt.tgt_langs[i])
            )
            batch.bitext_src.append(src)
            batch.bitext_tgt.append(tgt)
            batch.bitext_src_langs.append(src_lang)
            batch.bitext_tgt_langs.append(tgt_lang)
        return batch
