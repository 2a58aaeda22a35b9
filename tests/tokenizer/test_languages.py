from collections import Counter

import pytest

from tokenizer import languages


def test_short_and_corpus_codes_are_unique():
    for column in ("short", "fleurs", "covost", "udhr"):
        codes = [getattr(lang, column) for lang in languages.LANGUAGES if getattr(lang, column)]
        repeated = [c for c, n in Counter(codes).items() if n > 1]
        assert not repeated, f"{column} codes repeated: {repeated}"


def test_every_fleurs_language_is_in_the_table():
    fleurs = [lang.fleurs for lang in languages.LANGUAGES if lang.fleurs]
    assert len(fleurs) == 102
    for code in fleurs:
        assert languages.by_short(languages.from_fleurs(code)).fleurs == code


def test_every_covost2_source_language_maps_back():
    assert len(set(languages.COVOST2_SOURCE_LANGS)) == 21
    for code in languages.COVOST2_SOURCE_LANGS:
        lang = languages.by_short(languages.from_covost(code))
        assert lang.covost == code
        assert lang.seen


@pytest.mark.parametrize(
    ("fleurs", "short"),
    [("cmn_hans_cn", "zh"), ("yue_hant_hk", "yue"), ("es_419", "es"), ("sw_ke", "sw"),
     ("fil_ph", "fil"), ("nb_no", "nb"), ("FR_FR", "fr"),
     ("xx_yy", "xx"), ("abc_def_gh", "abc")],
)  # fmt: skip
def test_from_fleurs_known_and_fallback(fleurs, short):
    assert languages.from_fleurs(fleurs) == short


@pytest.mark.parametrize(
    ("covost", "short"),
    [("zh-CN", "zh"), ("sv-SE", "sv"), ("fr", "fr"), ("zh-cn", "zh"), ("pa-IN", "pa"),
     ("ga-IE", "ga"), ("XX", "xx")],
)  # fmt: skip
def test_from_covost_known_and_fallback(covost, short):
    assert languages.from_covost(covost) == short


def test_by_short_rejects_unknown_codes():
    with pytest.raises(KeyError, match="qqq"):
        languages.by_short("qqq")
    assert languages.by_short(" FR ").short == "fr"


def test_synthesis_coverage_meets_the_targets():
    usable = languages.usable()
    assert len(usable) >= 80
    covered = {lang.covost for lang in usable if lang.covost}
    assert len(covered) == 18
    assert set(languages.COVOST2_SOURCE_LANGS) - covered == {"ja", "mn", "ar"}
    assert languages.by_short("en").usable


def test_unusable_languages_say_why():
    assert "aborts" in languages.by_short("my").why_unusable
    assert languages.by_short("mn").why_unusable == "no espeak-ng voice"
    assert languages.by_short("or").why_unusable == "no UDHR text"
    assert languages.by_short("fr").why_unusable is None


def test_every_usable_voice_exists_in_espeak():
    from corpora.synth import espeak

    for lang in languages.usable():
        wave = espeak.synthesize("1", lang.espeak)  # raises EspeakError for an unknown voice
        assert wave.size > 0, lang.short
