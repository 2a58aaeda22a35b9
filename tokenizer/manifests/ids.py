"""Duplicate ids across a whole manifest, found without holding its examples.

Why: a job must turn every example but one of a repeated id into a
``duplicate_id`` reject, over millions of lines read in parallel, and
grouping the examples by id would hold them all (Beam's embedded runner
keeps a shuffle in memory). Instead:

1. a census pass keeps 8 bytes per id (:func:`id_hash`) in an
   :class:`IdCensus` and returns the hashes seen more than once, usually none;
2. a second pass gathers, for those hashes only, each example's
   :func:`claim_key`, and the smallest key per id wins (exact: two ids that
   merely share a hash are two ids, each its own winner);
3. the main pass streams every example on and rejects the losers.

The winner is :func:`tokenizer.manifests.pick_one_per_id`'s (the smallest
``(uri, text)``), ties between identical examples broken by position.

Example::

    census = IdCensus().add(np.array([id_hash(i) for i in ids], np.uint64))
    census.repeated()   # sorted uint64 hashes of the ids seen twice or more
"""

from __future__ import annotations

import hashlib

import numpy as np

from datastore.records import AudioExample

_FOLD_AT = 1 << 20  # hashes buffered before they are folded into the sorted set


def id_hash(utt_id: str) -> int:
    """A 64-bit hash of an id, the same in every process."""
    digest = hashlib.blake2b(utt_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def id_hashes(ids) -> np.ndarray:
    return np.fromiter((id_hash(i) for i in ids), np.uint64)


def claim_key(example: AudioExample, part: int, ordinal: int) -> tuple:
    """What decides which example of a repeated id is kept: the smallest wins."""
    return (example.uri, example.text, part, ordinal)


class IdCensus:
    """A mergeable set of id hashes that remembers which were seen more than once.

    Memory: 8 bytes per distinct id (16 MB for 2 M ids), plus at most
    ``_FOLD_AT`` hashes or the set's own size waiting to be folded in
    (amortised: the sorted set is rebuilt only when the buffer has caught up).
    """

    def __init__(self):
        self._seen = np.zeros(0, np.uint64)  # sorted, distinct
        self._repeated = np.zeros(0, np.uint64)  # sorted, distinct
        self._pending: list[np.ndarray] = []
        self._n_pending = 0

    def add(self, hashes: np.ndarray) -> IdCensus:
        self._pending.append(np.asarray(hashes, np.uint64))
        self._n_pending += len(hashes)
        if self._n_pending >= max(_FOLD_AT, len(self._seen)):
            self._fold()
        return self

    def merge(self, other: IdCensus) -> IdCensus:
        other._fold()
        self._pending.append(other._seen)
        self._n_pending += len(other._seen)
        self._repeated = np.union1d(self._repeated, other._repeated)
        self._fold()
        return self

    def compact(self) -> IdCensus:
        self._fold()
        return self

    def repeated(self) -> np.ndarray:
        """The hashes seen more than once, sorted."""
        self._fold()
        return self._repeated

    def __len__(self) -> int:
        self._fold()
        return len(self._seen)

    def _fold(self) -> None:
        if not self._pending:
            return
        values, counts = np.unique(np.concatenate([self._seen, *self._pending]), return_counts=True)
        self._repeated = np.union1d(self._repeated, values[counts > 1])
        self._seen, self._pending, self._n_pending = values, [], 0

    def __getstate__(self):  # what crosses between workers: the folded arrays only
        self._fold()
        return {"seen": self._seen, "repeated": self._repeated}

    def __setstate__(self, state):
        self._seen, self._repeated = state["seen"], state["repeated"]
        self._pending, self._n_pending = [], 0
