"""A stratified, mergeable reservoir sample of encoder frames for fitting codebooks.

Why: a codebook fitted on "all frames" is dominated by whichever language (or
whichever hour-long file) has the most audio. This sampler keeps

- at most ``max_frames_per_utt`` frames of any one utterance (a uniform
  sample of its frames),
- at most ``frames_per_lang`` frames per language (a uniform sample of that
  language's capped frames),

and :meth:`StratifiedReservoir.extract` then splits ``sample_frames`` evenly
across languages (a language with fewer frames gives its unused share to the
others).

It is built for a Beam ``CombineFn`` but imports no Beam: ``add`` /
``merge`` / ``extract`` are plain Python. Every frame's random keys are a
function of ``(seed, utterance id, frame index)`` only, and a language keeps
the frames with the smallest keys (bottom-k sampling), so the result does not
depend on the order of ``add`` calls or on how partial samples were split and
merged: the same seed gives the same sample on one core or on Dataflow.
Memory is bounded by ``frames_per_lang`` per language (plus a quarter of
that, or 4,096 frames, between compactions), never by the input.

Example (and the CombineFn the fit-codebook job wraps it in)::

    res = StratifiedReservoir(SamplerConfig(sample_frames=100_000, max_frames_per_utt=200))
    res.add("fr", "fr/utt1", frames)           # frames: float32 [T, dim]
    sample = res.merge(other).extract()        # sample.frames: [<=100000, dim]

    class SampleFrames(beam.CombineFn):
        def create_accumulator(self): return StratifiedReservoir(cfg)
        def add_input(self, acc, item): acc.add(*item); return acc
        def merge_accumulators(self, accs): return StratifiedReservoir.merge_all(accs)
        def extract_output(self, acc): return acc.extract()
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """``sample_frames`` in total; ``frames_per_lang`` kept per language while
    streaming (default: ``sample_frames``; set it near ``sample_frames /
    n_langs`` times a margin when many languages make memory matter);
    ``max_frames_per_utt`` (None: no cap); ``seed``."""

    sample_frames: int
    max_frames_per_utt: int | None = None
    frames_per_lang: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sample_frames < 1:
            raise ValueError(f"sample_frames must be >= 1, got {self.sample_frames}")
        if self.max_frames_per_utt is not None and self.max_frames_per_utt < 1:
            raise ValueError(f"max_frames_per_utt must be >= 1, got {self.max_frames_per_utt}")
        if self.frames_per_lang is not None and self.frames_per_lang < 1:
            raise ValueError(f"frames_per_lang must be >= 1, got {self.frames_per_lang}")

    @property
    def lang_capacity(self) -> int:
        return self.frames_per_lang or self.sample_frames


@dataclass
class FrameSample:
    """What :meth:`StratifiedReservoir.extract` returns (ordered by language, then key)."""

    frames: np.ndarray  # float32 [n, dim]
    langs: np.ndarray  # str [n], the language of each frame
    per_lang: dict[str, int]  # frames taken per language
    seen_frames: dict[str, int]  # frames offered per language (before any cap)
    seen_utts: dict[str, int]


@dataclass
class _LangReservoir:
    keys: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    held: int = 0
    seen_frames: int = 0
    seen_utts: int = 0

    def push(self, keys: np.ndarray, frames: np.ndarray, capacity: int) -> None:
        self.keys.append(keys)
        self.frames.append(frames)
        self.held += len(keys)
        if self.held > capacity + compaction_slack(capacity):  # amortised: a sort per slack's worth
            self.compact(capacity)

    def compact(self, capacity: int) -> None:
        """One block, sorted by key, of at most ``capacity`` frames."""
        if not self.keys:
            return
        keys = np.concatenate(self.keys)
        frames = np.concatenate(self.frames)
        order = np.argsort(keys, kind="stable")[:capacity]
        self.keys, self.frames = [keys[order]], [frames[order]]
        self.held = len(order)


def compaction_slack(capacity: int) -> int:
    """Frames a language may hold over its capacity before it is compacted:
    the sample's memory is 1.25x the sample at most (it was 2x), for 4x more
    (cheap) compactions; which frames are kept does not depend on it."""
    return max(4096, capacity // 4)


def _utterance_rng(seed: int, utt_id: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}\x00{utt_id}".encode(), digest_size=16).digest()
    return np.random.default_rng(list(np.frombuffer(digest, dtype=np.uint32)))


class StratifiedReservoir:
    """Mergeable per-language bottom-k sample of frames (see the module docstring)."""

    def __init__(self, config: SamplerConfig):
        self.config = config
        self._langs: dict[str, _LangReservoir] = {}
        self._dim: int | None = None

    @property
    def dim(self) -> int | None:
        return self._dim

    def held_frames(self) -> dict[str, int]:
        """Frames currently held per language (at most ``frames_per_lang`` plus its slack)."""
        return {lang: r.held for lang, r in sorted(self._langs.items())}

    def add(self, lang: str, utt_id: str, frames: np.ndarray) -> StratifiedReservoir:
        """Offer one utterance's frames ``[T, dim]``; keeps a capped, keyed subset."""
        arr = np.asarray(frames)
        if arr.ndim != 2:
            raise ValueError(f"frames must be [T, dim], got shape {arr.shape}")
        self._check_dim(arr.shape[1])
        res = self._langs.setdefault(lang, _LangReservoir())
        res.seen_frames += arr.shape[0]
        res.seen_utts += 1
        if arr.shape[0] == 0:
            return self
        rng = _utterance_rng(self.config.seed, utt_id)
        pick_keys = rng.random(arr.shape[0])
        # Fresh keys for the language-level choice: reusing the (small) keys
        # that won inside a long utterance would favour long utterances.
        lang_keys = rng.random(arr.shape[0])
        cap = self.config.max_frames_per_utt
        if cap is not None and arr.shape[0] > cap:
            chosen = np.sort(np.argsort(pick_keys, kind="stable")[:cap])
        else:
            chosen = np.arange(arr.shape[0])
        kept = np.array(arr[chosen], dtype=np.float32)
        res.push(lang_keys[chosen], kept, self.config.lang_capacity)
        return self

    def merge(self, other: StratifiedReservoir) -> StratifiedReservoir:
        """Fold ``other`` into this reservoir (in place) and return it."""
        if other.config != self.config:
            raise ValueError("cannot merge reservoirs with different configs")
        if other._dim is not None:
            self._check_dim(other._dim)
        for lang, theirs in other._langs.items():
            mine = self._langs.setdefault(lang, _LangReservoir())
            mine.seen_frames += theirs.seen_frames
            mine.seen_utts += theirs.seen_utts
            for keys, frames in zip(theirs.keys, theirs.frames, strict=True):
                mine.push(keys, frames, self.config.lang_capacity)
        return self

    @classmethod
    def merge_all(cls, reservoirs: Iterable[StratifiedReservoir]) -> StratifiedReservoir:
        items = iter(reservoirs)
        first = next(items)
        for other in items:
            first.merge(other)
        return first

    def compact(self) -> StratifiedReservoir:
        """Every language down to ``frames_per_lang`` frames (in place): what a
        reservoir keeps anyway, before it is sent between workers."""
        for res in self._langs.values():
            res.compact(self.config.lang_capacity)
        return self

    def keep(self, quota: dict[str, int]) -> StratifiedReservoir:
        """Each language cut to the ``quota[lang]`` frames :meth:`extract` would
        take (its smallest keys), in place; its seen counts stay. The fit-codebook
        job cuts each language's reservoir to its share before joining them, so
        no element it passes holds more than the final sample."""
        for lang, res in self._langs.items():
            res.compact(min(quota.get(lang, 0), self.config.lang_capacity))
        return self

    def extract(self) -> FrameSample:
        """The final sample: ``sample_frames`` split evenly across languages."""
        for res in self._langs.values():
            res.compact(self.config.lang_capacity)
        langs = sorted(self._langs)
        available = {lang: self._langs[lang].held for lang in langs}
        quota = allocate(available, self.config.sample_frames)
        dim = self._dim or 0
        blocks = [self._langs[lang].frames[0][: quota[lang]] for lang in langs if quota[lang]]
        frames = np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype=np.float32)
        labels = np.array([lang for lang in langs for _ in range(quota[lang])], dtype=object)
        return FrameSample(
            frames=frames,
            langs=labels.astype(str) if labels.size else np.zeros(0, dtype=str),
            per_lang=quota,
            seen_frames={lang: self._langs[lang].seen_frames for lang in langs},
            seen_utts={lang: self._langs[lang].seen_utts for lang in langs},
        )

    def _check_dim(self, dim: int) -> None:
        if self._dim is None:
            self._dim = int(dim)
        elif self._dim != dim:
            raise ValueError(f"frames have {dim} features, earlier ones {self._dim}")


def allocate(available: dict[str, int], budget: int) -> dict[str, int]:
    """Split ``budget`` evenly over languages, never more than a language has.

    Water-filling: languages with fewer frames than the even share take all
    they have and the rest is shared again; a remainder that does not divide
    goes one frame each to the languages first in sorted order.
    """
    quota = dict.fromkeys(available, 0)
    open_langs = sorted(lang for lang, n in available.items() if n > 0)
    left = budget
    while open_langs and left > 0:
        share, extra = divmod(left, len(open_langs))
        short = [lang for lang in open_langs if available[lang] - quota[lang] <= share]
        if short:
            for lang in short:
                left -= available[lang] - quota[lang]
                quota[lang] = available[lang]
            open_langs = [lang for lang in open_langs if lang not in short]
            continue
        for i, lang in enumerate(open_langs):
            quota[lang] += share + (1 if i < extra else 0)
        left = 0
    return quota
