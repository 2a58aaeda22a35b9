"""The NeMo, lhotse, Hugging Face Parquet and Kaldi readers, and FLEURS read from
its published archives, on corpora the tests write in each tool's own layout
(``format_fixtures``): every malformed line is exactly one reject with its
reason, good lines are examples with the right fields, and segments decode to
exactly their samples."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import soundfile as sf

from datastore.records import COMMAND, PARQUET, TAR, AudioExample, Reason, Reject
from tests.reliability.helpers import assert_rejects_match
from tests.tokenizer import format_fixtures as ff
from tokenizer import audio, containers
from tokenizer.manifests import ManifestConfig, list_sources, read_manifest

CFG = audio.AudioConfig()


def config_of(built: ff.Built, **extra) -> ManifestConfig:
    flags = dict(zip(built.args[::2], built.args[1::2], strict=True))
    return ManifestConfig(
        format=flags["--format"],
        input=flags["--input"],
        lang=flags.get("--lang"),
        audio_root=flags.get("--audio-root"),
        **extra,
    )


def read(config: ManifestConfig):
    items = list(read_manifest(config))
    examples = [i for i in items if isinstance(i, AudioExample)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(examples) + len(rejects) == len(items)
    return examples, rejects


def decode_all(examples: list[AudioExample]) -> dict[str, object]:
    """id -> decoded sample count or Reject, members read in group passes as the job does."""
    out: dict[str, object] = {}
    groups: dict[str, list[AudioExample]] = {}
    for e in examples:
        key = containers.group_key(e)
        if key is None:
            out[e.id] = audio.prepare(e, CFG)
        else:
            groups.setdefault(key, []).append(e)
    for key, members in groups.items():
        for e, payload in containers.iter_group(containers.make_group(key, members), CFG):
            out[e.id] = (
                payload if isinstance(payload, Reject) else audio.prepare_bytes(e, payload, CFG)
            )
    return {k: v if isinstance(v, Reject) else [len(w) for _, w in v] for k, v in out.items()}


@pytest.mark.parametrize("name", sorted(ff.BUILDERS))
def test_reader_rejects_each_bad_line_once(tmp_path, name):
    built = ff.BUILDERS[name](tmp_path)
    examples, rejects = read(config_of(built))
    assert_rejects_match([r.as_row() for r in rejects], built.read_rejects)
    decode_ids = {e.id for e in built.decode_rejects}
    assert sorted(e.id for e in examples) == sorted({*built.accepted, *decode_ids})
    for e in examples:
        if e.id in built.accepted:
            utt = built.accepted[e.id]
            assert (e.text, e.lang, e.offset_s) == (utt.text, utt.lang, utt.offset_s), e
            assert e.split == ("test" if name == "fleurs-archives" else "train")


@pytest.mark.parametrize("name", sorted(ff.BUILDERS))
def test_segments_decode_to_their_samples(tmp_path, name):
    built = ff.BUILDERS[name](tmp_path)
    examples, _ = read(config_of(built))
    decoded = decode_all(examples)
    for utt_id, utt in built.accepted.items():
        got = decoded[utt_id]
        assert isinstance(got, list) and len(got) == 1, (utt_id, got)
        if utt.n_samples is not None:
            assert got == [utt.n_samples], utt_id
    for expected in built.decode_rejects:
        got = decoded[expected.id]
        assert isinstance(got, Reject) and got.reason == expected.reason, (expected, got)


def test_a_segment_is_the_same_samples_as_the_whole_file_cut(tmp_path):
    """Seeking reads exactly the frames a whole decode would hold there: WAV, FLAC
    (one channel of a stereo file), MP3 (decoded from its start)."""
    files = ff.write_audio(tmp_path)
    cases = [
        ("long.wav", 2.0, 1.0, None),
        ("long.wav", 0.5, 1.25, None),
        ("stereo.flac", 1.0, 1.5, 1),
        ("clip.mp3", 1.0, 2.0, None),
    ]
    for name, offset, duration, channel in cases:
        uri = str(files[name])
        data, sr = sf.read(uri, dtype="float32", always_2d=True)
        start = round(offset * sr)
        part = data[start : start + round(duration * sr)]
        part = part[:, channel] if channel is not None else part.mean(axis=1)
        expected = audio._finish(part[:, None], sr, CFG, name, None)
        got = audio.load_waveform(uri, CFG, audio.Segment(offset, duration, channel))
        assert len(got) == round(duration * 16000)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        from_bytes = audio.decode(
            files[name].read_bytes(), CFG, name, audio.Segment(offset, duration, channel)
        )
        np.testing.assert_allclose(from_bytes, got, atol=1e-6)


def test_segment_length_limits(tmp_path):
    files = ff.write_audio(tmp_path)
    long = str(files["long.wav"])
    short_cap = audio.AudioConfig(max_seconds=1.0)
    with pytest.raises(audio.AudioError) as exc:
        audio.load_waveform(long, short_cap, audio.Segment(1.0, 2.0))
    assert exc.value.reason == Reason.TOO_LONG
    # Inside the cap: only the segment counts, not the 7.5 s file.
    assert len(audio.load_waveform(long, short_cap, audio.Segment(1.0, 0.5))) == 8000
    # A few ms past the end (rounded manifest times) is cut at the end.
    assert len(audio.load_waveform(long, CFG, audio.Segment(7.0, 0.53))) == 8000
    for segment in (audio.Segment(7.6, 1.0), audio.Segment(7.0, 1.0)):
        with pytest.raises(audio.AudioError) as exc:
            audio.load_waveform(long, CFG, segment)
        assert exc.value.reason == Reason.BAD_SEGMENT
    with pytest.raises(audio.AudioError) as exc:
        audio.load_waveform(str(files["short.wav"]), CFG, audio.Segment(0.0, None, 1))
    assert exc.value.reason == Reason.BAD_SEGMENT  # channel 1 of a mono file


def test_split_long_segment_windows_say_where_they_start(tmp_path):
    files = ff.write_audio(tmp_path)
    ex = AudioExample(
        id="u",
        uri=str(files["long.wav"]),
        text="t",
        lang="fr",
        split="train",
        corpus="c",
        offset_s=1.0,
        duration_s=5.0,
    )
    out = audio.prepare(ex, audio.AudioConfig(max_seconds=2.0, split_long=True))
    assert [(e.id, e.offset_s, e.duration_s, len(w)) for e, w in out] == [
        ("u#w000", 1.0, 2.0, 32000),
        ("u#w001", 3.0, 2.0, 32000),
        ("u#w002", 5.0, 1.0, 16000),
    ]


def test_commands_run_only_when_allowed(tmp_path):
    files = ff.write_audio(tmp_path / "audio")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"r1 cat {files['short.wav']} |\nr2 exit 3 |\n")
    (data / "text").write_text("r1 bonjour\nr2 échec\n")
    refused, rejects = read(ManifestConfig(format="kaldi", input=str(data), lang="fr"))
    assert not refused and [r.reason for r in rejects] == [Reason.SHELL_COMMAND] * 2
    cfg = ManifestConfig(format="kaldi", input=str(data), lang="fr", allow_commands=True)
    examples, rejects = read(cfg)
    assert not rejects and [e.audio_kind for e in examples] == [COMMAND, COMMAND]
    assert [len(w) for _, w in audio.prepare(examples[0], CFG)] == [20800]
    failed = audio.prepare(examples[1], CFG)
    assert failed.reason == Reason.DECODE_ERROR and "status 3" in failed.detail
    with pytest.raises(ValueError, match="confined"):
        ManifestConfig(format="kaldi", input=str(data), allow_commands=True, confine_audio_to="/")


def test_lhotse_command_source_runs_when_allowed(tmp_path):
    files = ff.write_audio(tmp_path / "audio")
    rec = ff._recording("r", "x", 1.3)
    rec["sources"] = [{"type": "command", "channels": [0], "source": f"cat {files['short.wav']}"}]
    cut = {
        "id": "c",
        "start": 0.0,
        "duration": 1.3,
        "channel": 0,
        "type": "MonoCut",
        "recording": rec,
        "supervisions": [ff._sup("s", "r", 0.2, 1.0, "oui", language="fr")],
    }
    manifest = tmp_path / "cuts.jsonl"
    manifest.write_text(json.dumps(cut) + "\n")
    (example,), _ = read(ManifestConfig(format="lhotse", input=str(manifest), allow_commands=True))
    assert (example.audio_kind, example.offset_s) == (COMMAND, 0.2)
    assert [len(w) for _, w in audio.prepare(example, CFG)] == [16000]


def test_corrupt_gzip_manifest_ends_with_one_reject(tmp_path):
    built = ff.lhotse_cuts(tmp_path)
    manifest = tmp_path / "cuts_train.jsonl.gz"
    data = manifest.read_bytes()
    manifest.write_bytes(data[: len(data) // 2] + bytes(64))
    examples, rejects = read(config_of(built))
    assert rejects[-1].reason == Reason.BAD_GZIP
    assert len(examples) + len(rejects) < built.n_records


def test_lhotse_pair_needs_its_recordings(tmp_path):
    built = ff.lhotse_pair(tmp_path)
    (tmp_path / "corpus_recordings_train.jsonl.gz").unlink()
    with pytest.raises(ValueError, match="recordings"):
        list_sources(config_of(built))


def test_kaldi_language_from_utt2lang_or_flag(tmp_path):
    built = ff.kaldi(tmp_path)
    data = tmp_path / "data" / "train"
    with pytest.raises(ValueError, match="--lang"):
        list_sources(ManifestConfig(format="kaldi", input=str(data)))
    (data / "utt2lang").write_text("u1 de\nu2 sw_ke\n")
    examples, _ = read(config_of(built, langs=("de", "sw")))
    assert sorted((e.id, e.lang, e.source_lang) for e in examples) == [
        ("u1", "de", None),
        ("u2", "sw", "sw_ke"),
    ]


def test_hf_parquet_columns_split_and_language(tmp_path):
    """Other column names map by flag; the split comes from the hub's file names
    (``validation`` reads as ``dev``) unless --split says; --lang when no column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = ff.write_audio(tmp_path / "src")
    folder = tmp_path / "ds"
    folder.mkdir()
    for split in ("validation", "test"):
        table = pa.table(
            {
                "uid": [f"{split}-a", f"{split}-b"],
                "speech": [files["short.wav"].read_bytes(), files["long.wav"].read_bytes()],
                "words": ["un", "deux"],
            }
        )
        pq.write_table(table, folder / f"{split}-00000-of-00001.parquet")
    columns = (("audio", "speech"), ("text", "words"), ("id", "uid"))
    cfg = ManifestConfig(format="hf-parquet", input=str(folder), columns=columns, lang="sw")
    examples, rejects = read(cfg)
    assert not rejects
    assert [(e.id, e.split, e.lang, e.audio_kind) for e in examples] == [
        ("test-a", "test", "sw", PARQUET),
        ("test-b", "test", "sw", PARQUET),
        ("validation-a", "dev", "sw", PARQUET),
        ("validation-b", "dev", "sw", PARQUET),
    ]
    dev = ManifestConfig(
        format="hf-parquet", input=str(folder), columns=columns, lang="sw", splits=("dev",)
    )
    assert [s.rsplit("/", 1)[1] for s in list_sources(dev)] == ["validation-00000-of-00001.parquet"]
    forced = ManifestConfig(
        format="hf-parquet",
        input=str(folder / "*.parquet"),
        columns=columns,
        lang="sw",
        split="train",
    )
    assert {e.split for e in read(forced)[0]} == {"train"}
    no_lang = ManifestConfig(format="hf-parquet", input=str(folder), columns=columns)
    examples, rejects = read(no_lang)
    assert not examples and [r.reason for r in rejects] == [Reason.MALFORMED_LINE] * 2
    assert "--lang" in rejects[0].detail
    with pytest.raises(ValueError, match="hf-parquet"):
        ManifestConfig(format="nemo", input="m.json", columns=columns)


