"""Planning and table writing without audio: splits, selection, voices, formats."""

import gzip
from collections import Counter

import pytest

from corpora.synth import layouts
from corpora.synth.plan import assign_splits, plan_recordings, select_ids
from corpora.synth.synth import SynthConfig, choose_languages, resolve_language
from tokenizer import languages

UDHR_IDS = [100 * a + p for a in range(1, 31) for p in (1, 2)][:50]


def config(**overrides):
    return SynthConfig(out="x", langs=("fr",), **overrides)


def test_splits_follow_the_documented_fractions_and_the_seed():
    split_of = assign_splits(UDHR_IDS, config())
    assert Counter(split_of.values()) == {"test": 15, "dev": 5, "train": 30}
    assert assign_splits(list(reversed(UDHR_IDS)), config()) == split_of
    assert assign_splits(UDHR_IDS, config(seed=1)) != split_of


def test_per_lang_keeps_split_proportions_and_shared_ids():
    split_of = assign_splits(UDHR_IDS, config())
    chosen = select_ids(UDHR_IDS, split_of, config(per_lang=10))
    assert Counter(split_of[i] for i in chosen) == {"test": 3, "dev": 1, "train": 6}
    # a language missing two of those ids takes the next ones in the same order
    missing = set(chosen[:2])
    other = select_ids([i for i in UDHR_IDS if i not in missing], split_of, config(per_lang=10))
    assert len(other) == 10 and len(set(other) & set(chosen)) == 8
    assert select_ids(UDHR_IDS, split_of, config(per_lang=500)) == sorted(UDHR_IDS)


def test_recordings_get_distinct_voices_and_jitter_within_bounds():
    cfg = config(voices=3)
    fr, en = languages.by_short("fr"), languages.by_short("en")
    texts = {"fr": {i: f"texte {i}" for i in UDHR_IDS}, "en": {i: f"text {i}" for i in UDHR_IDS}}
    split_of = assign_splits(UDHR_IDS, cfg)
    selection = {"fr": UDHR_IDS[:4], "en": UDHR_IDS[:4]}
    plan = plan_recordings(cfg, [en, fr], texts, selection, split_of)
    # en: FLEURS only; fr (a CoVoST source): FLEURS and Common Voice
    assert Counter((r.lang, r.corpus) for r in plan) == {
        ("en", "fleurs"): 12,
        ("fr", "fleurs"): 12,
        ("fr", "cv"): 12,
    }
    for key in {(r.lang, r.corpus, r.sentence_id) for r in plan}:
        voices = [r.variant for r in plan if (r.lang, r.corpus, r.sentence_id) == key]
        assert len(set(voices)) == 3
    assert all(150 <= r.rate <= 200 and 35 <= r.pitch <= 65 for r in plan)
    assert len({r.file_name for r in plan}) == len(plan)
    assert all(r.file_name.startswith("common_voice_fr_") for r in plan if r.corpus == "cv")
    assert plan_recordings(cfg, [en, fr], texts, selection, split_of) == plan


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("Everyone has the right to life, liberty and the security of person.",
      "everyone has the right to life liberty and the security of person"),
     ("L’homme « libre » (art. 1) !", "l'homme libre art 1"),
     ("人人生而自由,在尊严和权利上一律平等。", "人人生而自由 在尊严和权利上一律平等")],
)  # fmt: skip
def test_fleurs_transcription_columns(raw, normalized):
    assert layouts.normalize_transcript(raw) == normalized
    chars = layouts.char_transcript(normalized)
    assert chars.endswith(" |")
    assert chars.replace(" ", "").replace("|", "") == normalized.replace(" ", "")
    assert chars.count("|") == len(normalized.split())


def test_tsv_fields_never_break_the_format():
    data = layouts.tsv_bytes([("a\tb", "c\nd\\e", 3)], header=("x", "y", "z"))
    assert data == b"x\ty\tz\na b\tc d e\t3\n"


def test_wikimatrix_lines_and_file(tmp_path):
    ids = list(range(1, 21))
    x = {i: f"x{i}" for i in ids}
    en = {i: f"e{i}" for i in ids}
    lines, counts = layouts.wikimatrix_lines("zz", x, en, ids, seed=0)
    assert counts == {"aligned": 18, "low_score": 2, "mismatched": 2}
    good = [line for line in lines if line[0] >= 1.04]
    assert len(good) == 18 and all(int(a[1:]) == int(b[1:]) for _, a, b in good)
    mismatched = [line for line in lines if int(line[1][1:]) != int(line[2][1:])]
    assert len(mismatched) == 2 and all(s < 1.04 for s, _, _ in mismatched)

    name = layouts.write_wikimatrix(str(tmp_path), "zz", lines)
    assert name == "WikiMatrix.en-zz.tsv.gz"  # alphabetical: en before zz
    raw = (tmp_path / "wikimatrix" / name).read_bytes()
    rows = [r.split("\t") for r in gzip.decompress(raw).decode().splitlines()]
    assert [float(r[0]) for r in rows] == sorted((float(r[0]) for r in rows), reverse=True)
    assert all(r[1].startswith("e") and r[2].startswith("x") for r in rows)
    layouts.write_wikimatrix(str(tmp_path), "zz", list(reversed(lines)))
    assert (tmp_path / "wikimatrix" / name).read_bytes() == raw  # no timestamp in the gzip


@pytest.mark.parametrize(
    ("code", "short"), [("fr", "fr"), ("fr_fr", "fr"), ("cmn_hans_cn", "zh"), ("zh-CN", "zh"),
                        ("sv-SE", "sv"), ("EO", "eo")],
)  # fmt: skip
def test_languages_are_named_by_any_of_their_codes(code, short):
    assert resolve_language(code).short == short


def test_english_is_always_spoken_first():
    chosen = choose_languages(SynthConfig(out="x", langs=("sw", "fr_fr", "fr")))
    assert [lang.short for lang in chosen] == ["en", "fr", "sw"]
    everything = choose_languages(SynthConfig(out="x", all=True))
    assert len(everything) >= 80 and everything[0].short == "en"
    with pytest.raises(ValueError, match="cannot synthesize 'ja'"):
        choose_languages(SynthConfig(out="x", langs=("ja",)))
