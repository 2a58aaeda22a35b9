"""Hugging Face hub Parquet layouts for the format tests (see ``format_fixtures``):
FLEURS and Common Voice as the hub ships them, built with pyarrow, with the
``huggingface`` schema metadata the hub's files carry."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datastore.records import Reason
from tests.reliability.catalogue import Expected
from tests.tokenizer.format_fixtures import Built, Utt, write_audio

FLEURS_CODES = ("af_za", "fr_fr", "sw_ke")  # the ClassLabel names of lang_id (a few of 102)
AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _hf_metadata(features: dict) -> dict[bytes, bytes]:
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def hf_fleurs(root: Path) -> Built:
    """The hub's FLEURS Parquet layout (``fr_fr/train/0000.parquet``): id (the
    sentence id), num_samples, path, audio {bytes, path}, transcription,
    raw_transcription, gender, lang_id (ClassLabel), language, lang_group_id;
    row groups of 2 rows."""
    audio = write_audio(root / "src")
    file = root / "fr_fr" / "train" / "0000.parquet"
    file.parent.mkdir(parents=True)
    b = Built("hf-parquet", ["--format", "hf-parquet", "--input", str(root / "fr_fr")])
    rows = [
        (7, "10001.wav", audio["short.wav"].read_bytes(), "Un fichier", 1, "fleurs/fr_fr/10001"),
        (7, "10002.wav", audio["stereo.flac"].read_bytes(), "Une autre voix", 1, None),
        (8, "10003.wav", audio["clip.mp3"].read_bytes(), "Le mp3", 2, None),
        (9, "10004.wav", None, "Sans octets", 1, "no_bytes_no_path"),
        (10, "10005.wav", audio["short.wav"].read_bytes(), None, 1, "null_text"),
        (11, "10006.wav", b"not audio at all", "Cassé", 1, "garbage"),
    ]
    b.accepted["fr_fr/10001"] = Utt("Un fichier", 20800)
    b.accepted["fr_fr/10002"] = Utt("Une autre voix", 48000)
    b.accepted["fr_fr/10003"] = Utt("Le mp3", None)
    # No file name anywhere: the id falls back to the Parquet file and row.
    b.read_rejects.append(Expected(Reason.MISSING_FILE, "no_bytes_no_path", id="fr_fr/0000-3"))
    b.read_rejects.append(Expected(Reason.BAD_TEXT, "null_text", id="fr_fr/10005"))
    b.decode_rejects.append(Expected(Reason.DECODE_ERROR, "garbage", id="fr_fr/10006"))
    table = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int32()),
            "num_samples": pa.array([20800] * len(rows), pa.int32()),
            "path": pa.array([None if r[5] == "no_bytes_no_path" else r[1] for r in rows]),
            "audio": pa.array(
                [
                    {"bytes": r[2], "path": r[1] if r[5] != "no_bytes_no_path" else None}
                    for r in rows
                ],
                AUDIO_TYPE,
            ),
            "transcription": pa.array([r[3] and r[3].lower() for r in rows], pa.string()),
            "raw_transcription": pa.array([r[3] for r in rows], pa.string()),
            "gender": pa.array([r[4] for r in rows], pa.int64()),
            "lang_id": pa.array([1] * len(rows), pa.int64()),
            "language": pa.array(["French"] * len(rows), pa.string()),
            "lang_group_id": pa.array([0] * len(rows), pa.int64()),
        }
    )
    features = {
        "id": {"dtype": "int32", "_type": "Value"},
        "audio": {"sampling_rate": 16000, "_type": "Audio"},
        "lang_id": {"names": list(FLEURS_CODES), "_type": "ClassLabel"},
    }
    pq.write_table(table.replace_schema_metadata(_hf_metadata(features)), file, row_group_size=2)
    return b


def hf_common_voice(root: Path) -> Built:
    """The hub's Common Voice Parquet layout (``train-00000-of-00001.parquet``):
    client_id, path, audio {bytes, path}, sentence, up_votes, down_votes, age,
    gender, accent, locale, segment; MP3 clips."""
    audio = write_audio(root / "src")
    file = root / "fr" / "train-00000-of-00001.parquet"
    file.parent.mkdir(parents=True)
    (root / "fr" / "clips").mkdir()
    (root / "fr" / "clips" / "cv_3.wav").write_bytes(audio["short.wav"].read_bytes())
    b = Built("hf-parquet", ["--format", "hf-parquet", "--input", str(file)])
    clips = [
        ("spk1", "common_voice_fr_1.mp3", audio["clip.mp3"].read_bytes(), "Bonjour", "fr"),
        ("spk2", "common_voice_fr_2.mp3", audio["short.wav"].read_bytes(), "Salut", "fr"),
        ("spk3", "clips/cv_3.wav", None, "Par chemin", "fr"),  # no bytes: read from the path
        ("spk4", "../../x.mp3", None, "Évasion", "fr"),
        ("spk5", "common_voice_de_5.mp3", audio["short.wav"].read_bytes(), "Hallo", "de"),
    ]
    b.accepted["fr/common_voice_fr_1"] = Utt("Bonjour", None)
    b.accepted["fr/common_voice_fr_2"] = Utt("Salut", 20800)
    b.accepted["fr/cv_3"] = Utt("Par chemin", 20800)
    b.accepted["de/common_voice_de_5"] = Utt("Hallo", 20800, lang="de")
    b.decode_rejects.append(Expected(Reason.MISSING_FILE, "dotdot_absent", id="fr/x"))
    n = len(clips)
    table = pa.table(
        {
            "client_id": [c[0] for c in clips],
            "path": [c[1] for c in clips],
            "audio": pa.array([{"bytes": c[2], "path": c[1]} for c in clips], AUDIO_TYPE),
            "sentence": [c[3] for c in clips],
            "up_votes": pa.array([2] * n, pa.int64()),
            "down_votes": pa.array([0] * n, pa.int64()),
            "age": [""] * n,
            "gender": [""] * n,
            "accent": [""] * n,
            "locale": [c[4] for c in clips],
            "segment": [""] * n,
        }
    )
    features = {"audio": {"sampling_rate": 48000, "_type": "Audio"}}
    pq.write_table(table.replace_schema_metadata(_hf_metadata(features)), file, row_group_size=3)
    return b
