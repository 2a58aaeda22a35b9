"""SpeechModelHandler in real Beam pipelines (TestPipeline + assert_that, the
mfcc encoder so it runs in seconds)."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import noise, sine
from tokenizer.encoders import _REGISTRY, build_encoder, register_encoder
from tokenizer.encoders.base import EncoderConfig
from tokenizer.encoders.mfcc import MfccEncoder
from tokenizer.model_handler import SpeechModelHandler, check_element, clip_weight

MFCC = EncoderConfig(name="mfcc")


def _clips():
    seconds = [1.0, 0.5, 0.013, 0.0, 2.5, 0.31, 1.7]
    return [
        (f"utt{i}", sine(s, freq=200.0 + 50 * i) + noise(s, amp=0.01, seed=i))
        for i, s in enumerate(seconds)
    ]


def _signature(feats: np.ndarray) -> tuple:
    return feats.shape, round(float(feats.astype(np.float64).sum()), 3)


def test_runinference_yields_keyed_features_equal_to_direct_encoding():
    clips = _clips()
    direct = build_encoder("mfcc").encode([w for _, w in clips])
    expected = [(key, _signature(f)) for (key, _), f in zip(clips, direct, strict=True)]
    with BeamTestPipeline() as p:
        out = (
            p
            | beam.Create(clips)
            | RunInference(SpeechModelHandler(MFCC, batch_seconds=2.0))
            | beam.MapTuple(lambda key, feats: (key, _signature(feats)))
        )
        assert_that(out, equal_to(expected))


def test_handler_survives_beams_pickler():
    """Workers get the handler through Beam's pickler and load their own model."""
    from apache_beam.internal import pickler

    handler = pickler.loads(pickler.dumps(SpeechModelHandler(MFCC, batch_seconds=2.0)))
    clips = _clips()[:3]
    out = list(handler.run_inference(clips, handler.load_model()))
    direct = build_encoder("mfcc").encode([w for _, w in clips])
    assert all(np.array_equal(a, b) for (_, a), b in zip(out, direct, strict=True))


def test_bad_clips_go_to_the_dead_letter_queue_alone():
    clips = _clips()
    bad = [
        ("nan", np.array([0.1, np.nan, 0.2], np.float32)),
        ("stereo", np.zeros((100, 2), np.float32)),
        ("ints", np.arange(100)),
        "not-a-tuple",
    ]
    with BeamTestPipeline() as p:
        main, failed = (
            p
            | beam.Create(clips + bad)
            | RunInference(SpeechModelHandler(MFCC, batch_seconds=1.0)).with_exception_handling()
        )
        assert_that(main | beam.Keys(), equal_to([k for k, _ in clips]), label="good")
        assert_that(
            failed.failed_preprocessing[0]
            | beam.Map(lambda bad: bad[0][0] if isinstance(bad[0], tuple) else bad[0]),
            equal_to(["nan", "stereo", "ints", "not-a-tuple"]),
            label="bad",
        )
        assert_that(failed.failed_inferences, equal_to([]), label="no-failed-batches")


def test_batches_are_sized_by_audio_seconds():
    handler = SpeechModelHandler(MFCC, batch_seconds=3.0)
    kwargs = handler.batch_elements_kwargs()
    assert kwargs["element_size_fn"] is clip_weight
    assert kwargs["min_batch_size"] == kwargs["max_batch_size"] == 300
    clips = [(f"u{i}", np.zeros(16000, np.float32)) for i in range(10)]
    with BeamTestPipeline() as p:
        sizes = (
            p
            | beam.Create(clips)
            | beam.BatchElements(**kwargs)
            | beam.Map(lambda batch: sum(clip_weight(e) for e in batch))
        )
        # 1 s clips, 3 s per batch: batches of at most 3, all 10 clips once.
        assert_that(
            sizes | beam.combiners.ToList(),
            lambda got: _check_batches(got[0], total=1000, cap=300),
        )


def _check_batches(weights, total, cap):
    assert sum(weights) == total, weights
    assert all(w <= cap for w in weights), weights


