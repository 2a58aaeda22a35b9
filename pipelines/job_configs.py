"""The Beam jobs' configs and the flags generated from them, without Beam.

``speechtok --help`` and a mistyped flag must answer in well under a second
or two; importing Beam takes seconds. So the job configs live here, apart
from the job modules that import Beam (callers import them from here), and
the CLI builds the jobs' flags from these fields
(:mod:`datastore.settings`): defaults, help and choices are stated once.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from corpora.bitext import BitextConfig
from datastore import shards
from datastore.settings import add_flags, setting, values
from tokenizer.audio_config import AudioConfig
from tokenizer.encoders.base import EncoderConfig
from tokenizer.manifests import OWN_SPLITS, ManifestConfig
from tokenizer.prefetch import POOLS


def _decode_threads():
    return setting(
        None,
        help="audio decoding threads per worker process, running ahead of the model "
        "(default: one per core)",
    )


def _decode_pool():
    return setting(
        "auto",
        choices=POOLS,
        help="decode in threads or in processes (as many as --decode-threads); auto: "
        "processes with --device cuda (threads share the model's GIL), threads on CPU",
    )


def _check_decode(config) -> None:
    """The decode settings both speech jobs share (:class:`pipelines.speech.EncodeClips`)."""
    if config.decode_threads is not None and config.decode_threads < 1:
        raise ValueError(f"decode_threads must be >= 1, got {config.decode_threads}")
    if config.decode_pool not in POOLS:
        raise ValueError(f"decode_pool must be one of {POOLS}, got {config.decode_pool!r}")


@dataclass(frozen=True, kw_only=True)
class TokenizeJobConfig:
    manifest: ManifestConfig
    encoder: EncoderConfig
    codebook: str = setting(help="codebook folder (fit-codebook --out)")
    out: str = setting(help="output folder")
    audio: AudioConfig = field(default_factory=AudioConfig)
    dedup: bool = setting(
        False, help="run-length deduplicate tokens (durations column keeps the run lengths)"
    )
    skip_existing: bool = setting(False, help="only ids not yet in --out")
    decode_threads: int | None = _decode_threads()
    decode_pool: str = _decode_pool()
    write: shards.WriteConfig = field(default_factory=shards.WriteConfig)

    def __post_init__(self) -> None:
        _check_decode(self)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _backends():
    from kmeans import available_backends

    return available_backends()


# What fit-codebook reads of a corpus with splits when --splits names none.
FIT_SPLITS = ("train",)


@dataclass(frozen=True, kw_only=True)
class FitCodebookJobConfig:
    """Fitted on the **train** split unless ``--splits`` says otherwise (formats
    whose records carry a split: the test audio must not shape the codebook
    unless asked); ``codebook.json`` records the splits and languages fitted on.
    ``sample_frames``: frames k-means sees (split evenly over languages);
    ``max_frames_per_utt``: so one long file cannot dominate; ``save_sample``:
    also write that sample (``OUT/sample/frames.npy`` float32 [n, dim] and
    ``langs.npy``), to refit with other k or backends without re-encoding."""

    manifest: ManifestConfig
    encoder: EncoderConfig
    k: int = setting(help="number of centroids (paper: 1024)")
    out: str = setting(help="codebook folder to write")
    audio: AudioConfig = field(default_factory=AudioConfig)
    sample_frames: int = setting(200_000, help="frames to sample in total")
    max_frames_per_utt: int | None = setting(500, help="cap of sampled frames per utterance")
    downsample: int = setting(
        1,
        help="average N consecutive frames before fitting (2: Whisper 50 Hz -> 25 Hz, as the "
        "paper's 25 Hz tokens); tokenize applies the codebook the same way",
    )
    backend: str = setting("torch", choices=_backends, help="k-means implementation")
    save_sample: bool = setting(
        False,
        help="also write the sampled frames (CB_DIR/sample/frames.npy, langs.npy): refit "
        "with other k or backends, or benchmark k-means, without encoding again",
    )
    seed: int = setting(0, help="seed of the sample and of k-means")
    decode_threads: int | None = _decode_threads()
    decode_pool: str = _decode_pool()
    write: shards.WriteConfig = field(default_factory=shards.WriteConfig)

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"k must be >= 2, got {self.k}")
        if self.sample_frames < self.k:
            raise ValueError(f"sample_frames ({self.sample_frames}) must be >= k ({self.k})")
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {self.downsample}")
        if self.manifest.splits is None and self.manifest.format in OWN_SPLITS:
            object.__setattr__(
                self, "manifest", dataclasses.replace(self.manifest, splits=FIT_SPLITS)
            )
        _check_decode(self)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class BitextJobConfig:
    input: str = setting(help="glob of WikiMatrix.*.tsv.gz (local or gs://)")
    out: str = setting(help="output folder")
    filters: BitextConfig
    write: shards.WriteConfig = field(default_factory=shards.WriteConfig)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["filters"]["langs"] = sorted(self.filters.langs) if self.filters.langs else None
        return d


# -- flags ----------------------------------------------------------------------------
def add_source_flags(parser: argparse.ArgumentParser, added: set[str]) -> None:
    """The manifest, audio and encoder flags both speech jobs share."""
    add_flags(parser, ManifestConfig, required=("format", "input"), added=added)
    add_flags(parser, EncoderConfig, required=("name",), added=added)
    add_flags(parser, AudioConfig, added=added)


def source_configs(args: argparse.Namespace) -> tuple[ManifestConfig, AudioConfig, EncoderConfig]:
    return (
        ManifestConfig(**values(ManifestConfig, args)),
        AudioConfig(**values(AudioConfig, args)),
        EncoderConfig(**values(EncoderConfig, args)),
    )


def add_tokenize_flags(parser: argparse.ArgumentParser) -> None:
    added: set[str] = set()
    add_source_flags(parser, added)
    add_flags(parser, TokenizeJobConfig, required=("codebook", "out"), added=added)
    add_flags(parser, shards.WriteConfig, added=added)


def tokenize_config(args: argparse.Namespace) -> TokenizeJobConfig:
    manifest, audio, encoder = source_configs(args)
    return TokenizeJobConfig(
        manifest=manifest,
        encoder=encoder,
        audio=audio,
        write=shards.WriteConfig(**values(shards.WriteConfig, args)),
        **values(TokenizeJobConfig, args),
    )


def add_fit_codebook_flags(parser: argparse.ArgumentParser) -> None:
    added: set[str] = set()
    add_source_flags(parser, added)
    add_flags(parser, FitCodebookJobConfig, required=("k", "out"), added=added)


def fit_codebook_config(args: argparse.Namespace) -> FitCodebookJobConfig:
    manifest, audio, encoder = source_configs(args)
    return FitCodebookJobConfig(
        manifest=manifest, encoder=encoder, audio=audio, **values(FitCodebookJobConfig, args)
    )


def add_bitext_flags(parser: argparse.ArgumentParser) -> None:
    added: set[str] = set()
    add_flags(parser, BitextJobConfig, required=("input", "out"), added=added)
    add_flags(parser, BitextConfig, required=("min_score",), added=added)
    add_flags(parser, shards.WriteConfig, added=added)


def bitext_config(args: argparse.Namespace) -> BitextJobConfig:
    return BitextJobConfig(
        **values(BitextJobConfig, args),
        filters=BitextConfig(**values(BitextConfig, args)),
        write=shards.WriteConfig(**values(shards.WriteConfig, args)),
    )
