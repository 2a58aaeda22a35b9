"""In-process espeak-ng 1.52 through ctypes: text -> 16 kHz float32 speech.

The PyPI package ``espeakng-loader`` ships ``libespeak-ng`` and its data, so
no system package is needed. The library runs in synchronous mode and hands
its 22.05 kHz int16 audio to a callback; we resample with soxr.

Reproducibility: espeak-ng keeps hidden state between utterances (the pitch
"flutter" phase, the gain control, the glottal cycle counter, and ``rand()``
for breathy voices), so the same text synthesized twice in one process
differs by a few samples. We reset that state before every utterance: the
three static variables are located through the library's ELF symbol table
(the wheel ships it unstripped) and both random generators are reseeded.
Each utterance then depends only on its text and settings, whatever ran
before it, in whichever process. Where the symbols cannot be found (another
build or platform) a warning says that audio may vary slightly between runs.

The library is not thread-safe: calls are serialised with a lock; run
processes for parallelism. Some inputs make it abort the whole process
(Burmese: "buffer overflow detected"): callers that must survive that run it
in a worker process (see :mod:`corpora.synth.pool`).

Example::

    from corpora.synth.espeak import synthesize
    wave = synthesize("Bonjour tout le monde.", "fr", variant="f2", rate=160)
"""

from __future__ import annotations

import ctypes
import logging
import struct
import sys
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

NATIVE_SAMPLE_RATE = 22050
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_BUFFER_MS = 1000

# Hidden per-process state in wavegen.c that leaks from one utterance into the
# next; values are those set when the library starts.
_STATE_RESET = {"Flutter_ix": 0, "agc": 256, "cycle_count": 0}
_RAND_SEED = 1

# Letters espeak reads as "modifier letter apostrophe" and then switches to
# English mid-word for (measured on be, gn, uz): spell them as apostrophes.
_APOSTROPHES = str.maketrans({"\u02bc": "'", "\u02bb": "'"})


class EspeakError(RuntimeError):
    """espeak-ng refused a request (unknown voice, failed synthesis)."""


def prepare_text(text: str) -> str:
    """The text as espeak should read it: apostrophes normalised, whitespace collapsed."""
    return " ".join(text.translate(_APOSTROPHES).split())


def _elf_symbols(path: str, wanted: set[str]) -> dict[str, int]:
    """Offsets of the named symbols (static ones carry a ``.NNNN`` suffix) in an ELF64 file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # ELF64, little endian
        return {}
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    found: dict[str, set[int]] = {}
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 2 or not entsize:  # SHT_SYMTAB
            continue
        str_offset = sections[link][4]
        for pos in range(offset, offset + size, entsize):
            name_at, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, pos)
            end = data.index(b"\0", str_offset + name_at)
            name = data[str_offset + name_at : end].decode("ascii", "replace").split(".")[0]
            if name in wanted and value:
                found.setdefault(name, set()).add(value)
    # A name defined twice (two static variables) is ambiguous: leave it out.
    return {name: values.pop() for name, values in found.items() if len(values) == 1}


@dataclass
class _Engine:
    lib: ctypes.CDLL
    libc: ctypes.CDLL | None
    state: dict[str, ctypes.c_int]
    chunks: list[np.ndarray]
    callback: object  # keeps the ctypes callback alive

    def reset(self) -> None:
        for name, value in _STATE_RESET.items():
            if name in self.state:
                self.state[name].value = value
        self.lib.espeak_ng_SetRandSeed(_RAND_SEED)
        if self.libc is not None:
            self.libc.srand(_RAND_SEED)


_engine: _Engine | None = None
_lock = threading.Lock()


def _load() -> _Engine:
    global _engine
    if _engine is not None:
        return _engine
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("espeak-ng is missing: pip install espeakng-loader") from exc
    lib_path = espeakng_loader.get_library_path()
    lib = ctypes.CDLL(lib_path)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    data_path = espeakng_loader.get_data_path().encode()
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path, _INITIALIZE_DONT_EXIT
    )
    if rate != NATIVE_SAMPLE_RATE:
        raise EspeakError(f"espeak-ng failed to start (returned {rate}) with data {data_path!r}")

    chunks: list[np.ndarray] = []
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def on_audio(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = callback_type(on_audio)
    lib.espeak_SetSynthCallback(callback)

    state: dict[str, ctypes.c_int] = {}
    offsets = _elf_symbols(lib_path, {*_STATE_RESET, "espeak_Synth"})
    if "espeak_Synth" in offsets and set(_STATE_RESET) <= set(offsets):
        base = ctypes.cast(lib.espeak_Synth, ctypes.c_void_p).value - offsets["espeak_Synth"]
        state = {n: ctypes.c_int.from_address(base + offsets[n]) for n in _STATE_RESET}
    else:
        log.warning(
            "espeak-ng state symbols not found in %s: synthesized audio may differ by a "
            "few samples between runs",
            lib_path,
        )
    libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
    _engine = _Engine(lib=lib, libc=libc, state=state, chunks=chunks, callback=callback)
    return _engine


def is_reproducible() -> bool:
    """True when every utterance is independent of the ones synthesized before it."""
    with _lock:
        return bool(_load().state)


def synthesize(
    text: str,
    voice: str,
    *,
    variant: str | None = None,
    rate: int = 175,
    pitch: int = 50,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Speak ``text`` with an espeak-ng voice; float32 mono at ``sample_rate``.

    ``voice`` is an espeak-ng voice or language name (``"fr"``, ``"sw"``,
    ``"cmn"``, ``"en-us"``); ``variant`` one of :data:`VARIANTS` (``"m3"``,
    ``"f2"``) changes the speaker; ``rate`` is in words per minute (80-450),
    ``pitch`` 0-100 (50 is the voice's own). Same arguments, same samples.
    """
    if not 80 <= rate <= 450:
        raise ValueError(f"rate must be in [80, 450] words per minute, got {rate}")
    if not 0 <= pitch <= 100:
        raise ValueError(f"pitch must be in [0, 100], got {pitch}")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown voice variant {variant!r}; expected one of {VARIANTS}")
    name = f"{voice}+{variant}" if variant else voice
    payload = prepare_text(text).encode("utf-8") + b"\0"
    with _lock:
        engine = _load()
        lib = engine.lib
        if lib.espeak_SetVoiceByName(name.encode("utf-8")) != 0:
            raise EspeakError(f"espeak-ng has no voice {name!r}")
        for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_VOLUME, 100), (_RANGE, 50)):
            lib.espeak_SetParameter(parameter, value, 0)
        engine.chunks.clear()
        engine.reset()
        status = lib.espeak_Synth(payload, len(payload), 0, 0, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != 0:
            raise EspeakError(f"espeak_Synth failed with status {status} for voice {name!r}")
        pcm = np.concatenate(engine.chunks) if engine.chunks else np.zeros(0, np.int16)
        engine.chunks.clear()
    wave = pcm.astype(np.float32) / 32768.0
    if sample_rate != NATIVE_SAMPLE_RATE and wave.size:
        import soxr

        wave = soxr.resample(wave, NATIVE_SAMPLE_RATE, sample_rate).astype(np.float32, copy=False)
    return wave
