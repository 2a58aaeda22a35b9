"""One recording: speak a text, check it is speech, encode it, write it.

Runs inside a worker process of :mod:`corpora.synth.pool` (espeak may abort
the process). Items and results are plain JSON-able dicts.

Example::

    render({"uri": "out/a.wav", "text": "Hello.", "voice": "en-us", "variant": "f2",
            "rate": 170, "pitch": 45, "sample_rate": 16000, "format": "wav"})
    # -> {"status": "ok", "n_samples": 17280, "seconds": 1.08}
"""

from __future__ import annotations

import io as _bytes_io

import numpy as np
import soundfile as sf

from corpora.synth import espeak
from datastore import storage

OK = "ok"
SILENT = "silent"
FORMATS = {"wav": ("WAV", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}

# Near-silence check (measured on espeak-ng 1.52 with the UDHR text): real
# speech keeps >= 0.64 of its 20 ms frames above -40 dBFS in every usable
# language; voices without a dictionary (fo, kaa) give 0.0 and ~0.5 s per paragraph.
_FRAME_S = 0.02
_VOICED_RMS = 0.01
MIN_VOICED_FRACTION = 0.3
MIN_SECONDS = 0.25


def silence_problem(wave: np.ndarray, sample_rate: int) -> str | None:
    """Why ``wave`` is not usable speech (too short, near-silent), or None."""
    seconds = wave.size / sample_rate
    if seconds < MIN_SECONDS:
        return f"too short ({seconds:.2f} s)"
    frame = round(_FRAME_S * sample_rate)
    frames = wave[: wave.size // frame * frame].reshape(-1, frame)
    voiced = float((np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) > _VOICED_RMS).mean())
    if voiced < MIN_VOICED_FRACTION:
        return f"near-silent ({voiced:.0%} of frames above -40 dBFS)"
    return None


def encode(wave: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """WAV (16-bit PCM, as FLEURS) or MP3 (as Common Voice) bytes; samples clipped to [-1, 1)."""
    container, subtype = FORMATS[fmt]
    pcm = np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)
    buf = _bytes_io.BytesIO()
    sf.write(buf, pcm, sample_rate, format=container, subtype=subtype)
    return buf.getvalue()


def render(item: dict) -> dict:
    """Synthesize ``item["text"]`` and write it to ``item["uri"]`` unless it is not speech."""
    sample_rate = int(item["sample_rate"])
    wave = espeak.synthesize(
        item["text"],
        item["voice"],
        variant=item.get("variant"),
        rate=int(item.get("rate", 175)),
        pitch=int(item.get("pitch", 50)),
        sample_rate=sample_rate,
    )
    problem = silence_problem(wave, sample_rate)
    if problem:
        return {"status": SILENT, "detail": problem}
    storage.write_bytes(item["uri"], encode(wave, sample_rate, item["format"]))
    return {"status": OK, "n_samples": int(wave.size), "seconds": wave.size / sample_rate}
