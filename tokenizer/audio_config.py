"""What usable audio is (:class:`AudioConfig`) and how a file fails to be it
(:class:`AudioError`, a reject reason code and a detail).

Below :mod:`tokenizer.audio`, :mod:`tokenizer.mp3` and
:mod:`tokenizer.containers`, which all raise and configure with these.
"""

from __future__ import annotations

from dataclasses import dataclass

from datastore.records import AudioExample, Reject
from datastore.settings import setting

TARGET_SAMPLE_RATE = 16000


class AudioError(Exception):
    """A file that cannot become a usable waveform; ``reason`` is a reject code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class AudioConfig:
    """How audio is decoded and what counts as usable.

    ``max_seconds``: longer files are rejected (``too_long``), or cut into
    windows of at most that length when ``split_long`` is set.
    ``silence_peak``: a clip whose absolute peak stays below this is ``silent``.
    ``max_bytes``: files larger than this are refused (``too_long``): at most
    ``max_bytes + 1`` bytes are ever read, whatever size a file reports, so one
    huge file (or a device) cannot exhaust a worker's memory. The decoded
    samples are held to the same bound (float32 frames x channels, the unit
    :meth:`max_decoded_frames` counts): a small FLAC can hold hours, and
    ``--split-long`` keeps a recording's windows in memory together.
    """

    sample_rate: int = TARGET_SAMPLE_RATE
    min_seconds: float = 0.1
    max_seconds: float = setting(30.0, help="reject audio longer than this")
    split_long: bool = setting(
        False,
        help="cut audio longer than --max-seconds into windows (ids <id>#w000, ...) "
        "instead of rejecting it as too_long",
    )
    silence_peak: float = 1e-4
    max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if not 0 <= self.min_seconds < self.max_seconds:
            raise ValueError(
                f"need 0 <= min_seconds < max_seconds, got {self.min_seconds}, {self.max_seconds}"
            )
        if self.silence_peak < 0 or self.max_bytes <= 0:
            raise ValueError("silence_peak must be >= 0 and max_bytes > 0")

    def max_decoded_frames(self, channels: int) -> int:
        """Frames of ``channels`` float32 samples that fit in ``max_bytes``."""
        return self.max_bytes // (4 * max(1, channels))


def decode_reject(example: AudioExample, reason: str, detail: str) -> Reject:
    return Reject(id=example.id, source=example.uri, stage="decode", reason=reason, detail=detail)
