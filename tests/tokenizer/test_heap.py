import numpy as np

from tokenizer import heap
from tokenizer.encoders.base import EncoderConfig
from tokenizer.encoders.mfcc import MfccEncoder


def test_release_free_memory_runs_on_glibc():
    """Our Linux CI has glibc: malloc_trim is found and callable, repeatedly."""
    assert heap.release_free_memory() is True
    assert heap.release_free_memory() is True


class _TorchLikeMfcc(MfccEncoder):
    uses_torch = True  # what every torch encoder says; mfcc itself is numpy only


def test_torch_encoders_release_memory_after_each_forward_pass(monkeypatch):
    calls = []
    monkeypatch.setattr("tokenizer.encoders.base.release_free_memory", lambda: calls.append(1))
    clips = [np.sin(np.arange(n, dtype=np.float32) / 7) for n in (16000, 8000, 24000)]
    MfccEncoder(EncoderConfig(name="mfcc", max_batch_seconds=1.0)).encode(clips)
    assert calls == []  # numpy-only encoder: nothing to give back
    torch_like = _TorchLikeMfcc(EncoderConfig(name="mfcc", max_batch_seconds=1.0))
    features = torch_like.encode(clips)
    # One release per forward pass: the peak is inside a call, so once per call is too late.
    assert len(calls) == len(torch_like.plan_batches([len(c) for c in clips])) == 3
    assert [f.shape[0] for f in features] == [torch_like.n_frames(len(c)) for c in clips]
