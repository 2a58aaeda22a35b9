"""Chunked nearest-centroid kernels (torch): the hot loop of fitting and applying.

Squared distances come from one matmul per chunk of rows,
``||x - c||^2 = ||x - s||^2 - 2 x.c' + (||c'||^2 + 2 s.c')`` with ``c' = c - s``,
so memory is bounded by ``chunk x k`` scores and a ``[n, k, d]`` tensor never
exists. The shift ``s`` (the data mean when fitting, the centroid mean when
applying) keeps the fp32 dot products small when features share a large
offset, as encoder activations often do; it costs nothing per chunk because it
is folded into the centroids and a per-centroid bias.

Only this module and the backends import torch, always lazily from the
callers, so ``import kmeans`` stays light.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

# A chunk's rows [chunk, d] and its scores [chunk, k] should stay in the CPU
# cache together (~16 MB), so that the min and the centroid-sum accumulation
# re-read them from cache, not memory. Measured on the 2-core dev machine at
# k=1024, d=512: 2048 rows ran addmm + min at ~91% of the bare matmul rate,
# 8192 rows at ~73%.
CHUNK_BLOCK_ELEMENTS = 2**22


def default_chunk_size(k: int, dim: int = 0) -> int:
    """Rows per chunk: a power of two with ``rows * (k + dim)`` cache-sized, in [256, 16384]."""
    rows = CHUNK_BLOCK_ELEMENTS // max(k + dim, 1)
    return int(min(max(1 << max(rows.bit_length() - 1, 0), 256), 16384))


class CentroidTable:
    """Centroids prepared for distance queries against a fixed shift point.

    ``scores(x) = -2 x.c' + bias`` differs from ``||x - c||^2`` by a per-row
    constant (``||x - shift||^2``), so its argmin is the nearest centroid.
    """

    def __init__(self, centroids: torch.Tensor, shift: torch.Tensor):
        self.shift = shift
        shifted = centroids - shift
        self.shifted = shifted
        self.bias = (shifted * shifted).sum(1) + 2.0 * (shifted @ shift)

    @property
    def k(self) -> int:
        return int(self.shifted.shape[0])


def sq_norms_from(x: torch.Tensor, shift: torch.Tensor, chunk: int) -> torch.Tensor:
    """``||x_i - shift||^2`` per row, computed chunk by chunk (one chunk-sized temp)."""
    out = torch.empty(x.shape[0], dtype=torch.float32, device=shift.device)
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk].to(shift.device, non_blocking=True) - shift
        out[start : start + block.shape[0]] = (block * block).sum(1)
    return out


@contextlib.contextmanager
def single_threaded_ops() -> Iterator[None]:
    """Set torch's intra-op threads to 1 for the duration (re-entrant, restored after).

    The setting is process-wide: use it only where nothing else in the process
    needs torch threads meanwhile (a codebook fit), never per request.
    """
    global _single_threaded_depth, _saved_threads
    with _threads_lock:
        if _single_threaded_depth == 0:
            _saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        _single_threaded_depth += 1
    try:
        yield
    finally:
        with _threads_lock:
            _single_threaded_depth -= 1
            if _single_threaded_depth == 0:
                torch.set_num_threads(_saved_threads)


_threads_lock = threading.Lock()
_single_threaded_depth = 0
_saved_threads = 1


def assign_pass(
    x: torch.Tensor,
    table: CentroidTable,
    chunk: int,
    labels: torch.Tensor,
    scores: torch.Tensor,
    sums: torch.Tensor | None = None,
    *,
    workers: int = 1,
) -> None:
    """Fill ``labels`` (int64) and ``scores`` (min score per row) for all rows of ``x``.

    With ``sums`` given ([k, d], zeroed by the caller) the rows are also added to
    their centroid's sum while the chunk is still in cache, which makes a Lloyd
    update cost one pass over the data instead of two. ``x`` may live on the
    CPU while the table is on a GPU: chunks are copied over one at a time.

    ``workers > 1`` (CPU only) splits the chunks statically over that many
    Python threads, each running single-threaded torch ops, with a private
    ``sums`` reduced in a fixed order (so results stay deterministic). Why:
    torch's OpenMP ops synchronise threads three times per chunk, and on a
    shared, oversubscribed machine every barrier waits for a descheduled
    thread; measured on the busy 2-core dev machine at k=1024, d=512: 17
    GFLOP/s that way against 60-150 with two workers, and about the same
    (~130-150 against ~155) when the machine is quiet.
    """
    starts = range(0, x.shape[0], chunk)
    device = table.shifted.device
    rows_per_block = min(chunk, x.shape[0])
    if workers <= 1 or device.type != "cpu" or len(starts) < 2:
        scratch = torch.empty(rows_per_block, table.k, dtype=torch.float32, device=device)
        _assign_chunks(x, table, starts, labels, scores, sums, scratch)
        return
    workers = min(workers, len(starts))
    # Buffers come from this thread: the workers allocate nothing, so no
    # per-thread malloc arenas keep freed blocks around (+150 MB measured).
    partial = [None if sums is None else torch.zeros_like(sums) for _ in range(workers)]
    scratch = [torch.empty(rows_per_block, table.k) for _ in range(workers)]
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            mine = starts[w::workers]
            _assign_chunks(x, table, mine, labels, scores, partial[w], scratch[w])
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    with single_threaded_ops():
        threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    if sums is not None:
        for part in partial:
            sums += part


def _assign_chunks(x, table, starts, labels, scores, sums, scratch) -> None:
    device = table.shifted.device
    centroids_t = table.shifted.T  # a transposed view: BLAS reads it in place
    chunk = scratch.shape[0]
    for start in starts:
        block = x[start : start + chunk]
        if block.device != device:
            block = block.to(device, non_blocking=True)
        stop = start + block.shape[0]
        block_scores = scratch[: block.shape[0]]
        torch.addmm(table.bias, block, centroids_t, beta=1.0, alpha=-2.0, out=block_scores)
        torch.min(block_scores, dim=1, out=(scores[start:stop], labels[start:stop]))
        if sums is not None:
            sums.index_add_(0, labels[start:stop], block)


def nearest(
    x: torch.Tensor,
    table: CentroidTable,
    chunk: int,
    *,
    with_distances: bool = False,
    workers: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Nearest centroid per row, and optionally its squared distance (>= 0)."""
    device = table.shifted.device
    n = x.shape[0]
    labels = torch.empty(n, dtype=torch.int64, device=device)
    scores = torch.empty(n, dtype=torch.float32, device=device)
    assign_pass(x, table, chunk, labels, scores, workers=workers)
    if not with_distances:
        return labels, None
    dist = sq_norms_from(x, table.shift, chunk).add_(scores).clamp_(min=0.0)
    return labels, dist
