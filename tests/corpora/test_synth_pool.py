"""The crash-isolating pool: a child that dies loses one item, never the run."""

import os
import time

import pytest

from corpora.synth import pool

# Article 3 of the UDHR in Burmese: espeak-ng 1.52 aborts the whole process on
# it ("*** buffer overflow detected ***"), which is why Burmese is excluded.
BURMESE_CRASH = "လူတိုင်း၌ အသက်ရှင်ရန် လွတ်လပ်ခွင့်နှင့် လုံခြုံစိတ်ချခွင့် ရှိသည်။"


def square_or_die(item: dict) -> dict:
    """Runs in a worker: aborts the process on "abort", raises on "raise"."""
    if item.get("abort"):
        os.abort()
    if item.get("raise"):
        raise RuntimeError("bad item")
    if item.get("hang"):
        time.sleep(60)
    return {"status": "ok", "value": item["x"] ** 2, "pid": os.getpid()}


def _run(items, workers=2, chunk_size=3, target=f"{__name__}:square_or_die", **kwargs):
    results = {}

    def on_result(index, result):
        assert index not in results, f"item {index} reported twice"
        results[index] = result

    crashes = pool.run_isolated(
        items, target, workers=workers, on_result=on_result, chunk_size=chunk_size, **kwargs
    )
    return results, crashes


def test_every_item_is_answered_once():
    items = [{"x": i} for i in range(20)]
    results, crashes = _run(items)
    assert crashes == 0
    assert {i: r["value"] for i, r in results.items()} == {i: i * i for i in range(20)}
    assert len({r["pid"] for r in results.values()}) == 2


@pytest.mark.parametrize("workers", [1, 3])
def test_a_dying_worker_loses_only_its_current_item(workers):
    items = [{"x": i, "abort": i in (4, 5, 11)} for i in range(14)]
    results, crashes = _run(items, workers=workers)
    assert crashes == 3
    assert len(results) == 14
    for i, result in results.items():
        if i in (4, 5, 11):
            assert result["status"] == pool.CRASHED
            assert "SIGABRT" in result["detail"]
        else:
            assert result == {"status": "ok", "value": i * i, "pid": result["pid"]}


def test_results_sent_just_before_a_crash_are_kept():
    # every task is "fine, then abort": a child's last result and its death race
    # with the other children's messages
    items = [{"x": i, "abort": i % 2 == 1} for i in range(24)]
    results, crashes = _run(items, workers=3, chunk_size=2)
    assert crashes == 12
    assert all(results[i]["value"] == i * i for i in range(0, 24, 2))
    assert all(results[i]["status"] == pool.CRASHED for i in range(1, 24, 2))


def test_a_python_error_is_reported_as_the_item_error():
    items = [{"x": 1}, {"x": 2, "raise": True}, {"x": 3}]
    results, crashes = _run(items, workers=1)
    assert crashes == 0
    assert results[1] == {"status": pool.ERROR, "detail": "RuntimeError: bad item"}
    assert results[2]["value"] == 9


def test_a_hanging_item_is_killed_after_the_timeout():
    items = [{"x": 1}, {"x": 2, "hang": True}, {"x": 3}]
    start = time.monotonic()
    results, crashes = _run(items, workers=1, item_timeout_s=1.0)
    assert time.monotonic() - start < 30
    assert crashes == 1
    assert results[1]["status"] == pool.CRASHED and "after 1 s" in results[1]["detail"]
    assert results[0]["value"] == 1 and results[2]["value"] == 9


def test_real_espeak_abort_is_isolated(tmp_path):
    def item(text, voice, name):
        return {
            "uri": str(tmp_path / name),
            "text": text,
            "voice": voice,
            "sample_rate": 16000,
            "format": "wav",
        }

    items = [
        item("Bonjour à tous.", "fr", "a.wav"),
        item(BURMESE_CRASH, "my", "b.wav"),
        item("Habari za asubuhi.", "sw", "c.wav"),
    ]
    results, crashes = _run(items, workers=1, target="corpora.synth.render:render")
    assert crashes == 1
    assert results[1]["status"] == pool.CRASHED
    assert results[0]["status"] == results[2]["status"] == "ok"
    assert sorted(os.listdir(tmp_path)) == ["a.wav", "c.wav"]


def test_workers_must_be_positive():
    with pytest.raises(ValueError):
        pool.run_isolated([{"x": 1}], f"{__name__}:square_or_die", workers=0, on_result=print)
