"""Records that flow between stages: one utterance in, one reject out.

Every record that enters a job leaves it either as a shard row or as a
:class:`Reject` with a fixed reason code, so ``input = accepted + rejected``
always holds and can be checked.
"""

from __future__ import annotations

import dataclasses
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

    @classmethod
    def all(cls) -> frozenset[str]:
        return frozenset(v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str))


@dataclass(frozen=True, kw_only=True)
class AudioExample:
    """One recording and its text, as every manifest reader yields it.

    ``id`` is unique per recording (FLEURS records one sentence several times:
    the id comes from the audio file name). ``sentence_id`` aligns a sentence
    across recordings and languages.
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