def test_load_and_run_without_beam():
    handler = SpeechModelHandler(MFCC)
    model = handler.load_model()
    out = list(handler.run_inference([("a", sine(0.1)), ("b", sine(0.2))], model))
    assert [k for k, _ in out] == ["a", "b"] and [f.shape for _, f in out] == [(5, 39), (10, 39)]
    assert handler.batch_seconds == 4 * MFCC.max_batch_seconds
    assert handler.get_num_bytes([("a", sine(0.1))]) == 1600 * 4
    assert not handler.share_model_across_processes()
    with pytest.raises(ValueError):
        handler.validate_inference_args({"temperature": 1})


def test_cuda_handlers_keep_the_model_in_process():
    """No Beam "large model" proxy process (it pickled every batch across a
    socket): one model per worker process, on GPU as on CPU; the batch
    default follows the device (1,200 s per forward pass on CUDA)."""
    gpu = SpeechModelHandler(EncoderConfig(name="whisper-base", device="cuda", dtype="bfloat16"))
    assert not gpu.share_model_across_processes()
    assert gpu.config.max_batch_seconds == 1200.0 and gpu.batch_seconds == 4 * 1200.0
    assert EncoderConfig(name="mfcc").max_batch_seconds == 40.0


def test_check_element_normalises_dtype():
    key, wave = check_element(("k", np.zeros(4, np.float64)))
    assert key == "k" and wave.dtype == np.float32


class _FailsOnOddSamples(MfccEncoder):
    """mfcc, except a batch holding an odd-length clip fails in the model."""

    def _encode_batch(self, clips):
        if any(len(c) % 2 for c in clips):
            raise RuntimeError("model failure")
        return super()._encode_batch(clips)


def test_model_failures_fail_their_batch_not_the_job():
    register_encoder("fails-on-odd-test")(_FailsOnOddSamples)
    try:
        clips = [("even", np.zeros(3200, np.float32)), ("odd", np.zeros(3201, np.float32))]
        handler = SpeechModelHandler(EncoderConfig(name="fails-on-odd-test"), batch_seconds=0.01)
        with BeamTestPipeline() as p:
            main, failed = p | beam.Create(clips) | RunInference(handler).with_exception_handling()
            assert_that(main | beam.Keys(), equal_to(["even"]), label="good")
            assert_that(
                failed.failed_inferences
                | beam.FlatMap(lambda batch_exc: [key for key, _ in batch_exc[0]]),
                equal_to(["odd"]),
                label="failed-batch",
            )
    finally:
        _REGISTRY.pop("fails-on-odd-test", None)


def test_failed_batch_is_retried_clip_by_clip_without_beam():
    """A batch the model fails on is encoded again clip by clip inside
    ``run_inference``: good clips keep their features (equal to encoding them
    alone), the clip that fails alone gets an EncodeFailure naming the error."""
    from tokenizer.model_handler import EncodeFailure

    register_encoder("fails-on-odd-retry-test")(_FailsOnOddSamples)
    try:
        handler = SpeechModelHandler(EncoderConfig(name="fails-on-odd-retry-test"))
        model = handler.load_model()
        clips = [("even", sine(0.2)), ("odd", np.zeros(3201, np.float32)), ("even2", sine(0.4))]
        out = dict(handler.run_inference(clips, model))
        assert list(out) == ["even", "odd", "even2"]
        assert isinstance(out["odd"], EncodeFailure) and "model failure" in out["odd"].error
        for key, wave in (clips[0], clips[2]):
            np.testing.assert_array_equal(out[key], model.encoder.encode([wave])[0])
        with pytest.raises(RuntimeError, match="model failure"):  # alone: Beam reports it
            handler.run_inference([clips[1]], model)
    finally:
        _REGISTRY.pop("fails-on-odd-retry-test", None)


