"""Round 3: lines and files that used to kill a job, merge records or pass a
bad value on. Each is a row or one reject with its reason now, in every
format where the case applies (reliability issue, items 5, 6, 10-13, 17 and
the smaller ones: ids with control or bidi characters, a 1e308 Kaldi segment).
"""

from __future__ import annotations

import gzip
import io
import json
import struct

import numpy as np
import pytest
import soundfile as sf

from datastore.records import AudioExample, Reason, Reject
from tests.reliability.catalogue import SR, encoded, tone
from tokenizer import audio
from tokenizer.manifests import OWN_LANGS, ManifestConfig, read_manifest
from trainer.embed import text_items

HUGE_INT = "1" * 5001  # over Python's 4,300-digit int conversion limit
DEEP = "[" * 3000 + "]" * 3000  # past the JSON parser's recursion limit
LONG_OFFSET = "9" * 401  # an integer no float holds


def read(config: ManifestConfig) -> tuple[list[AudioExample], list[Reject]]:
    items = list(read_manifest(config))
    return [i for i in items if isinstance(i, AudioExample)], [
        i for i in items if isinstance(i, Reject)
    ]


def wav(folder, name: str, seconds: float = 1.0) -> str:
    (folder / name).write_bytes(encoded(tone(seconds, SR), SR, "WAV", "PCM_16"))
    return name


# -- 12: a single hostile JSON line -----------------------------------------------------
def _jsonl_line(kind: str) -> str:
    good = {"id": "x", "audio": "a.wav", "text": "t", "lang": "fr", "split": "train"}
    if kind == "huge_int":
        return json.dumps(good)[:-1] + f', "n": {HUGE_INT}}}'
    if kind == "deep":
        return json.dumps(good)[:-1] + f', "n": {DEEP}}}'
    return json.dumps(good)


@pytest.mark.parametrize("kind", ["huge_int", "deep"])
@pytest.mark.parametrize("fmt", ["jsonl", "nemo", "lhotse"])
def test_one_hostile_json_line_is_one_reject(tmp_path, fmt, kind):
    wav(tmp_path, "a.wav")
    good = {
        "jsonl": {"id": "ok", "audio": "a.wav", "text": "t", "lang": "fr", "split": "train"},
        "nemo": {"audio_filepath": "a.wav", "text": "t", "lang": "fr"},
        "lhotse": _lhotse_cut("ok", "a.wav"),
    }[fmt]
    bad = json.dumps(good)[:-1] + (
        f', "n": {HUGE_INT}}}' if kind == "huge_int" else f', "n": {DEEP}}}'
    )
    manifest = tmp_path / ("m.jsonl" if fmt != "nemo" else "m.json")
    manifest.write_text(json.dumps(good) + "\n" + bad + "\n")
    lang = None if fmt in OWN_LANGS else "fr"  # jsonl lines name theirs; --lang is refused
    examples, rejects = read(ManifestConfig(format=fmt, input=str(manifest), lang=lang))
    assert len(examples) == 1
    assert [(r.reason, r.source) for r in rejects] == [(Reason.MALFORMED_LINE, f"{manifest}:2")]


def _lhotse_cut(cut_id: str, path: str, start: float = 0.0) -> dict:
    return {
        "id": cut_id, "start": start, "duration": 0.5, "channel": 0, "type": "MonoCut",
        "supervisions": [{"id": cut_id, "recording_id": "r", "start": 0.0, "duration": 0.5,
                          "channel": 0, "text": "t", "language": "fr"}],
        "recording": {"id": "r", "sources": [{"type": "file", "channels": [0], "source": path}],
                      "sampling_rate": SR, "num_samples": SR, "duration": 1.0},
    }  # fmt: skip


def test_an_offset_of_401_digits_is_a_reject(tmp_path):
    wav(tmp_path, "a.wav")
    manifest = tmp_path / "m.json"
    manifest.write_text(
        '{"audio_filepath": "a.wav", "text": "t", "offset": ' + LONG_OFFSET + ', "duration": 1}\n'
    )
    examples, rejects = read(ManifestConfig(format="nemo", input=str(manifest), lang="fr"))
    assert not examples and [r.reason for r in rejects] == [Reason.MALFORMED_LINE]
    assert "out of range" in rejects[0].detail


