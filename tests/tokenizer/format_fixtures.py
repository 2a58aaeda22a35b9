"""Small corpora in each manifest format the tests write themselves, with what
each record must become.

Every builder writes the same audio set (whole files and segments of a long
WAV, a 48 kHz stereo FLAC and an MP3) under its own root, in the format's own
layout as its tools write it (NeMo manifests, lhotse's JSONL schema, the
hub's Parquet layouts built with pyarrow, Kaldi data dirs, FLEURS as
published with ``.tar.gz`` archives), plus malformed lines. A :class:`Built`
lists the CLI arguments, the utterances that must be accepted (with their
exact sample count at 16 kHz when it is exact: segments are) and the rejects,
read-stage ones by manifest line and decode-stage ones by id.

Example::

    built = nemo(tmp_path / "nemo")
    built.args          # ["--format", "nemo", "--input", ..., "--lang", "fr"]
"""

from __future__ import annotations

import gzip
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datastore.records import Reason
from tests.reliability.catalogue import Expected, encoded, mp3, tone

SR = 16000
LONG_S = 7.5  # long.wav: the recording segments are cut from


@dataclass(frozen=True)
class Utt:
    """An utterance that must be accepted: its transcript, the samples it must
    decode to at 16 kHz (``None``: a whole MP3, whose codec padding varies),
    where it starts in its recording (``None``: a whole file) and its language."""

    text: str
    n_samples: int | None
    offset_s: float | None = None
    lang: str = "fr"


@dataclass
class Built:
    format: str
    args: list[str]
    accepted: dict[str, Utt] = field(default_factory=dict)
    read_rejects: list[Expected] = field(default_factory=list)
    decode_rejects: list[Expected] = field(default_factory=list)

    @property
    def rejects(self) -> list[Expected]:
        return [*self.read_rejects, *self.decode_rejects]

    @property
    def n_records(self) -> int:
        return len(self.accepted) + len(self.rejects)


def write_audio(folder: Path) -> dict[str, Path]:
    """The audio set: ``long.wav`` (7.5 s, 16 kHz), ``stereo.flac`` (3 s, 48 kHz,
    a different tone per channel), ``short.wav`` (1.3 s), ``clip.mp3`` (4 s, 44.1 kHz)."""
    folder.mkdir(parents=True, exist_ok=True)
    stereo = np.stack([tone(3.0, 48000, (300.0,), seed=1), tone(3.0, 48000, (700.0,), seed=2)], 1)
    files = {
        "long.wav": encoded(tone(LONG_S, SR, (220.0, 330.0)), SR, "WAV", "PCM_16"),
        "stereo.flac": encoded(stereo, 48000, "FLAC", "PCM_16"),
        "short.wav": encoded(tone(1.3, SR, (400.0,), seed=3), SR, "WAV", "PCM_16"),
        "clip.mp3": mp3(4.0),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def _lines(path: Path, objects: list, gz: bool = False) -> None:
    text = "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects) + "\n"
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if gz else text.encode())


