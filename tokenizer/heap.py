"""Keep a long-running encoder process's memory flat: fix glibc's mmap threshold.

Why: glibc serves large allocations with ``mmap`` and returns them to the OS
on free, but each free of an mmapped block *raises* the threshold to that
block's size (up to 32 MiB). After a few variable-length clips, torch's
activation buffers (hundreds of KiB to a few MiB) come from the heap instead,
where freed holes of the wrong size pile up: the tokenize job's peak RSS grew
by 52% (902 -> 1375 MB) from 100 to 1,000 Whisper utterances. With the
threshold pinned it grew by 0.3% (822 -> 825 MB): ``python -m
benchmarks.tokenize --parts memory``, see benchmarks/README.md.
Setting the threshold explicitly turns the dynamic adjustment off: the same
as ``MALLOC_MMAP_THRESHOLD_=131072``, without relying on every worker's
environment.

Example::

    from tokenizer.heap import fix_mmap_threshold
    fix_mmap_threshold()  # once per process, before heavy work; a no-op off glibc
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial default


@functools.cache
def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold (process-wide); True when it was set.

    Cached: the first call wins, later calls are free. Returns False (and does
    nothing) on a C library without ``mallopt`` (musl, macOS, Windows).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1