def test_embed_text_lines_are_rows_or_rejects(tmp_path):
    """12 and 13 for ``embed --text``: a huge integer, deep nesting, a lone surrogate."""
    path = tmp_path / "sentences.jsonl"
    lines = [
        '{"id": "a", "text": "Bonjour", "lang": "fr"}',
        '{"id": "b", "text": "x", "lang": "fr", "n": ' + HUGE_INT + "}",
        '{"id": "c", "text": "x", "lang": "fr", "n": ' + DEEP + "}",
        '{"id": "d", "text": "caf\\ud800", "lang": "fr"}',
        '{"id": "e", "text": "Hallo", "lang": " DE "}',
    ]
    path.write_text("\n".join(lines) + "\n")
    items = list(text_items(str(path)))
    got = [(i.id, getattr(i, "reason", "ok")) for i in items]
    assert got == [
        ("a", "ok"),
        ("line:2", Reason.MALFORMED_LINE),
        ("line:3", Reason.MALFORMED_LINE),
        ("d", Reason.BAD_TEXT),
        ("e", "ok"),
    ]
    assert items[-1].lang == "de"  # normalised like every reader's codes


# -- 5: NeMo segments that share an offset ------------------------------------------------
def test_nemo_segments_sharing_an_offset_keep_their_ids(tmp_path):
    wav(tmp_path, "long.wav", seconds=4.0)
    lines = [
        {"audio_filepath": "long.wav", "offset": 1.0, "duration": d, "text": f"seg {d}"}
        for d in (0.5, 1.0, 1.5)
    ] + [{"audio_filepath": "long.wav", "offset": 1.0004, "duration": 0.5, "text": "close"}]
    manifest = tmp_path / "m.json"
    manifest.write_text("\n".join(map(json.dumps, lines)) + "\n")
    examples, rejects = read(ManifestConfig(format="nemo", input=str(manifest), lang="fr"))
    assert not rejects  # none is a duplicate of another
    assert [e.id for e in examples] == [
        "long@1.000+0.500", "long@1.000+1.000", "long@1.000+1.500", "long@1.0004+0.500",
    ]  # fmt: skip


# -- 6: a gzipped manifest cut short ------------------------------------------------------
@pytest.mark.parametrize("fmt", ["nemo", "lhotse"])
def test_a_truncated_gz_manifest_keeps_the_lines_before_the_cut(tmp_path, fmt):
    wav(tmp_path, "a.wav")
    rows = [
        {"audio_filepath": "a.wav", "text": f"line {i}", "id": f"u{i:04d}" + "x" * 200}
        if fmt == "nemo"
        else _lhotse_cut(f"u{i:04d}" + "x" * 200, "a.wav")
        for i in range(3000)
    ]
    data = gzip.compress(("\n".join(map(json.dumps, rows)) + "\n").encode())
    manifest = tmp_path / ("m.json.gz" if fmt == "nemo" else "cuts.jsonl.gz")
    manifest.write_bytes(data[: int(len(data) * 0.6)])
    examples, rejects = read(ManifestConfig(format=fmt, input=str(manifest), lang="fr"))
    assert len(examples) > 1000  # everything before the cut that still decompresses
    assert [r.reason for r in rejects] == [Reason.BAD_GZIP]
    assert f"after line {len(examples)}" in rejects[0].detail
    assert [e.id for e in examples] == [f"u{i:04d}" + "x" * 200 for i in range(len(examples))]


# -- 10: --split-long window ids cannot meet a manifest id ---------------------------------
def test_window_ids_are_reserved_with_split_long(tmp_path, mfcc_codebook):
    from pipelines.cli import main
    from tests.reliability.helpers import read_index, read_rows

    wav(tmp_path, "long.wav", seconds=5.0)
    wav(tmp_path, "short.wav", seconds=1.0)
    lines = [
        {"id": "rec", "audio": "long.wav", "text": "long", "lang": "fr", "split": "train"},
        {"id": "rec#w001", "audio": "short.wav", "text": "imposter", "lang": "fr", "split": "train"},
    ]  # fmt: skip
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(map(json.dumps, lines)) + "\n")
    out = tmp_path / "out"
    args = ["tokenize", "--format", "jsonl", "--input", str(manifest), "--encoder", "mfcc",
            "--codebook", str(mfcc_codebook), "--out", str(out), "--split-long", "--max-seconds", "2"]  # fmt: skip
    assert main(args) == 0
    ids = [r["id"] for r in read_rows(out, "tokens")]
    assert sorted(ids) == ["rec#w000", "rec#w001", "rec#w002"] and len(set(ids)) == len(ids)
    assert [r["reason"] for r in read_rows(out, "rejects")] == [Reason.MALFORMED_LINE]
    assert read_index(out)["counts"] == {"input": 4, "accepted": 3, "rejected": 1}


