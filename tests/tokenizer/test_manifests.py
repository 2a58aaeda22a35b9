"""Manifest readers on hand-made files: every malformed input -> exactly one
reject with the right code; good lines -> AudioExamples; counts reconcile."""

import json
from collections import Counter

import pytest

from datastore.records import AudioExample, Reason, Reject
from tokenizer.manifests import ManifestConfig, dedup_ids, list_sources, read_manifest
from tokenizer.manifests.lines import iter_lines


def split_items(items):
    items = list(items)
    examples = [i for i in items if isinstance(i, AudioExample)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(examples) + len(rejects) == len(items)
    return examples, rejects


def fleurs_row(sid, fname, text, n=16000, gender="FEMALE", extra=None):
    cols = [sid, fname, text, text.lower(), "|".join(text.lower()), str(n), gender]
    return "\t".join([*cols, *([extra] if extra is not None else [])])


@pytest.fixture
def fleurs_dir(tmp_path, make_wav):
    root = tmp_path / "fleurs"
    for code in ("fr_fr", "sw_ke"):
        (root / code / "audio" / "test").mkdir(parents=True)
        for stem in ("101", "102", "103"):
            make_wav(f"fleurs/{code}/audio/test/{stem}.wav", 1.0)
    fr = root / "fr_fr" / "test.tsv"
    lines = [
        fleurs_row("7", "101.wav", "Bonjour le monde"),
        fleurs_row("7", "102.wav", "Bonjour le monde"),  # same sentence, another recording
        fleurs_row("8", "103.wav", "Au revoir", extra=""),  # tolerated 8th column
        "9\t104.wav\tonly three",  # too few columns
        fleurs_row("10", "105.wav", "   "),  # empty transcript
        fleurs_row("11", "../../../etc/passwd", "up"),  # resolved as written, not refused
    ]
    fr.write_bytes(
        ("\n".join(lines) + "\n").encode()
        + fleurs_row("12", "106.wav", "caf\xe9").encode("latin-1")
        + b"\n"
    )
    (root / "sw_ke" / "test.tsv").write_text(fleurs_row("7", "101.wav", "Habari dunia") + "\n")
    (root / "sw_ke" / "train.tsv").write_text(fleurs_row("1", "201.wav", "Jambo") + "\n")
    return root


def test_fleurs_reader(fleurs_dir):
    cfg = ManifestConfig(format="fleurs", input=str(fleurs_dir), langs=("fr",))
    examples, rejects = split_items(read_manifest(cfg))
    assert [e.id for e in examples] == ["fr_fr/101", "fr_fr/102", "fr_fr/103", "fr_fr/passwd"]
    assert [e.sentence_id for e in examples] == ["7", "7", "8", "11"]
    # ".." resolves against the audio folder (confinement is --confine-audio-to's job)
    assert examples[3].uri == str(fleurs_dir / "etc/passwd")
    assert {(e.lang, e.source_lang, e.split, e.corpus) for e in examples} == {
        ("fr", "fr_fr", "test", "fleurs")
    }
    assert examples[0].uri == str(fleurs_dir / "fr_fr/audio/test/101.wav")
    assert Counter(r.reason for r in rejects) == {
        Reason.MALFORMED_LINE: 1,
        Reason.BAD_TEXT: 1,
        Reason.NON_UTF8: 1,
    }
    assert {r.source.rsplit(":", 1)[1] for r in rejects} == {"4", "5", "7"}


def test_fleurs_sources_filter_by_lang_and_split(fleurs_dir):
    all_src = list_sources(ManifestConfig(format="fleurs", input=str(fleurs_dir)))
    assert [s.split("fleurs/")[1] for s in all_src] == [
        "fr_fr/test.tsv",
        "sw_ke/test.tsv",
        "sw_ke/train.tsv",
    ]
    cfg = ManifestConfig(
        format="fleurs", input=str(fleurs_dir), langs=("sw_ke",), splits=("train",)
    )
    assert [s.split("fleurs/")[1] for s in list_sources(cfg)] == ["sw_ke/train.tsv"]


def test_duplicate_ids_become_rejects():
    ex = AudioExample(id="a", uri="u", text="t", lang="fr", split="test", corpus="c")
    out = list(dedup_ids([ex, ex.replace(uri="v"), ex.replace(id="b")]))
    assert [type(o).__name__ for o in out] == ["AudioExample", "Reject", "AudioExample"]
    assert out[1].reason == Reason.DUPLICATE_ID and out[1].source == "v"


def test_one_id_rule_whatever_the_order():
    """The smallest (uri, text) is kept wherever it appears, so a plain loop and
    the Beam job's grouping (which has no order) keep the same example."""
    ex = AudioExample(id="a", uri="b.wav", text="t", lang="fr", split="test", corpus="c")
    variants = [ex, ex.replace(uri="a.wav"), ex.replace(uri="a.wav", text="s")]
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        out = list(dedup_ids([variants[i] for i in order]))
        assert (out[0].uri, out[0].text) == ("a.wav", "s")
        assert sorted(r.source for r in out[1:]) == ["a.wav", "b.wav"]
        assert {r.reason for r in out[1:]} == {Reason.DUPLICATE_ID}


def write_tsv(path, header, rows):
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")


@pytest.fixture
def covost_files(tmp_path, make_wav):
    cv = tmp_path / "cv" / "fr"
    for name in ("a.mp3", "b.mp3", "c.mp3"):
        make_wav(f"cv/fr/clips/{name}", 1.0, sr=44100, subtype="MPEG_LAYER_III")
    write_tsv(
        cv / "validated.tsv",
        ["client_id", "path", "sentence", "up_votes", "down_votes", "sentence_id"],
        [
            ["spk1", "a.mp3", "Bonjour", "2", "0", "s1"],
            ["spk2", "b.mp3", 'Il a dit \\"oui\\"', "2", "0", "s2"],
            ["spk3", "c.mp3", "Salut", "2", "0", "s3"],
            ["spk4", "x.mp3", "NA", "2", "0", "s4"],
        ],
    )
    tsv = tmp_path / "covost" / "covost_v2.fr_en.tsv"
    tsv.parent.mkdir()
    write_tsv(
        tsv,
        ["path", "translation", "split"],
        [
            ["a.mp3", "Hello", "train_covost"],
            ["b.mp3", 'He said "yes"', "dev"],
            ["c.mp3", "Hi", "test"],
            ["missing.mp3", "Nope", "test"],
            ["x.mp3", "NA", "test", "extra"],
            ["../../../etc/passwd", "x", "test"],
        ],
    )
    return tsv, cv


def test_covost_reader_joins_validated(covost_files):
    tsv, cv = covost_files
    examples, rejects = split_items(
        read_manifest(ManifestConfig(format="covost", input=str(tsv), audio_root=str(cv)))
    )
    assert [(e.id, e.split, e.speaker, e.sentence_id) for e in examples] == [
        ("fr/a", "train", "spk1", "s1"),
        ("fr/b", "dev", "spk2", "s2"),
        ("fr/c", "test", "spk3", "s3"),
    ]
    assert examples[1].text == 'Il a dit "oui"'  # backslash escapes, no quoting
    assert examples[0].translation == "Hello" and examples[0].tgt_lang == "en"
    assert {(e.lang, e.corpus) for e in examples} == {("fr", "covost")}
    assert sorted(r.reason for r in rejects) == sorted(
        [Reason.MISSING_FILE, Reason.MISSING_FILE, Reason.MALFORMED_LINE]
    )


def test_covost_split_filter_and_required_root(covost_files):
    tsv, cv = covost_files
    cfg = ManifestConfig(format="covost", input=str(tsv), audio_root=str(cv), splits=("test",))
    examples, _ = split_items(read_manifest(cfg))
    assert [e.id for e in examples] == ["fr/c"]
    with pytest.raises(ValueError, match="audio-root"):
        list_sources(ManifestConfig(format="covost", input=str(tsv)))


def test_jsonl_reader(tmp_path, make_wav):
    make_wav("clips/a.wav", 1.0)
    lines = [
        json.dumps(
            {
                "id": "a",
                "audio": "clips/a.wav",
                "text": "hi",
                "lang": "en",
                "split": "test",
                "translation": "salut",
                "tgt_lang": "fr",
            }
        ),
        json.dumps({"id": "b", "audio": "clips/b.wav", "text": "", "lang": "en", "split": "test"}),
        json.dumps(
            {"id": "c", "audio": "../outside.wav", "text": "x", "lang": "en", "split": "test"}
        ),
        json.dumps({"id": "d", "audio": "clips/a.wav", "lang": "en"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps(
            {"id": "e", "audio": "clips/a.wav", "text": "x", "lang": "e/n", "split": "test"}
        ),
        json.dumps({"id": "f", "audio": "clips/a.wav", "text": 5, "lang": "en", "split": "test"}),
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(lines) + "\n\n")
    examples, rejects = split_items(read_manifest(ManifestConfig(format="jsonl", input=str(m))))
    assert [e.id for e in examples] == ["a", "c"]
    assert examples[0].uri == str(tmp_path / "clips/a.wav") and examples[0].translation == "salut"
    assert examples[1].uri == str(tmp_path.parent / "outside.wav")  # ".." as written
    assert [(r.id, r.reason) for r in rejects] == [
        ("b", Reason.BAD_TEXT),
        ("d", Reason.MALFORMED_LINE),
        (f"{m}:5", Reason.MALFORMED_LINE),
        (f"{m}:6", Reason.MALFORMED_LINE),
        ("e", Reason.MALFORMED_LINE),
        ("f", Reason.BAD_TEXT),
    ]


def test_iter_lines_caps_huge_lines(tmp_path):
    p = tmp_path / "f.txt"
    p.write_bytes(b"short\n" + b"x" * 3_000_000 + b"\nlast")
    out = list(iter_lines(str(p), max_line_bytes=1024))
    assert out == [(1, b"short"), (2, None), (3, b"last")]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown manifest format"):
        ManifestConfig(format="csv", input="x")


def test_iter_lines_drops_a_leading_bom_only(tmp_path):
    p = tmp_path / "f.txt"
    p.write_bytes(b"\xef\xbb\xbfid\tx\n\xef\xbb\xbfsecond\n")
    assert list(iter_lines(str(p), max_line_bytes=1024)) == [
        (1, b"id\tx"),
        (2, b"\xef\xbb\xbfsecond"),  # a BOM inside the file is text (then invisible)
    ]


@pytest.mark.parametrize(
    "text,problem",
    [
        ("\u200b", "no visible character in transcript"),
        ("\u200c\u200d\u2060\ufeff", "no visible character in transcript"),
        ("\u00a0\u3000\u200b", "no visible character in transcript"),
        ("\u0301\u0301", "no visible character in transcript"),  # combining marks alone
        ("bon\ud800jour", "transcript cannot be written as UTF-8: U+D800 at character 3"),
        ("می\u200cخواهم", None),
        ("क्\u200dष", None),
        ("👩\u200d💻", None),
        ("\ue000", None),  # private use: a font may draw it
    ],
)
def test_text_problem_visibility_and_utf8(text, problem):
    from tokenizer.manifests.lines import text_problem

    got = text_problem(text)
    assert got == problem or (problem and got and got.startswith(problem)), got


def test_wants_lang_compares_short_codes():
    cfg = ManifestConfig(format="jsonl", input="m.jsonl", langs=("fr_fr", "zh-CN"))
    assert cfg.wants_lang("fr") and cfg.wants_lang("fr_fr") and cfg.wants_lang("cmn_hans_cn")
    assert cfg.wants_lang("zh") and not cfg.wants_lang("de") and not cfg.wants_lang(None)
    assert ManifestConfig(format="jsonl", input="m.jsonl").wants_lang("anything")


def test_nemo_canary_manifest_languages_and_answers(tmp_path, make_wav):
    """Canary-style lines: ``source_lang``/``target_lang``/``taskname``/``answer``.
    A row's own language wins over ``--lang`` (which only fills lines naming none)."""
    make_wav("a.wav", 1.0)
    lines = [
        {"audio_filepath": "a.wav", "duration": 1.0, "source_lang": "de", "target_lang": "de",
         "taskname": "asr", "answer": "hallo welt", "id": "asr"},
        {"audio_filepath": "a.wav", "duration": 1.0, "source_lang": "de", "target_lang": "en",
         "taskname": "s2t_translation", "text": "hallo welt", "answer": "hello world", "id": "ast"},
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "bonjour", "id": "none"},
    ]  # fmt: skip
    (tmp_path / "m.json").write_text("\n".join(map(json.dumps, lines)) + "\n")
    cfg = ManifestConfig(format="nemo", input=str(tmp_path / "m.json"), lang="fr")
    examples, rejects = split_items(read_manifest(cfg))
    assert rejects == []
    got = [(e.id, e.lang, e.text, e.translation, e.tgt_lang) for e in examples]
    assert got == [
        ("asr", "de", "hallo welt", None, None),
        ("ast", "de", "hallo welt", "hello world", "en"),
        ("none", "fr", "bonjour", None, None),
    ]
