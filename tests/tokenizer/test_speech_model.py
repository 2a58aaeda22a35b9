"""The speech model's device path (features kept as tensors, downsampled and
assigned in one pass) run on CPU tensors, so CI checks the code a GPU runs;
the decode-ahead pool; the launcher's weight-free encoder identity."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import kmeans
from datastore.identity import FeatureIdentity
from kmeans import Codebook
from kmeans.postprocess import (
    PostprocessConfig,
    downsample_frames,
    downsample_tensor,
    frames_to_tokens,
    tensors_to_tokens,
)
from tests.conftest import noise, sine
from tokenizer.encoders import build_encoder, describe_encoder
from tokenizer.encoders.base import EncoderConfig
from tokenizer.prefetch import DecodeAhead
from tokenizer.speech_model import FrameTask, SpeechModel, TokenTask

torch = pytest.importorskip("torch")


def _clips():
    return [sine(s, freq=180.0 + 40 * i) + noise(s, amp=0.02, seed=i)
            for i, s in enumerate([0.3, 1.1, 0.71, 2.0, 0.05, 1.37])]  # fmt: skip


def _codebook(tmp_path, downsample=1, mode="mean", k=12):
    feats = build_encoder("mfcc").encode(_clips())
    frames = np.concatenate([downsample_frames(f, downsample) for f in feats])
    meta = PostprocessConfig(downsample=downsample, downsample_mode=mode).to_metadata()
    folder = str(tmp_path / f"cb-{downsample}-{mode}")
    kmeans.fit(frames, k, seed=0).with_metadata(encoder="mfcc", layer=0, **meta).save(folder)
    return folder


def test_downsample_tensor_equals_numpy_means():
    x = np.random.default_rng(0).standard_normal((11, 5)).astype(np.float32)
    for factor in (1, 2, 3, 11, 12):
        got = downsample_tensor(torch.from_numpy(x), factor).numpy()
        np.testing.assert_allclose(got, downsample_frames(x, factor), rtol=1e-6, atol=1e-6)
    assert downsample_tensor(torch.zeros(0, 5), 2).shape == (0, 5)


@pytest.mark.parametrize("downsample,mode", [(1, "mean"), (2, "mean"), (3, "stride")])
@pytest.mark.parametrize("dedup", [False, True])
def test_batched_tensor_assignment_agrees_with_per_clip(tmp_path, downsample, mode, dedup):
    """What a GPU does (all clips of a call in one assignment pass) gives each
    clip the tokens the per-clip numpy path gives, on >= 99.5 % of frames, and
    the same lengths and run-length invariants exactly."""
    codebook = Codebook.load(_codebook(tmp_path, downsample, mode))
    feats = build_encoder("mfcc").encode(_clips())
    batched = tensors_to_tokens(codebook, [torch.from_numpy(f) for f in feats], dedup=dedup)
    same = total = 0
    for f, got in zip(feats, batched, strict=True):
        want = frames_to_tokens(codebook, f, dedup=dedup)
        n_frames = -(-len(f) // downsample)
        if dedup:
            assert int(got.durations.sum()) == n_frames
            a = np.repeat(got.tokens, got.durations)
            b = np.repeat(want.tokens, want.durations)
        else:
            assert got.durations is None and len(got.tokens) == n_frames
            a, b = got.tokens, want.tokens
        same += int((a == b).sum())
        total += len(b)
    assert total and same / total >= 0.995


def test_device_path_of_the_model_on_cpu_tensors(tmp_path):
    """The model's on-device branch (forced on CPU): tokens and frames as the
    host path gives them."""
    folder = _codebook(tmp_path, downsample=2)
    config = EncoderConfig(name="mfcc")
    host = SpeechModel.load(config, TokenTask(codebook=folder))
    device = SpeechModel.load(config, TokenTask(codebook=folder))
    device.on_device = True
    for a, b in zip(host.run(_clips()), device.run(_clips()), strict=True):
        np.testing.assert_array_equal(a.tokens, b.tokens)
    frames_host = SpeechModel.load(config, FrameTask(downsample=2)).run(_clips())
    on_device = SpeechModel.load(config, FrameTask(downsample=2))
    on_device.on_device = True
    for a, b in zip(frames_host, on_device.run(_clips()), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_whisper_encoder_returns_device_tensors_on_request():
    import tempfile

    from tests.tokenizer.encoders.helpers import save_tiny_whisper

    folder = save_tiny_whisper(tempfile.mkdtemp())
    enc = build_encoder(f"hf:{folder}", layer=1)
    clips = _clips()[:3]
    tensors = enc.encode(clips, as_tensors=True)
    arrays = enc.encode(clips)
    for t, a in zip(tensors, arrays, strict=True):
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
        np.testing.assert_array_equal(t.numpy(), a)


def test_describe_needs_no_weights(monkeypatch):
    """The launcher learns the encoder's identity from configs: building the
    encoder (loading weights) would fail here, describing it does not."""
    from tokenizer import encoders

    def no_weights(*_a, **_k):
        raise AssertionError("weights loaded")

    expected = FeatureIdentity(
        encoder="whisper-base", layer=3, mode="unpadded", frame_rate=50.0, dim=512
    )
    monkeypatch.setitem(encoders._REGISTRY, "whisper-base", no_weights)
    assert describe_encoder("whisper-base") == expected
    assert describe_encoder("whisper-base", layer=6, mode="padded").layer == 6
    with pytest.raises(ValueError, match=r"layer must be 0\.\.6"):
        describe_encoder("whisper-base", layer=7)


def test_decode_ahead_keeps_order_bounds_and_times():
    """Results come back in submission order whatever finishes first, at most
    ``max_pending`` are in flight, and each carries its own duration."""
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    def work(i):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02 if i % 3 else 0.05)
        with lock:
            in_flight[0] -= 1
        return i * i

    ahead = DecodeAhead(work, threads=3, max_pending=4)
    out = []
    for i in range(20):
        out += ahead.submit(i)
        assert len(ahead) <= 4
    out += ahead.drain()
    assert [r for r, _ in out] == [i * i for i in range(20)]
    assert all(s >= 0.015 for _, s in out) and peak[0] <= 4


def test_decode_ahead_reraises_a_failure_in_order():
    def work(i):
        if i == 2:
            raise RuntimeError("boom")
        return i

    ahead = DecodeAhead(work, threads=2, max_pending=8)
    got = []
    with pytest.raises(RuntimeError, match="boom"):
        for i in range(5):
            got += [r for r, _ in ahead.submit(i)]
        got += [r for r, _ in ahead.drain()]
    assert got in ([], [0], [0, 1])


def test_decode_in_processes_keeps_order_and_turns_bad_audio_into_rejects(make_wav):
    """The process pool (the CUDA default) runs the jobs' own decode function:
    waveforms equal a plain call's, in submission order, and undecodable bytes
    come back as a decode_error reject, not an exception."""
    import functools

    from datastore.records import AudioExample, Reason, Reject
    from tokenizer.audio import prepare, prepare_item
    from tokenizer.audio_config import AudioConfig

    config = AudioConfig()
    examples = [  # 0.2 s clips cross the pipe, 1.2 s and up a file in /dev/shm
        AudioExample(id=f"c{i}", uri=make_wav(f"c{i}.wav", 0.2 + 0.5 * i, freq=200.0 + 30 * i),
                     text="x", lang="fr", split="test", corpus="c")
        for i in range(5)
    ]  # fmt: skip
    items = [*examples[:2], (examples[2], b"not audio at all"), *examples[3:]]
    ahead = DecodeAhead(
        functools.partial(prepare_item, config=config), threads=2, max_pending=3, processes=True
    )
    out = []
    for item in items:
        out += [r for r, _ in ahead.submit(item)]
    out += [r for r, _ in ahead.drain()]
    assert isinstance(out[2], Reject) and out[2].reason == Reason.DECODE_ERROR
    for i in (0, 1, 3, 4):
        [(example, wave)] = out[i]
        [(_, plain)] = prepare(examples[i], config)
        assert example.id == f"c{i}"
        np.testing.assert_array_equal(wave, plain)
    assert not _left_arrays()  # every file the workers wrote was taken and removed


def _left_arrays() -> list[str]:
    import glob

    from tokenizer.prefetch import SHM_DIR

    return glob.glob(os.path.join(SHM_DIR, f"speechtok-{os.getpid()}-*"))


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this system")
def test_large_arrays_travel_through_private_files_and_come_back_equal():
    import stat

    from tokenizer.prefetch import SharedArray, share_arrays, take_arrays

    big = np.random.default_rng(0).standard_normal(40_000).astype(np.float32)  # 160 KB
    small = np.arange(10, dtype=np.int16)
    value = [("a", big), ("b", small), ("c", big[:1000].reshape(10, 100))]
    shared = share_arrays(value, os.getpid())
    assert isinstance(shared[0][1], SharedArray) and shared[1][1] is small
    mode = os.stat(shared[0][1].path).st_mode
    assert stat.S_IMODE(mode) == 0o600  # decoded speech is readable by its owner only
    back = take_arrays(shared)
    assert [k for k, _ in back] == ["a", "b", "c"]
    np.testing.assert_array_equal(back[0][1], big)
    assert back[0][1].dtype == np.float32 and back[1][1] is small
    assert not _left_arrays()


def test_an_array_that_cannot_be_written_to_shm_travels_as_itself(monkeypatch, tmp_path):
    """A full or read-only /dev/shm (a container's is 64 MB) falls back to the pipe."""
    from tokenizer import prefetch

    monkeypatch.setattr(prefetch, "SHM_DIR", str(tmp_path / "missing"))
    big = np.ones(1 << 15, np.float32)
    assert prefetch.share_arrays([("a", big)], os.getpid())[0][1] is big


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this system")
def test_files_of_results_never_taken_are_removed_at_exit():
    from tokenizer.prefetch import _remove_left_arrays, share_arrays

    share_arrays(np.zeros(1 << 15, np.float32), os.getpid())  # a result nobody takes
    assert len(_left_arrays()) == 1
    _remove_left_arrays(os.getpid())
    assert not _left_arrays()


def test_decode_pool_auto_is_processes_on_cuda_only():
    from tokenizer.prefetch import resolve_pool

    assert resolve_pool("auto", "cuda") == resolve_pool("auto", "cuda:1") == "processes"
    assert resolve_pool("auto", "cpu") == "threads"
    assert resolve_pool("threads", "cuda") == "threads"
    assert resolve_pool("processes", "cpu") == "processes"
    with pytest.raises(ValueError, match="decode pool"):
        resolve_pool("fibers", "cpu")