# -- 11: language codes --------------------------------------------------------------------
@pytest.mark.parametrize(
    "lang,expected",
    [("FR", "fr"), (" fr ", "fr"), ("ｆｒ", "fr"), ("fr\u200b", None), ("fr\u0430", None)],
)
def test_language_codes_are_normalised_or_refused(tmp_path, lang, expected):
    wav(tmp_path, "a.wav")
    manifest = tmp_path / "m.jsonl"
    line = {"id": "a", "audio": "a.wav", "text": "t", "lang": lang, "split": "train"}
    manifest.write_text(json.dumps(line) + "\n")
    examples, rejects = read(ManifestConfig(format="jsonl", input=str(manifest), langs=("fr",)))
    if expected is None:
        assert not examples and [r.reason for r in rejects] == [Reason.MALFORMED_LINE]
    else:
        assert [e.lang for e in examples] == [expected] and not rejects
    nemo = tmp_path / "m.json"
    nemo.write_text(json.dumps({"audio_filepath": "a.wav", "text": "t", "lang": lang}) + "\n")
    examples, rejects = read(ManifestConfig(format="nemo", input=str(nemo)))
    assert [e.lang for e in examples] == ([expected] if expected else [])
    assert len(rejects) == (0 if expected else 1)


# -- ids with control and bidi characters --------------------------------------------------
@pytest.mark.parametrize("bad_id", ["a\x00b", "a\nb", "ab\u202ecd", "a\u2066b"])
def test_ids_with_control_or_bidi_characters_are_refused(tmp_path, bad_id):
    wav(tmp_path, "a.wav")
    manifest = tmp_path / "m.jsonl"
    line = {"id": bad_id, "audio": "a.wav", "text": "t", "lang": "fr", "split": "train"}
    manifest.write_text(json.dumps(line) + "\n")
    examples, rejects = read(ManifestConfig(format="jsonl", input=str(manifest)))
    assert not examples and [r.reason for r in rejects] == [Reason.MALFORMED_LINE]


# -- 17: a FLAC whose header says "length unknown" ------------------------------------------
def flac_of_unknown_length(seconds: float) -> bytes:
    """A FLAC as written to a pipe: STREAMINFO's total-samples field is 0."""
    data = bytearray(encoded(tone(seconds, SR), SR, "FLAC", "PCM_16"))
    assert data[:4] == b"fLaC"
    field = 8 + 10  # after "fLaC", the block header, and STREAMINFO's block/frame sizes
    packed = struct.unpack(">Q", data[field : field + 8])[0] & ~((1 << 36) - 1)
    data[field : field + 8] = struct.pack(">Q", packed)
    return bytes(data)


def test_a_flac_of_unknown_length_is_decoded_not_refused():
    data = flac_of_unknown_length(3.0)
    assert sf.info(io.BytesIO(data)).frames > 1 << 62  # what libsndfile reports
    wave = audio.decode(data, audio.AudioConfig(), "pipe.flac")
    assert abs(len(wave) - 3 * SR) <= 1
    with pytest.raises(audio.AudioError) as too_long:  # its real length still counts
        audio.decode(flac_of_unknown_length(40.0), audio.AudioConfig(), "pipe.flac")
    # refused as soon as 30 s are decoded: the rest is never read
    assert too_long.value.reason == Reason.TOO_LONG and "> max 30.0 s" in too_long.value.detail


# -- a 1e308 Kaldi segment -----------------------------------------------------------------
def test_a_1e308_kaldi_segment_is_bad_segment(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    wav(tmp_path, "rec.wav", seconds=2.0)
    (data / "wav.scp").write_text(f"rec {tmp_path / 'rec.wav'}\n")
    (data / "segments").write_text("u1 rec 0.0 1e308\nu2 rec 0.5 1.5\n")
    (data / "text").write_text("u1 beyond\nu2 within\n")
    config = ManifestConfig(format="kaldi", input=str(data), lang="fr")
    prepared = {e.id: audio.prepare(e, audio.AudioConfig()) for e in read(config)[0]}
    assert isinstance(prepared["u1"], Reject) and prepared["u1"].reason == Reason.BAD_SEGMENT
    assert not isinstance(prepared["u2"], Reject)


# -- 16: decoded samples are bounded too ----------------------------------------------------
def test_split_long_refuses_more_decoded_samples_than_max_bytes():
    """A long, very compressible FLAC: its decoded samples would not fit in
    ``max_bytes`` (here 8 MB: 131 s at 16 kHz), so it is ``too_long`` before
    anything is decoded, even with ``split_long``."""
    silence_ish = (0.1 * np.sin(np.arange(SR * 200) / 7.0)).astype(np.float32)
    data = encoded(silence_ish, SR, "FLAC", "PCM_16")
    config = audio.AudioConfig(split_long=True, max_bytes=8 << 20)
    with pytest.raises(audio.AudioError) as refused:
        audio.decode(data, config, "long.flac")
    assert refused.value.reason == Reason.TOO_LONG and "max_bytes" in refused.value.detail
    short = encoded(silence_ish[: SR * 100], SR, "FLAC", "PCM_16")
    assert len(audio.decode(short, config, "short.flac")) == SR * 100
