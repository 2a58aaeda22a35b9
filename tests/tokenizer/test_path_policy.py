"""One path policy for every manifest format: a relative path resolves against
the corpus root, ``..`` included (as NeMo and Kaldi tools resolve theirs);
absolute paths and URIs are taken as written; symlinks are followed (a symlinked clips folder, clips that
are git-annex / DVC links); ``--confine-audio-to ROOT`` refuses everything that
does not resolve under ROOT, checked on the path that is opened."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datastore.records import AudioExample, Reason, Reject
from tests.reliability.catalogue import encoded, tone
from tokenizer import audio
from tokenizer.manifests import ManifestConfig, read_manifest

FORMATS = ("jsonl", "nemo", "lhotse", "kaldi", "hf-parquet", "fleurs", "covost")
ALWAYS_OK = {"inside"}
# Accepted by default, refused when confined (``..`` too: refusing it while absolute
# paths are taken protected nothing; --confine-audio-to is the one switch).
FOLLOWED = {"absolute", "annex", "linked_dir", "dotdot"}


def clip(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        encoded(tone(0.6, 16000, (200.0 + 50 * seed,), seed=seed), 16000, "WAV", "PCM_16")
    )


def corpus(tmp_path: Path, audio_dir: Path) -> dict[str, str]:
    """Audio in and around ``audio_dir`` (where relative paths resolve); the path
    each utterance names, as a manifest writes it."""
    outside = tmp_path / "outside"
    clip(audio_dir / "inside.wav", 0)
    clip(outside / "absolute.wav", 1)
    clip(outside / "annexed.wav", 2)
    (audio_dir / "annex.wav").symlink_to(outside / "annexed.wav")  # git-annex / DVC style
    clip(tmp_path / "shared" / "linked_dir.wav", 3)
    (audio_dir / "clips").symlink_to(tmp_path / "shared")  # a symlinked clips/ folder
    clip(outside / "dotdot.wav", 4)
    up = "../" * (len(audio_dir.relative_to(tmp_path).parts))
    return {
        "inside": "inside.wav",
        "absolute": str(outside / "absolute.wav"),
        "annex": "annex.wav",
        "linked_dir": "clips/linked_dir.wav",
        "dotdot": f"{up}outside/dotdot.wav",
    }


def write(fmt: str, tmp_path: Path) -> tuple[dict, Path]:
    """A manifest of ``fmt`` naming the corpus's paths: ManifestConfig fields and
    the corpus root (what a user would confine to)."""
    root = tmp_path / "corpus"
    if fmt == "fleurs":
        paths = corpus(tmp_path, root / "fr_fr" / "audio" / "test")
        rows = [
            f"{i}\t{p}\tTexte {i}\ttexte\tt|e\t9600\tMALE" for i, p in enumerate(paths.values())
        ]
        (root / "fr_fr" / "test.tsv").write_text("\n".join(rows) + "\n")
        return {"format": fmt, "input": str(root)}, root
    if fmt == "covost":
        cv = root / "cv"
        paths = corpus(tmp_path, cv / "clips")
        tsv = root / "covost_v2.fr_en.tsv"
        tsv.write_text(
            "path\ttranslation\tsplit\n" + "".join(f"{p}\tEN\ttest\n" for p in paths.values())
        )
        (cv / "validated.tsv").write_text(
            "client_id\tpath\tsentence\n" + "".join(f"spk\t{p}\tTexte\n" for p in paths.values())
        )
        return {"format": fmt, "input": str(tsv), "audio_root": str(cv)}, root
    paths = corpus(tmp_path, root)
    if fmt in ("jsonl", "nemo"):
        key = "audio" if fmt == "jsonl" else "audio_filepath"
        lines = [
            {"id": u, key: p, "text": "Texte", "lang": "fr", "split": "test"}
            for u, p in paths.items()
        ]
        (root / "m.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
        return {"format": fmt, "input": str(root / "m.jsonl")}, root
    if fmt == "lhotse":
        cuts = [
            {
                "id": f"c-{u}",
                "start": 0,
                "duration": 0.6,
                "channel": 0,
                "type": "MonoCut",
                "recording": {
                    "id": u,
                    "sources": [{"type": "file", "channels": [0], "source": p}],
                    "sampling_rate": 16000,
                    "duration": 0.6,
                },
                "supervisions": [
                    {
                        "id": u,
                        "recording_id": u,
                        "start": 0,
                        "duration": 0.6,
                        "channel": 0,
                        "text": "Texte",
                        "language": "fr",
                    }
                ],
            }
            for u, p in paths.items()
        ]
        (root / "cuts.jsonl").write_text("\n".join(map(json.dumps, cuts)) + "\n")
        return {"format": fmt, "input": str(root / "cuts.jsonl")}, root
    if fmt == "kaldi":
        data = root / "data"
        data.mkdir()
        (data / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in paths.items()))
        (data / "text").write_text("".join(f"{u} Texte\n" for u in paths))
        return {"format": fmt, "input": str(data), "lang": "fr", "audio_root": str(root)}, root
    assert fmt == "hf-parquet"  # rows without bytes name a file by path
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "id": list(paths),
            "sentence": ["Texte"] * len(paths),
            "locale": ["fr"] * len(paths),
            "audio": pa.array([{"bytes": None, "path": p} for p in paths.values()], struct),
        }
    )
    pq.write_table(table, root / "train-00000-of-00001.parquet")
    return {"format": fmt, "input": str(root / "train-00000-of-00001.parquet")}, root


def outcome(config: ManifestConfig) -> dict[str, str]:
    """Utterance stem -> ``accepted`` (read and decoded) or its reject reason."""
    out = {}
    for item in read_manifest(config):
        name = item.id.rsplit("/", 1)[-1]
        if isinstance(item, Reject):
            out[name] = item.reason
            continue
        assert isinstance(item, AudioExample)
        prepared = audio.prepare(item, audio.AudioConfig())
        out[name] = prepared.reason if isinstance(prepared, Reject) else "accepted"
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_default_policy(tmp_path, fmt):
    fields, _ = write(fmt, tmp_path)
    got = outcome(ManifestConfig(**fields))
    assert got == {name: "accepted" for name in ALWAYS_OK | FOLLOWED}


@pytest.mark.parametrize("fmt", FORMATS)
def test_confined_refuses_every_escape(tmp_path, fmt):
    fields, root = write(fmt, tmp_path)
    got = outcome(ManifestConfig(**fields, confine_audio_to=str(root)))
    assert got == {
        **{name: "accepted" for name in ALWAYS_OK},
        **{name: Reason.PATH_ESCAPE for name in FOLLOWED},
    }
    # Confined to a folder holding the link targets too: followed links are fine.
    assert outcome(ManifestConfig(**fields, confine_audio_to=str(tmp_path)))["annex"] == "accepted"


def test_jsonl_takes_uris_and_absolute_paths_as_written(tmp_path):
    lines = [
        {"id": "g", "audio": "gs://bkt/clips/a.mp3", "text": "t", "lang": "fr", "split": "test"},
        {
            "id": "f",
            "audio": f"file://{tmp_path}/a.wav",
            "text": "t",
            "lang": "fr",
            "split": "test",
        },
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    items = list(read_manifest(ManifestConfig(format="jsonl", input=str(tmp_path / "m.jsonl"))))
    assert [(i.id, i.uri) for i in items] == [
        ("g", "gs://bkt/clips/a.mp3"),
        ("f", str(tmp_path / "a.wav")),
    ]
    confined = ManifestConfig(
        format="jsonl", input=str(tmp_path / "m.jsonl"), confine_audio_to="gs://bkt/clips"
    )
    assert [getattr(i, "reason", "ok") for i in read_manifest(confined)] == [
        "ok",
        Reason.PATH_ESCAPE,
    ]
