"""Manifests written by the real producer libraries, not by our own fixtures:
``datasets`` (``save_to_disk`` Arrow folders) and lhotse (``CutSet.to_file``
of trimmed cuts). Every clip must decode to exactly its samples."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.reliability.catalogue import encoded, tone
from tests.tokenizer.test_manifest_formats import decode_all, read
from tokenizer import audio, containers
from tokenizer.manifests import ManifestConfig

SR = 16000


def _wav(path, seconds: float, seed: int) -> np.ndarray:
    samples = tone(seconds, SR, (200.0 + 40 * seed,), seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded(samples, SR, "WAV", "PCM_16"))
    return sf.read(path, dtype="float32")[0]


def test_datasets_save_to_disk_folder_is_read(tmp_path, mfcc_codebook):
    datasets = pytest.importorskip("datasets")
    clips = {name: _wav(tmp_path / "src" / f"{name}.wav", 0.5 + i / 4, i)
             for i, name in enumerate(["a", "b", "c"])}  # fmt: skip
    features = datasets.Features(
        {
            "audio": datasets.Audio(decode=False),
            "sentence": datasets.Value("string"),
            "locale": datasets.Value("string"),
            "path": datasets.Value("string"),
        }
    )

    def split(names):
        # An Audio column as datasets stores it ({bytes, path}); built from Arrow
        # because encoding through the Audio feature needs torchcodec.
        import pyarrow as pa
        from datasets.table import InMemoryTable

        audio = [{"bytes": (tmp_path / "src" / f"{n}.wav").read_bytes(), "path": f"{n}.wav"}
                 for n in names]  # fmt: skip
        table = pa.table(
            {
                "audio": pa.array(audio, type=features["audio"].pa_type),
                "sentence": [f"phrase {n}" for n in names],
                "locale": ["fr"] * len(names),
                "path": [f"{n}.wav" for n in names],
            }
        )
        return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features))

    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": split(["a", "b"]), "test": split(["c"])}).save_to_disk(
        str(folder)
    )
    examples, rejects = read(ManifestConfig(format="hf-parquet", input=str(folder)))
    assert rejects == []
    got = {(e.id, e.split, e.lang, e.text) for e in examples}
    assert got == {
        ("fr/a", "train", "fr", "phrase a"),
        ("fr/b", "train", "fr", "phrase b"),
        ("fr/c", "test", "fr", "phrase c"),
    }
    assert decode_all(examples) == {e.id: [len(clips[e.id[3:]])] for e in examples}
    for e in examples:  # the very samples, read from the Arrow file's record batch
        ((_, payload),) = containers.iter_group(
            containers.make_group(containers.group_key(e), [e]), audio.AudioConfig()
        )
        ((_, samples),) = audio.prepare_bytes(e, payload, audio.AudioConfig())
        np.testing.assert_allclose(samples, clips[e.id[3:]], atol=1e-4)
    _tokenize_exits_clean(
        ManifestConfig(format="hf-parquet", input=str(folder)), mfcc_codebook, tmp_path / "tok", 3
    )
    # datasets ignores folder names: each row still names its language in a column.
    loaded = datasets.load_dataset(str(tmp_path / "tok"), cache_dir=str(tmp_path / "hf"))
    assert {s: [r["source_lang"] for r in rows] for s, rows in loaded.items()} == {
        "train": ["fr", "fr"],
        "test": ["fr"],
    }
    only_test = ManifestConfig(format="hf-parquet", input=str(folder), splits=("test",))
    assert [e.id for e in read(only_test)[0]] == ["fr/c"]


def test_lhotse_cutset_written_by_lhotse_is_read_exactly(tmp_path, monkeypatch):
    lhotse = pytest.importorskip("lhotse")
    samples = _wav(tmp_path / "audio" / "long.wav", 3.0, 0)
    monkeypatch.chdir(tmp_path)  # lhotse records paths as given: relative to the working dir
    recording = lhotse.Recording.from_file("audio/long.wav")
    sup = lhotse.SupervisionSegment(
        id="s1", recording_id=recording.id, start=0.0, duration=1.0, text="un", language="fr"
    )
    cut = lhotse.MonoCut(
        id="c1", start=0.5, duration=1.0, channel=0, recording=recording, supervisions=[sup]
    )
    lhotse.CutSet.from_cuts([cut]).to_file(str(tmp_path / "cuts.jsonl.gz"))
    config = ManifestConfig(format="lhotse", input=str(tmp_path / "cuts.jsonl.gz"), audio_root=".")
    examples, rejects = read(config)
    assert rejects == [] and [(e.id, e.lang, e.text) for e in examples] == [("s1", "fr", "un")]
    ((_, got),) = audio.prepare(examples[0], audio.AudioConfig())
    np.testing.assert_allclose(got, samples[8000:24000], atol=1e-4)


def _tokenize_exits_clean(config, codebook, out, accepted: int) -> None:
    """The CLI takes the input as given (a folder here) and accepts every clip."""
    from datastore import shards
    from pipelines.cli import main

    args = ["tokenize", "--format", config.format, "--input", config.input, "--encoder", "mfcc"]
    assert main([*args, "--codebook", str(codebook), "--out", str(out)]) == 0
    assert shards.Index.read(str(out)).counts == {"input": accepted, "accepted": accepted,
                                                  "rejected": 0}  # fmt: skip


def test_lhotse_shar_folder_is_read_exactly(tmp_path, monkeypatch, mfcc_codebook):
    """``CutSet.to_shar``: cuts shards + recording tar shards (the cuts' own audio)."""
    lhotse = pytest.importorskip("lhotse")
    samples = _wav(tmp_path / "audio" / "long.wav", 3.0, 0)
    monkeypatch.chdir(tmp_path)
    recording = lhotse.Recording.from_file("audio/long.wav")
    cuts = []
    for i, (start, sup_start) in enumerate([(0.5, 0.25), (1.0, 0.0), (2.0, 0.5)]):
        sup = lhotse.SupervisionSegment(
            id=f"s{i}", recording_id=recording.id, start=sup_start, duration=0.5,
            text=f"mot {i}", language="French",
        )  # fmt: skip
        cuts.append(
            lhotse.MonoCut(
                id=f"c{i}",
                start=start,
                duration=1.0,
                channel=0,
                recording=recording,
                supervisions=[sup],
            )
        )
    (tmp_path / "shar").mkdir()
    lhotse.CutSet.from_cuts(cuts).to_shar(
        str(tmp_path / "shar"), fields={"recording": "flac"}, shard_size=2
    )
    config = ManifestConfig(format="lhotse", input=str(tmp_path / "shar"))
    examples, rejects = read(config)
    _tokenize_exits_clean(config, mfcc_codebook, tmp_path / "tok", accepted=3)
    assert rejects == []
    assert [(e.id, e.lang, e.text) for e in examples] == [
        ("s0", "fr", "mot 0"), ("s1", "fr", "mot 1"), ("s2", "fr", "mot 2"),
    ]  # fmt: skip
    decoded = {}
    for e in examples:
        key = containers.group_key(e)
        for ex, payload in containers.iter_group(
            containers.make_group(key, [e]), audio.AudioConfig()
        ):
            ((_, decoded[ex.id]),) = audio.prepare_bytes(ex, payload, audio.AudioConfig())
    for i, (start, sup_start) in enumerate([(0.5, 0.25), (1.0, 0.0), (2.0, 0.5)]):
        first = round((start + sup_start) * SR)
        np.testing.assert_allclose(decoded[f"s{i}"], samples[first : first + 8000], atol=1e-4)
