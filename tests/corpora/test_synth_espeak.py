import numpy as np
import pytest

from corpora.synth import espeak, render

FRENCH = "Tous les êtres humains naissent libres et égaux en dignité et en droits."
SWAHILI = "Kila mtu anayo haki ya kuishi, uhuru na usalama wa nafsi yake."


def test_french_and_swahili_are_speech_at_16k():
    for text, voice in ((FRENCH, "fr"), (SWAHILI, "sw")):
        wave = espeak.synthesize(text, voice)
        assert wave.dtype == np.float32 and wave.ndim == 1
        seconds = wave.size / 16000
        assert 2.0 < seconds < 10.0, (voice, seconds)
        assert np.isfinite(wave).all()
        assert render.silence_problem(wave, 16000) is None


def test_same_arguments_give_the_same_samples_whatever_ran_before():
    first = espeak.synthesize(FRENCH, "fr", variant="f2", rate=160, pitch=40)
    espeak.synthesize(SWAHILI, "sw", variant="m7", rate=220, pitch=80)
    espeak.synthesize(FRENCH * 2, "de", variant="f4")
    again = espeak.synthesize(FRENCH, "fr", variant="f2", rate=160, pitch=40)
    assert espeak.is_reproducible()
    np.testing.assert_array_equal(first, again)


def test_variant_rate_and_pitch_change_the_voice():
    base = espeak.synthesize(FRENCH, "fr", rate=175)
    slow = espeak.synthesize(FRENCH, "fr", rate=130)
    fast = espeak.synthesize(FRENCH, "fr", rate=260)
    assert fast.size < base.size < slow.size
    female = espeak.synthesize(FRENCH, "fr", variant="f3")
    high = espeak.synthesize(FRENCH, "fr", pitch=90)
    for other in (female, high):
        n = min(base.size, other.size)
        assert not np.array_equal(base[:n], other[:n])


def test_sample_rate_follows_the_request():
    native = espeak.synthesize(SWAHILI, "sw", sample_rate=espeak.NATIVE_SAMPLE_RATE)
    resampled = espeak.synthesize(SWAHILI, "sw", sample_rate=8000)
    assert abs(resampled.size - native.size * 8000 / espeak.NATIVE_SAMPLE_RATE) <= 2


def test_modifier_letter_apostrophes_are_normalised():
    assert espeak.prepare_text("o\u02bbzbek  ma\u02bcno\n") == "o'zbek ma'no"
    # Uzbek: with U+02BB espeak switches to English letter names mid-word.
    text = "Har bir inson o\u02bbz fikrini erkin ifoda qilish huquqiga ega."
    np.testing.assert_array_equal(
        espeak.synthesize(text, "uz"), espeak.synthesize(text.replace("\u02bb", "'"), "uz")
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"rate": 10}, ValueError), ({"pitch": 101}, ValueError),
     ({"variant": "robot"}, ValueError)],
)  # fmt: skip
def test_bad_arguments_are_refused(kwargs, error):
    with pytest.raises(error):
        espeak.synthesize("hello", "en-us", **kwargs)


def test_unknown_voice_is_an_error():
    with pytest.raises(espeak.EspeakError, match="no voice"):
        espeak.synthesize("hello", "no-such-voice")


def test_silence_check_flags_short_and_silent_audio():
    assert "too short" in render.silence_problem(np.zeros(1000, np.float32), 16000)
    assert "near-silent" in render.silence_problem(np.zeros(32000, np.float32), 16000)
    # a voice without a dictionary (Faroese) is near-silent on real text
    wave = espeak.synthesize("Øll menniskju eru fødd fræls og javnbjóðis.", "fo")
    assert render.silence_problem(wave, 16000) is not None