def _codebook(tmp_path, downsample: int = 1):
    """A k=8 codebook fitted on the test clips' MFCC frames, saved as a folder."""
    import kmeans
    from kmeans.postprocess import PostprocessConfig, downsample_frames

    enc = build_encoder("mfcc")
    frames = np.concatenate(
        [downsample_frames(f, downsample) for f in enc.encode([w for _, w in _clips()])]
    )
    folder = str(tmp_path / f"cb-{downsample}")
    meta = PostprocessConfig(downsample=downsample).to_metadata()
    kmeans.fit(frames, 8, seed=0).with_metadata(encoder="mfcc", layer=0, **meta).save(folder)
    return folder


@pytest.mark.parametrize("downsample", [1, 2])
def test_token_task_equals_assigning_features_clip_by_clip(tmp_path, downsample):
    """The handler owns encoder + codebook and returns tokens: on CPU exactly
    what encoding and then ``frames_to_tokens`` per clip gives."""
    from kmeans import Codebook
    from kmeans.postprocess import frames_to_tokens
    from tokenizer.speech_model import TokenTask

    folder = _codebook(tmp_path, downsample)
    clips = [c for c in _clips() if len(c[1]) >= 320]
    handler = SpeechModelHandler(MFCC, TokenTask(codebook=folder, dedup=True))
    out = dict(handler.run_inference(clips, handler.load_model()))
    codebook = Codebook.load(folder)
    for key, wave in clips:
        feats = build_encoder("mfcc").encode([wave])[0]
        expected = frames_to_tokens(codebook, feats, dedup=True)
        np.testing.assert_array_equal(out[key].tokens, expected.tokens)
        np.testing.assert_array_equal(out[key].durations, expected.durations)
        assert out[key].durations.sum() == -(-len(feats) // downsample)


def test_frame_task_returns_downsampled_frames():
    from kmeans.postprocess import downsample_frames
    from tokenizer.speech_model import FrameTask

    clips = _clips()[:3]
    handler = SpeechModelHandler(MFCC, FrameTask(downsample=2))
    out = handler.run_inference(clips, handler.load_model())
    direct = build_encoder("mfcc").encode([w for _, w in clips])
    for (_, frames), feats in zip(out, direct, strict=True):
        np.testing.assert_array_equal(frames, downsample_frames(feats, 2))


def test_a_codebook_of_another_dimension_is_refused_when_the_model_loads(tmp_path):
    import kmeans
    from tokenizer.speech_model import CodebookDoesNotFit, TokenTask

    folder = str(tmp_path / "cb13")
    x = np.random.default_rng(0).standard_normal((64, 13)).astype(np.float32)
    kmeans.fit(x, 4, seed=0).with_metadata(encoder="mfcc", layer=0).save(folder)
    with pytest.raises(CodebookDoesNotFit, match="13-dim centroids but the encoder gives 39"):
        SpeechModelHandler(MFCC, TokenTask(codebook=folder)).load_model()


def test_the_loaded_model_must_match_the_planned_identity():
    from tokenizer.encoders import describe_encoder

    planned = {**describe_encoder("mfcc"), "dim": 40}
    with pytest.raises(RuntimeError, match="the launcher planned"):
        SpeechModelHandler(MFCC, identity=planned).load_model()


def test_bad_waveforms_fail_alone_inside_a_batch():
    """NaN or 2-D audio handed to the model: its batch is retried clip by clip,
    the bad clips get an EncodeFailure each, their batch-mates their features."""
    from tokenizer.model_handler import EncodeFailure

    nan = sine(0.6)
    nan[10] = np.nan
    good = _clips()[:3]
    batch = [*good, ("nan", nan), ("stereo", np.stack([nan, nan], 1))]
    handler = SpeechModelHandler(MFCC)
    out = dict(handler.run_inference(batch, handler.load_model()))
    assert isinstance(out["nan"], EncodeFailure) and "non-finite" in out["nan"].error
    assert isinstance(out["stereo"], EncodeFailure) and "1-D" in out["stereo"].error
    for key, wave in good:
        np.testing.assert_array_equal(out[key], build_encoder("mfcc").encode([wave])[0])
