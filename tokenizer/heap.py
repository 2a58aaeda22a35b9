"""Keep a long-running encoder process's memory flat: hand freed heap pages back.

Why: glibc serves large allocations with ``mmap`` and returns them to the OS
on free, but each free of an mmapped block *raises* the mmap threshold to
that block's size (up to 32 MiB). After a few variable-length clips, torch's
activation buffers come from the heap instead, where freed holes of the wrong
size stay resident: the tokenize job's peak RSS grew by 52% (902 -> 1375 MB)
from 100 to 1,000 Whisper utterances (``python -m benchmarks.tokenize
--parts memory``; figures in benchmarks/README.md).

Two fixes were measured. Pinning the threshold (``mallopt``) kept RSS flat
but made every activation buffer an mmap: 278 million page faults in one
demo run and half the trainer's speed in the same process. What we do
instead: ``malloc_trim(0)`` after each encoder forward pass, which gives the
free pages inside the heap back (``madvise``) without changing how memory is
allocated. Once per ``encode`` call was not enough (+15% and +38% in two
runs: the peak is inside a call); once per forward pass met the
target (figures and command: benchmarks/README.md, "Memory").

Example::

    from tokenizer.heap import release_free_memory
    features = model(batch)
    release_free_memory()  # a no-op (False) where the C library has no malloc_trim
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl, macOS, Windows
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return free heap pages to the OS; True when the C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
