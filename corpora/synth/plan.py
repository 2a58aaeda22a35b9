"""Which recordings mini-FLEURS makes: splits, sentence selection, voices, file names.

Everything is drawn from hashes of the seed and a recording's identity (no
RNG state), so a plan depends only on the configuration: not on worker count,
order, or platform. See :mod:`corpora.synth.synth` for the decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corpora.synth import espeak, layouts
from tokenizer.languages import Language

if TYPE_CHECKING:
    from corpora.synth.synth import SynthConfig

RATE_RANGE = (150, 200)  # words per minute
PITCH_RANGE = (35, 65)  # espeak pitch, 50 = the voice's own


@dataclass(frozen=True, kw_only=True)
class Recording:
    """One recording to make: which sentence, which corpus layout, which voice."""

    corpus: str  # "fleurs" | "cv"
    lang: str
    sentence_id: int
    split: str
    text: str
    file_name: str
    variant: str
    rate: int
    pitch: int

    @property
    def gender(self) -> str:
        return "male" if self.variant.startswith("m") else "female"


def assign_splits(ids: Sequence[int], config: SynthConfig) -> dict[int, str]:
    """Sentence id -> split, the same for every language (fractions: see :mod:`.synth`)."""
    ranked = _hash_order(ids, config.seed, "split")
    n_test = max(1, round(config.test_fraction * len(ranked)))
    n_dev = round(config.dev_fraction * len(ranked))
    return {
        i: "test" if k < n_test else "dev" if k < n_test + n_dev else "train"
        for k, i in enumerate(ranked)
    }


def _hash_order(ids, *keys) -> list[int]:
    return sorted(ids, key=lambda i: (layouts.unit(*keys, i), i))


def _draw(key: tuple, name: str, bounds: tuple[int, int]) -> int:
    """An integer in ``bounds`` (inclusive) drawn from a hash of the recording's key."""
    low, high = bounds
    return low + int(layouts.unit(*key, name) * (high - low + 1))


def select_ids(
    available: Sequence[int], split_of: dict[int, str], config: SynthConfig
) -> list[int]:
    """The sentence ids one language speaks: all, or ``per_lang`` in split proportions."""
    ids = sorted(i for i in available if i in split_of)
    if config.per_lang is None or config.per_lang >= len(ids):
        return ids
    n = config.per_lang
    n_test = round(config.test_fraction * n)
    n_dev = round(config.dev_fraction * n)
    quota = {"test": n_test, "dev": n_dev, "train": max(0, n - n_test - n_dev)}
    chosen = []
    for split, count in quota.items():
        in_split = [i for i in ids if split_of[i] == split]
        chosen += _hash_order(in_split, config.seed, "select")[:count]
    return sorted(chosen)


def plan_recordings(
    config: SynthConfig,
    langs: Sequence[Language],
    texts: dict[str, dict[int, str]],
    selection: dict[str, list[int]],
    split_of: dict[int, str],
) -> list[Recording]:
    """Every recording of the corpus, in a fixed order."""
    recordings = []
    for lang in langs:
        for corpus in ("fleurs", "cv") if lang.seen else ("fleurs",):
            used: set[str] = set()
            for sid in selection[lang.short]:
                variants = _hash_order(espeak.VARIANTS, config.seed, corpus, lang.short, sid)
                for r, variant in enumerate(variants[: config.voices]):
                    key = (config.seed, corpus, lang.short, sid, r)
                    recordings.append(
                        Recording(
                            corpus=corpus,
                            lang=lang.short,
                            sentence_id=sid,
                            split=split_of[sid],
                            text=texts[lang.short][sid],
                            file_name=_file_name(corpus, lang, key, used),
                            variant=variant,
                            rate=_draw(key, "rate", RATE_RANGE),
                            pitch=_draw(key, "pitch", PITCH_RANGE),
                        )
                    )
    return recordings


def _file_name(corpus: str, lang: Language, key: tuple, used: set[str]) -> str:
    """FLEURS-like ``{64-bit number}.wav``, Common Voice-like ``common_voice_{code}_{8 digits}.mp3``."""
    n = layouts.digest_int(*key, "file")
    if corpus == "cv":
        n %= 9 * 10**7
    while True:
        name = f"{n}.wav" if corpus == "fleurs" else f"common_voice_{lang.covost}_{10**7 + n}.mp3"
        if name not in used:
            used.add(name)
            return name
        n += 1