def test_fleurs_archive_is_read_in_one_pass(tmp_path, monkeypatch):
    """A gzip stream cannot seek: reading the members of one archive must read
    it once (not once per member), in time linear in its size."""
    from datastore import storage

    built = ff.fleurs_archives(tmp_path)
    examples, _ = read(config_of(built))
    assert {e.audio_kind for e in examples} == {TAR}
    archive = tmp_path / "fleurs" / "fr_fr" / "audio" / "test.tar.gz"
    read_bytes = []
    real_open = storage.open_regular

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            data = self.f.read(n)
            read_bytes.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(storage, "open_regular", lambda uri: Counting(real_open(uri)))
    decoded = decode_all(examples)
    assert sum(read_bytes) <= archive.stat().st_size
    assert [decoded[i] for i in sorted(built.accepted)] == [[20800], [120000], [48000]]
    # The extracted folder, when present, wins over the archive.
    (archive.parent / "test").mkdir()
    examples, _ = read(config_of(built))
    assert {e.audio_kind for e in examples} == {"file"}


def test_parquet_row_group_is_read_once(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    built = ff.hf_fleurs(tmp_path)
    examples, _ = read(config_of(built))
    calls = []
    real = pq.ParquetFile.iter_batches

    def counting(self, *args, row_groups=None, **kwargs):
        calls.extend(row_groups)
        return real(self, *args, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    decode_all(examples)
    assert sorted(calls) == [0, 1, 2]  # one read per row group holding accepted rows


def test_reading_never_touches_the_audio_bytes(tmp_path, monkeypatch):
    """The reader reads text and ids, never the audio column's bytes (the decode
    stage does, one row group at a time)."""
    import pyarrow.parquet as pq

    built = ff.hf_common_voice(tmp_path)
    read_columns = []
    real = pq.ParquetFile.read_row_group

    def recording(self, i, columns=None, **kwargs):
        read_columns.extend(columns or ["<all>"])
        return real(self, i, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", recording)
    cfg = config_of(built)
    rows = list(read_manifest(cfg))
    assert rows and "audio.path" in read_columns
    # Row groups mixing rows with and without bytes are checked through the bytes column;
    # a row group whose statistics settle it never is.
    assert set(read_columns) <= {
        "audio.path",
        "audio.bytes",
        "sentence",
        "locale",
        "path",
        "client_id",
    }


def test_nemo_gzip_and_ids(tmp_path):
    files = ff.write_audio(tmp_path / "clips")
    lines = [
        {"audio_filepath": "clips/long.wav", "offset": 2, "duration": 1, "text": "a"},
        {"audio_filepath": "clips/long.wav", "offset": 3.25, "text": "to the end"},
        {"audio_filepath": "clips/short.wav", "duration": 99.0, "text": "whole"},
    ]
    manifest = tmp_path / "m.json.gz"
    manifest.write_bytes(gzip.compress("\n".join(map(json.dumps, lines)).encode()))
    examples, rejects = read(ManifestConfig(format="nemo", input=str(manifest), lang="fr"))
    assert not rejects
    assert [(e.id, e.offset_s, e.duration_s) for e in examples] == [
        ("clips/long@2.000+1.000", 2.0, 1.0),
        ("clips/long@3.250", 3.25, None),
        ("clips/short", None, None),
    ]
    assert [len(audio.prepare(e, CFG)[0][1]) for e in examples] == [16000, 68000, 20800]
    assert files  # written


def test_json_manifest_line_shapes_are_checked(tmp_path):
    """Stray value types never crash a reader: each is one reject."""
    manifest = tmp_path / "cuts.jsonl"
    odd = [
        {"id": "c", "type": "MonoCut", "recording": "nope", "supervisions": []},
        {"id": "c", "type": "MonoCut", "recording": {}, "supervisions": "nope"},
        {"id": "c", "type": "MonoCut", "start": True, "recording": {}, "supervisions": []},
        {
            "id": "c",
            "recording": {"sources": [{"type": "memory", "channels": [0], "source": "x"}]},
            "supervisions": [ff._sup("s", "r", 0, 1, "t", language="fr")],
        },
        {
            "id": "c",
            "recording": {"sources": [{"type": "file", "channels": 5, "source": "a.wav"}]},
            "supervisions": [ff._sup("s", "r", 0, 1, "t", language="fr")],
        },
        {
            "id": "c",
            "recording": {"sources": []},
            "supervisions": [{"id": "s", "start": "0", "duration": 1, "text": "t"}],
        },
    ]
    manifest.write_text("\n".join(map(json.dumps, odd)) + "\n")
    examples, rejects = read(ManifestConfig(format="lhotse", input=str(manifest), lang="fr"))
    assert not examples and [r.reason for r in rejects] == [Reason.MALFORMED_LINE] * len(odd)


def test_run_command_output_is_bounded(tmp_path):
    cfg = audio.AudioConfig(max_bytes=1000)
    with pytest.raises(audio.AudioError) as exc:
        containers.run_command("head -c 5000 /dev/zero", cfg)
    assert exc.value.reason == Reason.TOO_LONG
    assert containers.run_command("printf abc", cfg) == b"abc"


def test_a_damaged_archive_costs_its_unread_members(tmp_path):
    """Members read before the damage are decoded; every later one is one
    ``decode_error`` (a missing archive: ``missing_file``), none is lost."""
    built = ff.fleurs_archives(tmp_path)
    examples, _ = read(config_of(built))
    archive = tmp_path / "fleurs" / "fr_fr" / "audio" / "test.tar.gz"
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    decoded = decode_all(examples)
    assert len(decoded) == len(examples)
    assert decoded["fr_fr/1001"] == [20800]  # the first member, before the cut
    reasons = {k: v.reason for k, v in decoded.items() if isinstance(v, Reject)}
    assert (
        reasons["fr_fr/1003"] == Reason.DECODE_ERROR
        and "unreadable" in decoded["fr_fr/1003"].detail
    )
    archive.unlink()
    assert {v.reason for v in decode_all(examples).values()} == {Reason.MISSING_FILE}