# -- NeMo ------------------------------------------------------------------------
def nemo(root: Path) -> Built:
    write_audio(root / "audio")
    manifest = root / "train_manifest.json"
    b = Built("nemo", ["--format", "nemo", "--input", str(manifest), "--lang", "fr"])
    lines: list = []

    def add(obj, reason=None, case="", utt_id=None, accept=None):
        lines.append(obj)
        if reason:
            b.read_rejects.append(Expected(reason, case, source=f"{manifest}:{len(lines)}"))
        if accept:
            b.accepted[utt_id] = accept

    add(
        {"audio_filepath": "audio/short.wav", "duration": 1.3, "text": "un fichier entier"},
        utt_id="audio/short",
        accept=Utt("un fichier entier", 20800),
    )
    add(
        {"audio_filepath": "audio/long.wav", "offset": 2.0, "duration": 1.0, "text": "deux"},
        utt_id="audio/long@2.000+1.000",
        accept=Utt("deux", 16000, 2.0),
    )
    add(
        {
            "audio_filepath": "audio/long.wav",
            "offset": 0.5,
            "duration": 1.25,
            "text": "trois",
            "lang": "de",
            "id": "utt-3",
        },
        utt_id="utt-3",
        accept=Utt("trois", 20000, 0.5, "de"),
    )
    add(
        {
            "audio_filepath": str(root / "audio" / "clip.mp3"),
            "offset": 1.0,
            "duration": 2.0,
            "text": "absolu",
        },
        utt_id="audio/clip@1.000+2.000",  # absolute, under the manifest's folder: relative id
        accept=Utt("absolu", 32000, 1.0),
    )
    add(
        {"audio_filepath": "audio/stereo.flac", "text": "stéréo"},
        utt_id="audio/stereo",
        accept=Utt("stéréo", 48000),
    )
    add("{not json", Reason.MALFORMED_LINE, "invalid_json")
    add(["a", "list"], Reason.MALFORMED_LINE, "not_an_object")
    add({"text": "no path"}, Reason.MALFORMED_LINE, "no_audio_filepath")
    add(
        {"audio_filepath": "audio/short.wav", "offset": "2", "text": "x"},
        Reason.MALFORMED_LINE,
        "string_offset",
    )
    add(
        {"audio_filepath": "audio/long.wav", "offset": 1.0, "duration": -1, "text": "x"},
        Reason.BAD_SEGMENT,
        "negative_duration",
    )
    add(
        {"audio_filepath": "audio/short.wav", "text": "   ", "id": "blank"},
        Reason.BAD_TEXT,
        "empty_text",
    )
    # NeMo resolves a relative path against the manifest's folder, ".." included.
    (root.parent / "nemo_up").mkdir(exist_ok=True)
    (root.parent / "nemo_up" / "up.wav").write_bytes((root / "audio" / "short.wav").read_bytes())
    add(
        {"audio_filepath": "../nemo_up/up.wav", "text": "au-dessus"},
        utt_id="../nemo_up/up",
        accept=Utt("au-dessus", 20800),
    )
    lines.append(
        {"audio_filepath": "audio/long.wav", "offset": 7.0, "duration": 2.0, "text": "après la fin"}
    )
    b.decode_rejects.append(Expected(Reason.BAD_SEGMENT, "past_end", id="audio/long@7.000+2.000"))
    lines.append({"audio_filepath": "audio/absent.wav", "text": "absent"})
    b.decode_rejects.append(Expected(Reason.MISSING_FILE, "missing", id="audio/absent"))
    _lines(manifest, lines)
    return b


# -- lhotse ----------------------------------------------------------------------
def _recording(rec_id: str, path: str, seconds: float, sr: int = SR, channels=(0,), **extra):
    sources = [{"type": "file", "channels": list(channels), "source": path}]
    return {
        "id": rec_id,
        "sources": sources,
        "sampling_rate": sr,
        "num_samples": round(seconds * sr),
        "duration": seconds,
        "channel_ids": list(channels),
        **extra,
    }


def _sup(sup_id, rec_id, start, duration, text, channel=0, **extra):
    return {
        "id": sup_id,
        "recording_id": rec_id,
        "start": start,
        "duration": duration,
        "channel": channel,
        "text": text,
        **extra,
    }


