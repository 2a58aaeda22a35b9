"""mini-FLEURS end to end: real espeak audio in the three layouts, read back with
pandas and soundfile, and byte-identical for a seed. Text comes from the in-repo
fixture (no npm in tests)."""

import csv
import gzip
import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from corpora.synth import layouts, udhr
from corpora.synth.plan import assign_splits, select_ids
from corpora.synth.synth import SynthConfig, synthesize_corpus

CONFIG = {"langs": ("fr", "sw_ke"), "per_lang": 6, "voices": 2, "text": "fixture", "workers": 2}
FIXTURE = udhr.load_fixture()


def read_tsv(path, header=None):
    return pd.read_csv(
        path,
        sep="\t",
        header=header,
        quoting=csv.QUOTE_NONE,
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
    )


def digest_tree(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mini") / "corpus")
    corpus = synthesize_corpus(SynthConfig(out=out, **CONFIG))
    return out, corpus


def test_corpus_json_describes_the_corpus(corpus_dir):
    out, corpus = corpus_dir
    with open(os.path.join(out, "corpus.json"), encoding="utf-8") as f:
        assert json.load(f) == corpus
    assert corpus["text_source"] == "fixture"
    assert corpus["seen"] == ["fr"]
    assert corpus["unseen"] == ["en", "sw"]
    assert corpus["failures"] == []
    for lang in ("en", "fr", "sw"):
        entry = corpus["languages"][lang]
        assert entry["sentences"] == {"train": 3, "dev": 1, "test": 2}
        assert entry["utterances"] == {"train": 6, "dev": 2, "test": 4}
    assert corpus["languages"]["fr"]["cv_clips"] == 12
    assert corpus["totals"]["utterances"] == 36
    assert "my" in corpus["excluded"]


def test_fleurs_layout_reads_back(corpus_dir):
    out, corpus = corpus_dir
    ids_by_split = {}
    total_seconds = 0.0
    for lang, code in (("en", "en_us"), ("fr", "fr_fr"), ("sw", "sw_ke")):
        listed = set()
        for split in layouts.SPLITS:
            rows = read_tsv(os.path.join(out, "fleurs", code, f"{split}.tsv"))
            assert rows.shape[1] == 7
            sid, files, raw, norm, chars, n_samples, gender = (rows[c] for c in range(7))
            # each sentence recorded twice, by two voices, under distinct file names
            assert sid.value_counts().eq(2).all()
            assert files.is_unique
            assert set(gender) <= {"MALE", "FEMALE"}
            ids = sorted(set(sid.astype(int)))
            assert ids_by_split.setdefault(split, ids) == ids, "splits must be n-way parallel"
            udhr_code = {"en": "eng", "fr": "fra", "sw": "swh"}[lang]
            for i, r, n, c in zip(sid.astype(int), raw, norm, chars, strict=True):
                assert r == FIXTURE[udhr_code][i]
                assert n == n.lower() and "," not in n and "." not in n
                assert c.replace(" ", "").replace("|", "") == n.replace(" ", "")
            for name, count in zip(files, n_samples.astype(int), strict=True):
                info = sf.info(os.path.join(out, "fleurs", code, "audio", split, name))
                assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
                assert info.frames == count
                total_seconds += count / 16000
                listed.add(f"{split}/{name}")
        on_disk = {
            f"{split}/{name}"
            for split in layouts.SPLITS
            for name in os.listdir(os.path.join(out, "fleurs", code, "audio", split))
        }
        assert on_disk == listed
    assert not set(ids_by_split["train"]) & set(ids_by_split["test"])
    assert total_seconds == pytest.approx(corpus["totals"]["seconds"], abs=0.01)


def test_audio_is_speech(corpus_dir):
    out, _ = corpus_dir
    folder = os.path.join(out, "fleurs", "sw_ke", "audio", "test")
    for name in os.listdir(folder):
        wave, _ = sf.read(os.path.join(folder, name), dtype="float32")
        assert wave.size > 16000
        assert np.sqrt(np.mean(wave**2)) > 0.02


def test_common_voice_and_covost_layouts_join(corpus_dir):
    out, _ = corpus_dir
    validated = read_tsv(os.path.join(out, "cv", "fr", "validated.tsv"), header=0)
    assert list(validated.columns) == list(layouts.CV_COLUMNS)
    covost = read_tsv(os.path.join(out, "covost", "covost_v2.fr_en.tsv"), header=0)
    assert list(covost.columns) == ["path", "sentence", "translation", "client_id", "split"]
    joined = covost.merge(validated, on="path", suffixes=("", "_cv"), validate="one_to_one")
    assert len(joined) == len(covost) == 12
    split_of = assign_splits(sorted(FIXTURE["eng"]), SynthConfig(out="x", **CONFIG))
    for row in joined.itertuples():
        sid = int(row.sentence_id)
        assert row.sentence == FIXTURE["fra"][sid]
        assert row.translation == FIXTURE["eng"][sid]
        assert row.split == split_of[sid]
        assert len(row.client_id) == 128 and row.client_id == row.client_id_cv
        assert row.path.startswith("common_voice_fr_") and row.path.endswith(".mp3")
        wave, rate = sf.read(os.path.join(out, "cv", "fr", "clips", row.path), dtype="float32")
        assert rate == 22050 and wave.size > rate
    assert sorted(os.listdir(os.path.join(out, "cv", "fr", "clips"))) == sorted(covost["path"])
    assert not os.path.exists(os.path.join(out, "cv", "sw"))


def test_wikimatrix_has_train_pairs_and_deliberate_noise(corpus_dir):
    out, corpus = corpus_dir
    assert sorted(corpus["wikimatrix"]["files"]) == [
        "WikiMatrix.en-fr.tsv.gz",
        "WikiMatrix.en-sw.tsv.gz",
    ]
    config = SynthConfig(out="x", **CONFIG)
    split_of = assign_splits(sorted(FIXTURE["eng"]), config)
    train = [
        i for i in select_ids(list(FIXTURE["fra"]), split_of, config) if split_of[i] == "train"
    ]
    with gzip.open(os.path.join(out, "wikimatrix", "WikiMatrix.en-fr.tsv.gz"), "rt") as f:
        lines = [line.rstrip("\n").split("\t") for line in f]
    counts = corpus["wikimatrix"]["files"]["WikiMatrix.en-fr.tsv.gz"]
    assert len(lines) == counts["aligned"] + counts["low_score"] + counts["mismatched"]
    scores = [float(s) for s, _, _ in lines]
    assert scores == sorted(scores, reverse=True)
    aligned = {(FIXTURE["eng"][i], FIXTURE["fra"][i]) for i in train}
    above = [(en, fr) for s, en, fr in lines if float(s) >= 1.04]
    below = [(en, fr) for s, en, fr in lines if float(s) < 1.04]
    assert set(above) <= aligned and len(above) == counts["aligned"]
    assert len(below) == counts["low_score"] + counts["mismatched"] >= 2
    assert sum(pair not in aligned for pair in below) == counts["mismatched"]
    # only train text: nothing of dev or test leaks into the bitext
    train_text = {FIXTURE["fra"][i] for i in train}
    assert {fr for _, _, fr in lines} <= train_text


def test_same_seed_same_bytes_and_reruns_replace_the_corpus(corpus_dir, tmp_path):
    out, _ = corpus_dir
    other = str(tmp_path / "again")
    first = synthesize_corpus(SynthConfig(out=other, **{**CONFIG, "seed": 1, "workers": 1}))
    assert digest_tree(other) != digest_tree(out)
    assert first["seed"] == 1
    synthesize_corpus(SynthConfig(out=other, **{**CONFIG, "workers": 1}))  # replaces seed 1
    assert digest_tree(other) == digest_tree(out)


def flaky_render(item: dict) -> dict:
    """A worker-side render that aborts on French article 1 and is silent in Swahili."""
    if item["voice"] == "fr" and item["text"].startswith("Tous les êtres humains"):
        os.abort()
    if item["voice"] == "sw":
        return {"status": "silent", "detail": "near-silent (0% of frames above -40 dBFS)"}
    wave = 0.3 * np.sin(np.arange(8000) / 16000 * 2 * np.pi * 220).astype(np.float32)
    from corpora.synth import render
    from datastore import storage

    storage.write_bytes(item["uri"], render.encode(wave, item["sample_rate"], item["format"]))
    return {"status": "ok", "n_samples": wave.size, "seconds": wave.size / item["sample_rate"]}


def test_crashes_and_silent_languages_are_left_out(tmp_path):
    out = str(tmp_path / "flaky")
    config = SynthConfig(
        out=out,
        langs=("fr", "sw"),
        text="fixture",
        workers=2,
        render=f"{__name__}:flaky_render",
    )
    corpus = synthesize_corpus(config)
    crashed = [f for f in corpus["failures"] if f["status"] == "crashed"]
    assert {(f["lang"], f["corpus"], f["sentence_id"]) for f in crashed} == {
        ("fr", "fleurs", 101),
        ("fr", "cv", 101),
    }
    assert all("SIGABRT" in f["detail"] for f in crashed)
    assert corpus["excluded"]["sw"] == "failed on 36 of 36 recordings"
    assert sorted(corpus["languages"]) == ["en", "fr"]
    assert not os.path.exists(os.path.join(out, "fleurs", "sw_ke"))
    fr_ids = set()
    for split in layouts.SPLITS:
        fr_ids |= set(read_tsv(os.path.join(out, "fleurs", "fr_fr", f"{split}.tsv"))[0].astype(int))
    assert fr_ids == set(FIXTURE["fra"]) - {101}
    assert "101" not in set(
        read_tsv(os.path.join(out, "cv", "fr", "validated.tsv"), 0)["sentence_id"]
    )


def test_config_is_validated():
    with pytest.raises(ValueError, match="not both"):
        SynthConfig(out="x")
    with pytest.raises(ValueError, match="not both"):
        SynthConfig(out="x", langs=("fr",), all=True)
    with pytest.raises(ValueError, match="voices"):
        SynthConfig(out="x", langs=("fr",), voices=13)
    with pytest.raises(ValueError, match="per_lang"):
        SynthConfig(out="x", langs=("fr",), per_lang=0)
    with pytest.raises(ValueError, match="train"):
        SynthConfig(out="x", langs=("fr",), test_fraction=0.7, dev_fraction=0.3)


def test_cli_acceptance_command_falls_back_to_the_fixture_without_npm(
    tmp_path, monkeypatch, capsys
):
    from pipelines.cli import main

    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "D"
    argv = ["corpus", "synth", "--out", str(out), "--langs", "fr,de,sw,hi", "--per-lang", "10"]
    assert main([*argv, "--workers", "2"]) == 0
    corpus = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    assert corpus["text_source"] == "fixture"
    assert (corpus["seen"], corpus["unseen"]) == (["de", "fr"], ["en", "hi", "sw"])
    for code in ("en_us", "de_de", "fr_fr", "sw_ke", "hi_in"):
        rows = sum(len(read_tsv(out / "fleurs" / code / f"{s}.tsv")) for s in layouts.SPLITS)
        assert rows == 10
    assert sorted(os.listdir(out / "covost")) == ["covost_v2.de_en.tsv", "covost_v2.fr_en.tsv"]
    assert sorted(os.listdir(out / "wikimatrix")) == [
        "WikiMatrix.de-en.tsv.gz",
        "WikiMatrix.en-fr.tsv.gz",
        "WikiMatrix.en-hi.tsv.gz",
        "WikiMatrix.en-sw.tsv.gz",
    ]
    printed = capsys.readouterr().out
    assert "s of audio per wall second" in printed and "hi_in" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--langs", "my"], "aborts the process"), (["--langs", "fr,qq"], "unknown language"),
     (["--langs", "fr", "--per-lang", "0"], "per_lang"), ([], "not both")],
)  # fmt: skip
def test_cli_rejects_unusable_requests(tmp_path, capsys, args, message):
    from pipelines.cli import main

    assert main(["corpus", "synth", "--out", str(tmp_path / "x"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_projects_manifest_readers_accept_every_row(corpus_dir):
    from datastore.records import AudioExample
    from tokenizer.manifests import ManifestConfig, read_manifest

    out, corpus = corpus_dir
    fleurs = list(read_manifest(ManifestConfig(format="fleurs", input=os.path.join(out, "fleurs"))))
    assert all(isinstance(e, AudioExample) for e in fleurs)
    assert len(fleurs) == corpus["totals"]["utterances"]
    assert {e.lang for e in fleurs} == {"en", "fr", "sw"}
    assert len({e.id for e in fleurs}) == len(fleurs)
    covost = list(
        read_manifest(
            ManifestConfig(
                format="covost",
                input=os.path.join(out, "covost", "covost_v2.fr_en.tsv"),
                audio_root=os.path.join(out, "cv", "fr"),
            )
        )
    )
    assert all(isinstance(e, AudioExample) for e in covost)
    assert len(covost) == corpus["languages"]["fr"]["cv_clips"]
    assert all(e.translation == FIXTURE["eng"][int(e.sentence_id)] for e in covost)
