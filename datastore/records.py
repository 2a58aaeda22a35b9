"""Records that flow between stages: one utterance in, one reject out.

Every record that enters a job leaves it either as a shard row or as a
:class:`Reject` with a fixed reason code, so ``input = accepted + rejected``
always holds and can be checked.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


class Reason:
    """The fixed reject reason codes (strings, so they read well in Parquet)."""

    MISSING_FILE = "missing_file"
    NOT_A_FILE = "not_a_file"  # a FIFO, device, socket or directory named as audio
    DECODE_ERROR = "decode_error"
    EMPTY_AUDIO = "empty_audio"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    NON_FINITE = "non_finite"
    SILENT = "silent"
    BAD_TEXT = "bad_text"
    NON_UTF8 = "non_utf8"
    DUPLICATE_ID = "duplicate_id"
    PATH_ESCAPE = "path_escape"
    MALFORMED_LINE = "malformed_line"
    ENCODE_ERROR = "encode_error"
    LOW_SCORE = "low_score"
    LENGTH = "length"
    LENGTH_RATIO = "length_ratio"
    IDENTICAL_SIDES = "identical_sides"
    DUPLICATE_PAIR = "duplicate_pair"
    LANG_FILTER = "lang_filter"
    BAD_GZIP = "bad_gzip"
    BAD_SEGMENT = "bad_segment"  # a segment outside its recording, or a channel it lacks
    SHELL_COMMAND = "shell_command"  # audio from a shell command, not run without --allow-commands

    @classmethod
    def all(cls) -> frozenset[str]:
        return frozenset(v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str))


# How an AudioExample's ``uri`` names its audio (see AudioExample).
FILE, TAR, PARQUET, COMMAND = "file", "tar", "parquet", "command"
AUDIO_KINDS = (FILE, TAR, PARQUET, COMMAND)


@dataclass(frozen=True, kw_only=True)
class AudioExample:
    """One utterance and its text, as every manifest reader yields it.

    ``id`` is unique per utterance (FLEURS records one sentence several times:
    the id comes from the audio file name). ``sentence_id`` aligns a sentence
    across recordings and languages.

    ``audio_kind`` says what ``uri`` is: ``file`` (a path or URI), ``tar``
    (``ARCHIVE#member=NAME``, a member of a tar archive), ``parquet``
    (``FILE#row_group=R&row=N&column=C``, encoded bytes in a Parquet cell) or
    ``command`` (a shell command whose stdout is the audio). The record stays
    small either way: audio bytes never travel with it (the speech jobs
    shuffle examples, and the embedded runner holds a shuffle in memory).

    A segment: ``offset_s`` (seconds into the recording) and ``duration_s``
    (``None``: to the end); only that part is decoded. ``channel``: the one
    channel of a multi-channel file to use (``None``: all, downmixed).
    """

    id: str
    uri: str
    text: str
    lang: str
    split: str
    corpus: str
    source_lang: str | None = None
    sentence_id: str | None = None
    speaker: str | None = None
    translation: str | None = None
    tgt_lang: str | None = None
    audio_kind: str = FILE
    offset_s: float | None = None
    duration_s: float | None = None
    channel: int | None = None

    def __post_init__(self) -> None:
        if self.audio_kind not in AUDIO_KINDS:
            raise ValueError(f"audio_kind must be one of {AUDIO_KINDS}, got {self.audio_kind!r}")
        if self.offset_s is not None and not (math.isfinite(self.offset_s) and self.offset_s >= 0):
            raise ValueError(f"offset_s must be finite and >= 0, got {self.offset_s}")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise ValueError(f"duration_s must be finite and > 0, got {self.duration_s}")
        if self.channel is not None and self.channel < 0:
            raise ValueError(f"channel must be >= 0, got {self.channel}")

    @property
    def is_segment(self) -> bool:
        return self.offset_s is not None or self.duration_s is not None

    def replace(self, **changes) -> AudioExample:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class Reject:
    """A record a job could not use: where it came from, which stage, and why.

    ``source`` names the input (a manifest path with ``:line``, an audio URI);
    ``detail`` is a short human-readable explanation.
    """

    id: str
    source: str
    stage: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in Reason.all():
            raise ValueError(f"unknown reject reason {self.reason!r}")

    def as_row(self) -> dict[str, str]:
        return dataclasses.asdict(self)