def lhotse_cuts(root: Path) -> Built:
    """A CutSet (``cuts.jsonl.gz``) as lhotse writes it: MonoCuts with the
    recording inline and supervisions relative to the cut's start."""
    write_audio(root / "audio")
    manifest = root / "cuts_train.jsonl.gz"
    b = Built("lhotse", ["--format", "lhotse", "--input", str(manifest)])
    long = _recording("long", "audio/long.wav", LONG_S)
    stereo = _recording("stereo", "audio/stereo.flac", 3.0, 48000, (0, 1))
    lines: list = []

    def cut(cut_id, recording, start, duration, sups, channel=0, **extra):
        lines.append(
            {
                "id": cut_id,
                "start": start,
                "duration": duration,
                "channel": channel,
                "supervisions": sups,
                "recording": recording,
                "type": "MonoCut",
                **extra,
            }
        )
        return f"{manifest}:{len(lines)}"

    # Two supervisions in one cut that starts 1 s into the recording.
    cut(
        "c1",
        long,
        1.0,
        4.0,
        [
            _sup("s1", "long", 1.0, 1.0, "deux", language="French", speaker="spk1"),
            _sup("s2", "long", 2.5, 1.25, "trois", language="de"),
        ],
    )
    b.accepted["s1"] = Utt("deux", 16000, 2.0)
    b.accepted["s2"] = Utt("trois", 20000, 3.5, "de")
    cut(
        "c2",
        stereo,
        0.0,
        3.0,
        [_sup("s3", "stereo", 1.0, 1.5, "canal un", channel=1, language="fr")],
        channel=1,
    )
    b.accepted["s3"] = Utt("canal un", 24000, 1.0)
    whole = _recording("short", str(root / "audio" / "short.wav"), 1.3)  # an absolute path
    cut("c3", whole, 0.0, 1.3, [_sup("s4", "short", 0.0, 1.3, "entier", language="fr")])
    b.accepted["s4"] = Utt("entier", 20800, 0.0)
    source = cut("c4", long, 0.0, 2.0, [])
    b.read_rejects.append(Expected(Reason.BAD_TEXT, "no_supervision", source=source))
    piped = {
        **long,
        "id": "piped",
        "sources": [{"type": "command", "channels": [0], "source": "cat audio/long.wav"}],
    }
    cut("c5", piped, 0.0, 2.0, [_sup("s5", "piped", 0.0, 1.0, "commande", language="fr")])
    b.read_rejects.append(Expected(Reason.SHELL_COMMAND, "command", id="s5"))
    lines.append({"id": "m1", "type": "MixedCut", "tracks": []})
    b.read_rejects.append(
        Expected(Reason.MALFORMED_LINE, "mixed_cut", source=f"{manifest}:{len(lines)}")
    )
    escape = _recording("esc", "../outside.wav", 1.0)
    cut("c6", escape, 0.0, 1.0, [_sup("s6", "esc", 0.0, 1.0, "évasion", language="fr")])
    b.decode_rejects.append(Expected(Reason.MISSING_FILE, "dotdot_absent", id="s6"))
    cut("c7", long, 6.0, 1.5, [_sup("s7", "long", 1.0, 1.0, "au-delà", language="fr")])
    b.read_rejects.append(Expected(Reason.BAD_SEGMENT, "past_recording", id="s7"))
    lines.append("{truncated")
    b.read_rejects.append(
        Expected(Reason.MALFORMED_LINE, "invalid_json", source=f"{manifest}:{len(lines)}")
    )
    cut("c8", long, 0.0, 2.0, [_sup("s8", "long", 0.0, 1.0, "sans langue")])  # no language
    b.read_rejects.append(Expected(Reason.MALFORMED_LINE, "no_language", id="s8"))
    _lines(manifest, lines, gz=True)
    return b


def lhotse_pair(root: Path) -> Built:
    """A RecordingSet + SupervisionSet pair (``x_recordings_train.jsonl.gz`` and
    ``x_supervisions_train.jsonl.gz``), supervisions relative to the recording."""
    write_audio(root / "audio")
    recs = root / "corpus_recordings_train.jsonl.gz"
    sups = root / "corpus_supervisions_train.jsonl.gz"
    b = Built("lhotse", ["--format", "lhotse", "--input", str(sups), "--lang", "fr"])
    _lines(
        recs,
        [
            _recording("long", "audio/long.wav", LONG_S),
            _recording("short", "audio/short.wav", 1.3),
            "{bad recording line",
        ],
        gz=True,
    )
    lines = [
        _sup("p1", "long", 2.0, 1.0, "deux"),
        _sup("p2", "short", 0.0, 1.3, "court", speaker="spk2"),
        _sup("p3", "nowhere", 0.0, 1.0, "perdu"),
        _sup("p4", "long", 0.5, 0.0, "vide"),
    ]
    b.accepted["p1"] = Utt("deux", 16000, 2.0)
    b.accepted["p2"] = Utt("court", 20800, 0.0)
    b.read_rejects.append(Expected(Reason.MISSING_FILE, "unknown_recording", id="p3"))
    b.read_rejects.append(Expected(Reason.BAD_SEGMENT, "zero_duration", id="p4"))
    _lines(sups, lines, gz=True)
    return b


# -- Kaldi -----------------------------------------------------------------------
def kaldi(root: Path) -> Built:
    write_audio(root / "audio")
    data = root / "data" / "train"
    data.mkdir(parents=True)
    b = Built(
        "kaldi",
        ["--format", "kaldi", "--input", str(data), "--lang", "fr", "--audio-root", str(root)],
    )
    (data / "wav.scp").write_text(
        "long audio/long.wav\n"
        f"short {root / 'audio' / 'short.wav'}\n"
        "piped sox audio/long.wav -t wav - |\n"
        "escape ../outside.wav\n"
        "broken\n"
    )
    (data / "segments").write_text(
        "u1 long 2.0 3.0\nu2 long 0.5 1.75\nu3 short 0 -1\nu4 piped 0 1\n"
        "u5 escape 0 1\nu6 long 3 2\nu7 broken 0 1\nu9 long x y\nu10 long 7.0 9.0\n"
        "u11 long 0 1\n"
    )
    (data / "utt2spk").write_text("u1 spk1\nu2 spk2\n")
    text = [
        "u1 deux",
        "u2 trois",
        "u3 entier",
        "u4 commande",
        "u5 évasion",
        "u6 à l'envers",
        "u7 cassé",
        "u8 sans segment",
        "u9 illisible",
        "u10 après la fin",
        "u11",
    ]
    (data / "text").write_text("\n".join(text) + "\n")
    src = f"{data / 'text'}"
    b.accepted.update(
        {
            "u1": Utt("deux", 16000, 2.0),
            "u2": Utt("trois", 20000, 0.5),
            "u3": Utt("entier", 20800, 0.0),
        }
    )
    for n, reason, case in [
        (4, Reason.SHELL_COMMAND, "command"),
        (6, Reason.BAD_SEGMENT, "end_before_start"),
        (7, Reason.MALFORMED_LINE, "bad_wav_scp_line"),
        (8, Reason.MALFORMED_LINE, "no_segment"),
        (9, Reason.MALFORMED_LINE, "bad_times"),
    ]:
        b.read_rejects.append(Expected(reason, case, source=f"{src}:{n}"))
    b.decode_rejects.append(Expected(Reason.BAD_SEGMENT, "past_end", id="u10"))
    b.decode_rejects.append(Expected(Reason.MISSING_FILE, "dotdot_absent", id="u5"))
    b.read_rejects.append(Expected(Reason.BAD_TEXT, "empty_text", source=f"{src}:11"))
    return b


# -- FLEURS as published ------------------------------------------------------------
def fleurs_archives(root: Path) -> Built:
    """``{lang}/{split}.tsv`` beside ``{lang}/audio/{split}.tar.gz`` (members
    ``{split}/NAME.wav``), the extracted folder absent."""
    audio = write_audio(root / "src")
    lang = root / "fleurs" / "fr_fr"
    (lang / "audio").mkdir(parents=True)
    b = Built("fleurs", ["--format", "fleurs", "--input", str(root / "fleurs")])
    members = {
        "1001.wav": audio["short.wav"],
        "1002.wav": audio["long.wav"],
        "1003.wav": audio["stereo.flac"],
    }
    with tarfile.open(lang / "audio" / "test.tar.gz", "w:gz") as tar:
        for name, path in members.items():
            tar.add(path, arcname=f"test/{name}")
        info = tarfile.TarInfo("test/subdir")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    rows = [
        ("7", "1001.wav", "Premier"),
        ("7", "1002.wav", "Deuxième voix"),
        ("8", "1003.wav", "Stéréo"),
        ("9", "1004.wav", "Absent de l'archive"),
        ("10", "../../secret.wav", "Évasion"),
        ("11", "subdir", "Un dossier"),
    ]
    b.accepted["fr_fr/1001"] = Utt("Premier", 20800)
    b.accepted["fr_fr/1002"] = Utt("Deuxième voix", round(LONG_S * SR))
    b.accepted["fr_fr/1003"] = Utt("Stéréo", 48000)
    b.decode_rejects.append(Expected(Reason.MISSING_FILE, "not_in_archive", id="fr_fr/1004"))
    b.read_rejects.append(Expected(Reason.PATH_ESCAPE, "dotdot", id="fr_fr/secret"))
    b.decode_rejects.append(Expected(Reason.NOT_A_FILE, "a_folder", id="fr_fr/subdir"))
    tsv = "\n".join(
        "\t".join([sid, name, text, text.lower(), "|".join(text.lower()), "16000", "FEMALE"])
        for sid, name, text in rows
    )
    (lang / "test.tsv").write_text(tsv + "\n", encoding="utf-8")
    return b


from tests.tokenizer.format_fixtures_parquet import hf_common_voice, hf_fleurs  # noqa: E402

BUILDERS = {
    "nemo": nemo,
    "lhotse-cuts": lhotse_cuts,
    "lhotse-pair": lhotse_pair,
    "kaldi": kaldi,
    "hf-fleurs": hf_fleurs,
    "hf-common-voice": hf_common_voice,
    "fleurs-archives": fleurs_archives,
}
