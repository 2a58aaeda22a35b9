"""The bad-input catalogue: a temp corpus of good, convertible and broken inputs.

Why: "every record leaves as a row or a reject with the right reason" is only
worth something if it holds for the inputs that break pipelines in real
corpora. This module writes one audio set (good clips, clips that must be
accepted after conversion, and every broken kind we know of) into the three
manifest layouts the speech jobs read (JSONL, FLEURS, CoVoST 2 + Common
Voice), plus WikiMatrix files for the bitext job, and records what each
record must become: accepted (with its text and approximate duration) or a
reject with an exact reason code.

A reject is matched by a *locator*: read-stage rejects by the manifest line
they came from (``source == "{manifest}:{line}"``), decode/dedup rejects by
utterance id, so the expectations do not depend on how a reader names a line
it could not parse.

Example::

    cat = build_speech_catalogue(tmp_path / "corpus")
    jsonl = cat.layouts["jsonl"]        # .manifest, .audio_root, .accepted, .rejected
    bitext = build_bitext_catalogue(tmp_path / "wm")
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from datastore.records import Reason

SR = 16000
FLEURS_CODE, FLEURS_SPLIT = "fr_fr", "test"
COVOST_SRC, COVOST_TGT = "fr", "en"
HUGE_LINE_BYTES = (1 << 20) + 4096  # just over the readers' default 1 MiB line cap
TEN_MINUTES = 600.0
FIFO = object()  # an AudioCase.make result: the file is a named pipe, not data


def tone(seconds: float, sr: int, freqs=(220.0, 330.0), amp: float = 0.2, seed: int = 0):
    """A harmonic tone with a little noise: distinct spectra per clip for MFCC + k-means."""
    t = np.arange(round(seconds * sr), dtype=np.float64) / sr
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    rng = np.random.default_rng(seed)
    wave = amp * wave + 0.01 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def encoded(wave: np.ndarray, sr: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


# -- the audio set -------------------------------------------------------------
@dataclass(frozen=True)
class AudioCase:
    """One audio file of the set. ``make`` returns its bytes (``None``: never
    written, the manifest points at a missing file). ``expected`` is ``None``
    for a file that must be accepted, else the reject reason. ``seconds``: the
    duration an accepted file must come out with."""

    stem: str
    ext: str
    make: Callable[[], bytes | object | None]
    expected: str | None
    seconds: float = 0.0
    text: str = ""

    @property
    def file_name(self) -> str:
        return f"{self.stem}{self.ext}"


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _with_bad_sample(value: float, subtype: str) -> bytes:
    wave = tone(1.0, SR, seed=7)
    wave[1234] = value
    return encoded(wave, SR, "WAV", subtype)


def _ten_minutes() -> bytes:
    # FLAC of a steady tone compresses to a few hundred kB, yet the header
    # declares 10 minutes: the job must refuse it (or window it) by length.
    t = np.arange(int(TEN_MINUTES * SR), dtype=np.float64) / SR
    return encoded((0.2 * np.sin(2 * np.pi * 250 * t)).astype(np.float32), SR, "FLAC", "PCM_16")


# MPEG-1 Layer III: kbps per header index; frame bytes = 144000 * kbps / rate + padding.
_MP3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MP3_RATES = (44100, 48000, 32000)


def mp3(seconds: float, sr: int = 44100, cbr: bool = False, seed: int = 12) -> bytes:
    """An MP3 as libsndfile writes it: VBR by default (frames of 64-256 kbps), with a
    Xing/Info header in its first frame; ``cbr``: 160 kbps constant."""
    buf = io.BytesIO()
    extra = {"bitrate_mode": "CONSTANT", "compression_level": 0.5} if cbr else {}
    wave = tone(seconds, sr, (300.0, 750.0), seed=seed)
    sf.write(buf, wave, sr, format="MP3", subtype="MPEG_LAYER_III", **extra)
    return buf.getvalue()


def mp3_frame_bytes(header: bytes) -> int:
    assert header[0] == 0xFF and header[1] & 0xFE == 0xFA, "not an MPEG-1 Layer III frame"
    kbps, rate = _MP3_KBPS[header[2] >> 4], _MP3_RATES[(header[2] >> 2) & 3]
    return 144000 * kbps // rate + ((header[2] >> 1) & 1)


def without_xing(data: bytes) -> bytes:
    """The MP3 minus its first frame, the Xing/Info header (the length decoders trust)."""
    first = data[: mp3_frame_bytes(data[:4])]
    assert b"Xing" in first or b"Info" in first
    return data[len(first) :]


def id3v2_tag(size: int) -> bytes:
    """An ID3v2.3 tag of ``size`` bytes of padding (a large cover image, as far as size goes)."""
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + bytes(size)


def audio_cases() -> list[AudioCase]:
    stereo = np.stack([tone(1.3, 48000, seed=2), tone(1.3, 48000, (300.0, 500.0), seed=3)], 1)
    cases = [
        # Good: plain 16 kHz mono WAV and FLAC, non-ASCII transcripts.
        AudioCase(
            "good_wav", ".wav", lambda: encoded(tone(1.0, SR), SR, "WAV", "PCM_16"), None, 1.0
        ),
        AudioCase(
            "good_flac",
            ".flac",
            lambda: encoded(tone(1.6, SR, (180.0, 720.0), seed=1), SR, "FLAC", "PCM_16"),
            None,
            1.6,
            "Ça va très bien — merci 你好",
        ),
        # Accepted after conversion to 16 kHz mono float32.
        AudioCase("stereo_48k", ".wav", lambda: encoded(stereo, 48000, "WAV", "PCM_16"), None, 1.3),
        AudioCase(
            "pcm_u8",
            ".wav",
            lambda: encoded(tone(1.2, 22050, (400.0,), seed=4), 22050, "WAV", "PCM_U8"),
            None,
            1.2,
        ),
        AudioCase(
            "opus",
            ".ogg",
            lambda: encoded(tone(1.5, 48000, (260.0, 610.0), seed=5), 48000, "OGG", "OPUS"),
            None,
            1.5,
        ),
        AudioCase(
            "mp3",
            ".mp3",
            lambda: encoded(
                tone(1.4, 44100, (350.0, 900.0), seed=6), 44100, "MP3", "MPEG_LAYER_III"
            ),
            None,
            1.4,
        ),
        # Broken files.
        AudioCase("zero_bytes", ".wav", lambda: b"", Reason.EMPTY_AUDIO),
        AudioCase(
            "truncated_wav",
            ".wav",
            lambda: _truncated(encoded(tone(1.0, SR), SR, "WAV", "PCM_16")),
            Reason.DECODE_ERROR,
        ),
        AudioCase(
            "truncated_flac",
            ".flac",
            lambda: _truncated(encoded(tone(2.0, SR, seed=8), SR, "FLAC", "PCM_16")),
            Reason.DECODE_ERROR,
        ),
        AudioCase(
            "truncated_mp3",
            ".mp3",
            lambda: _truncated(encoded(tone(3.0, 44100, seed=9), 44100, "MP3", "MPEG_LAYER_III")),
            Reason.DECODE_ERROR,
        ),
        AudioCase(
            "random_bytes",
            ".wav",
            lambda: np.random.default_rng(11).bytes(6000),
            Reason.DECODE_ERROR,
        ),
        AudioCase(
            "nan_float", ".wav", lambda: _with_bad_sample(np.nan, "FLOAT"), Reason.NON_FINITE
        ),
        AudioCase(
            "inf_double", ".wav", lambda: _with_bad_sample(np.inf, "DOUBLE"), Reason.NON_FINITE
        ),
        AudioCase("ten_minutes", ".flac", _ten_minutes, Reason.TOO_LONG),
        AudioCase(
            "silent",
            ".wav",
            lambda: encoded(np.zeros(SR, np.float32), SR, "WAV", "PCM_16"),
            Reason.SILENT,
        ),
        AudioCase(
            "too_short",
            ".wav",
            lambda: encoded(tone(0.04, SR), SR, "WAV", "PCM_16"),
            Reason.TOO_SHORT,
        ),
        AudioCase("missing", ".wav", lambda: None, Reason.MISSING_FILE),
        # A named pipe where a clip should be: opening it for reading waits for a
        # writer forever unless the reader refuses anything but a regular file.
        AudioCase("fifo", ".wav", lambda: FIFO, Reason.NOT_A_FILE),
        # MP3 without a Xing/Info header: its length is only an estimate from the
        # first frame's bitrate (VBR) or the file size (an ID3 tag counts as audio).
        AudioCase("mp3_vbr_no_xing", ".mp3", lambda: without_xing(mp3(7.6)), None, 7.6),
        AudioCase(
            "mp3_id3_no_xing",
            ".mp3",
            lambda: id3v2_tag(600_000) + without_xing(mp3(7.6, cbr=True)),
            None,
            7.6,
        ),
        AudioCase("mp3_long_no_xing", ".mp3", lambda: without_xing(mp3(34.0)), Reason.TOO_LONG),
    ]
    return [
        AudioCase(c.stem, c.ext, c.make, c.expected, c.seconds, c.text or f"transcript of {c.stem}")
        for c in cases
    ]


# -- manifest-level cases ------------------------------------------------------
# Written into every layout: the manifest line itself, not its audio, is the problem.
LINE_CASES = {
    "too_few_columns": Reason.MALFORMED_LINE,
    "too_many_columns": Reason.MALFORMED_LINE,
    "non_utf8": Reason.NON_UTF8,
    "empty_transcript": Reason.BAD_TEXT,
    "dotdot_escape": Reason.PATH_ESCAPE,
    "symlink_escape": Reason.PATH_ESCAPE,
    "huge_line": Reason.MALFORMED_LINE,
    "duplicate_id": Reason.DUPLICATE_ID,
}
SYMLINK_NAME = "link_out.wav"
DUPLICATED_STEM = "good_wav"  # the duplicate line repeats this id (another file for jsonl)


@dataclass(frozen=True)
class Expected:
    """A reject the job must write: matched by ``source`` (a manifest line) or by ``id``."""

    reason: str
    case: str
    source: str | None = None
    id: str | None = None

    def matches(self, reject: dict) -> bool:
        if self.source is not None:
            return reject["source"] == self.source
        return reject["id"] == self.id


@dataclass
class Layout:
    """One manifest layout of the catalogue, with what its job must output."""

    format: str
    manifest: str
    audio_root: str | None
    confine: str | None = None  # --confine-audio-to: the symlink out of it is then refused
    accepted: dict[str, AudioCase] = field(default_factory=dict)  # utterance id -> case
    rejected: list[Expected] = field(default_factory=list)

    def cli_args(self) -> list[str]:
        args = ["--format", self.format, "--input", self.manifest]
        args += ["--audio-root", self.audio_root] if self.audio_root else []
        return [*args, "--confine-audio-to", self.confine] if self.confine else args

    @property
    def n_records(self) -> int:
        return len(self.accepted) + len(self.rejected)


@dataclass
class SpeechCatalogue:
    root: Path
    cases: list[AudioCase]
    layouts: dict[str, Layout]

    @property
    def kinds_of_bad_input(self) -> set[str]:
        return {e.case for layout in self.layouts.values() for e in layout.rejected}


def _write_audio(folder: Path, cases: list[AudioCase], staged: dict[str, bytes | None]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        data = staged[case.file_name]
        if data is FIFO:
            os.mkfifo(folder / case.file_name)
        elif data is not None:
            (folder / case.file_name).write_bytes(data)


DOTDOT_LINK = "sub/../through_link.wav"  # relative to a layout's audio folder


def _dotdot_symlink(audio_dir: Path, outside: Path) -> None:
    """``sub`` links to ``deep/inner`` (inside the root) and ``through_link.wav`` to a
    file outside it. ``sub/../through_link.wav`` is then, for the kernel,
    ``deep/through_link.wav`` (absent): read lexically as ``through_link.wav``, it
    reaches the outside file. The path checked must be the path opened: a
    ``missing_file`` naming ``deep/through_link.wav``."""
    (audio_dir / "deep" / "inner").mkdir(parents=True)
    os.symlink(audio_dir / "deep" / "inner", audio_dir / "sub")
    os.symlink(outside, audio_dir / "through_link.wav")


def _outside_target(root: Path) -> Path:
    """A perfectly good file outside every corpus root: the layouts run confined
    (``--confine-audio-to`` their root), so a symlink to it must be refused. (By
    default symlinks are followed: ``tests/tokenizer/test_path_policy.py``.)"""
    target = root / "outside" / "secret.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encoded(tone(1.0, SR, (500.0,)), SR, "WAV", "PCM_16"))
    return target


def build_speech_catalogue(root: Path) -> SpeechCatalogue:
    """Write the audio set in the JSONL, FLEURS and CoVoST layouts under ``root``."""
    root = Path(root)
    cases = audio_cases()
    staged = {c.file_name: c.make() for c in cases}
    outside = _outside_target(root)
    layouts = {
        "jsonl": _jsonl(root / "jsonl", cases, staged, outside),
        "fleurs": _fleurs(root / "fleurs", cases, staged, outside),
        "covost": _covost(root, cases, staged, outside),
    }
    return SpeechCatalogue(root=root, cases=cases, layouts=layouts)


def _audio_expectation(layout: Layout, utt_id: str, case: AudioCase) -> None:
    if case.expected is None:
        layout.accepted[utt_id] = case
    else:
        layout.rejected.append(Expected(case.expected, case.stem, id=utt_id))


def _line_expectation(layout: Layout, lineno: int, name: str) -> None:
    layout.rejected.append(Expected(LINE_CASES[name], name, source=f"{layout.manifest}:{lineno}"))


# -- JSONL ---------------------------------------------------------------------
def _jsonl(folder: Path, cases, staged, outside: Path) -> Layout:
    clips = folder / "clips"
    _write_audio(clips, cases, staged)
    os.symlink(outside, clips / SYMLINK_NAME)
    (clips / "dup_other.wav").write_bytes(staged["good_wav.wav"])
    manifest = folder / "manifest.jsonl"
    layout = Layout("jsonl", str(manifest), None, confine=str(folder))
    lines: list[bytes] = []

    def obj(utt_id, audio, text, **kw):
        return {"id": utt_id, "audio": audio, "text": text, "lang": "fr", "split": "test", **kw}

    def add(line: bytes) -> int:
        lines.append(line)
        return len(lines)

    for case in cases:
        add(json.dumps(obj(case.stem, f"clips/{case.file_name}", case.text)).encode())
        _audio_expectation(layout, case.stem, case)
    good = obj("line", "clips/good_wav.wav", "fine")
    no_split = {k: v for k, v in good.items() if k != "split"}
    _line_expectation(
        layout, add(json.dumps({**no_split, "id": "few"}).encode()), "too_few_columns"
    )
    two_objects = json.dumps({**good, "id": "many"}) + " " + json.dumps(good)
    _line_expectation(layout, add(two_objects.encode()), "too_many_columns")
    latin1 = json.dumps({**good, "id": "latin"}, ensure_ascii=False).replace("fine", "café")
    _line_expectation(layout, add(latin1.encode("latin-1")), "non_utf8")
    add(json.dumps(obj("empty_text", "clips/good_wav.wav", "  ")).encode())
    layout.rejected.append(Expected(Reason.BAD_TEXT, "empty_transcript", id="empty_text"))
    add(json.dumps(obj("dotdot", "../outside/secret.wav", "escape")).encode())
    layout.rejected.append(Expected(Reason.PATH_ESCAPE, "dotdot_escape", id="dotdot"))
    add(json.dumps(obj("symlink", f"clips/{SYMLINK_NAME}", "escape")).encode())
    layout.rejected.append(Expected(Reason.PATH_ESCAPE, "symlink_escape", id="symlink"))
    _dotdot_symlink(clips, outside)
    add(json.dumps(obj("dotdot_link", f"clips/{DOTDOT_LINK}", "escape")).encode())
    layout.rejected.append(Expected(Reason.MISSING_FILE, "dotdot_symlink", id="dotdot_link"))
    huge = json.dumps(obj("huge", "clips/good_wav.wav", "x" * HUGE_LINE_BYTES)).encode()
    _line_expectation(layout, add(huge), "huge_line")
    # The same id and transcript on another (identical) file: either line may be kept.
    dup_text = next(c.text for c in cases if c.stem == DUPLICATED_STEM)
    add(json.dumps(obj(DUPLICATED_STEM, "clips/dup_other.wav", dup_text)).encode())
    layout.rejected.append(Expected(Reason.DUPLICATE_ID, "duplicate_id", id=DUPLICATED_STEM))
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    return layout


# -- FLEURS --------------------------------------------------------------------
def fleurs_row(sentence_id: str, file_name: str, text: str, n_samples: int = SR) -> str:
    norm = text.lower()
    return "\t".join([sentence_id, file_name, text, norm, "|".join(norm), str(n_samples), "FEMALE"])


def _fleurs(data_dir: Path, cases, staged, outside: Path) -> Layout:
    lang_dir = data_dir / FLEURS_CODE
    audio_dir = lang_dir / "audio" / FLEURS_SPLIT
    _write_audio(audio_dir, cases, staged)
    os.symlink(outside, audio_dir / SYMLINK_NAME)
    tsv = lang_dir / f"{FLEURS_SPLIT}.tsv"
    layout = Layout("fleurs", str(data_dir), None, confine=str(data_dir))
    source = str(tsv)  # read-stage rejects name the TSV, not the data dir
    lines: list[bytes] = []

    def add(line: str | bytes) -> int:
        lines.append(line.encode() if isinstance(line, str) else line)
        return len(lines)

    def line_case(lineno: int, name: str) -> None:
        layout.rejected.append(Expected(LINE_CASES[name], name, source=f"{source}:{lineno}"))

    for i, case in enumerate(cases):
        add(fleurs_row(str(100 + i), case.file_name, case.text))
        _audio_expectation(layout, f"{FLEURS_CODE}/{case.stem}", case)
    line_case(add("900\tgood_wav.wav\tonly three"), "too_few_columns")
    line_case(add(fleurs_row("901", "good_wav.wav", "many") + "\tx\ty"), "too_many_columns")
    line_case(add(fleurs_row("902", "good_wav.wav", "café").encode("latin-1")), "non_utf8")
    add(fleurs_row("903", "empty_text.wav", "   "))
    layout.rejected.append(
        Expected(Reason.BAD_TEXT, "empty_transcript", id=f"{FLEURS_CODE}/empty_text")
    )
    add(fleurs_row("904", "../../../../outside/secret.wav", "escape"))
    layout.rejected.append(
        Expected(Reason.PATH_ESCAPE, "dotdot_escape", id=f"{FLEURS_CODE}/secret")
    )
    add(fleurs_row("905", SYMLINK_NAME, "escape"))
    layout.rejected.append(
        Expected(Reason.PATH_ESCAPE, "symlink_escape", id=f"{FLEURS_CODE}/link_out")
    )
    _dotdot_symlink(audio_dir, outside)
    add(fleurs_row("907", DOTDOT_LINK, "escape"))
    layout.rejected.append(
        Expected(Reason.MISSING_FILE, "dotdot_symlink", id=f"{FLEURS_CODE}/through_link")
    )
    line_case(add(fleurs_row("906", "good_wav.wav", "x" * HUGE_LINE_BYTES)), "huge_line")
    # FLEURS ids come from file names: a row listed twice is a duplicate id.
    add(lines[[c.stem for c in cases].index(DUPLICATED_STEM)])
    layout.rejected.append(
        Expected(Reason.DUPLICATE_ID, "duplicate_id", id=f"{FLEURS_CODE}/{DUPLICATED_STEM}")
    )
    tsv.write_bytes(b"\n".join(lines) + b"\n")
    return layout


# -- CoVoST 2 + Common Voice ---------------------------------------------------
COVOST_HEADER = ["path", "sentence", "translation", "client_id", "split"]
CV_HEADER = ["client_id", "path", "sentence_id", "sentence"]


def _covost(root: Path, cases, staged, outside: Path) -> Layout:
    cv = root / "cv" / COVOST_SRC
    clips = cv / "clips"
    _write_audio(clips, cases, staged)
    os.symlink(outside, clips / SYMLINK_NAME)
    tsv = root / "covost" / f"covost_v2.{COVOST_SRC}_{COVOST_TGT}.tsv"
    tsv.parent.mkdir(parents=True)
    layout = Layout("covost", str(tsv), str(cv), confine=str(cv))
    validated = ["\t".join(CV_HEADER)]
    lines: list[bytes] = ["\t".join(COVOST_HEADER).encode()]

    def add(cols: list[str] | bytes, encoding: str = "utf-8") -> int:
        lines.append(cols if isinstance(cols, bytes) else "\t".join(cols).encode(encoding))
        return len(lines)

    def listed(path: str, text: str = "") -> None:
        validated.append("\t".join([f"spk-{path}", path, f"s-{path}", text]))

    for case in cases:
        add([case.file_name, case.text, f"EN: {case.stem}", f"spk-{case.stem}", "test"])
        listed(case.file_name, case.text)
        _audio_expectation(layout, f"{COVOST_SRC}/{case.stem}", case)
    _line_expectation(layout, add(["good_wav.wav", "few", "test"]), "too_few_columns")
    n = add(["good_wav.wav", "many", "EN", "spk", "test", "extra", "more"])
    _line_expectation(layout, n, "too_many_columns")
    n = add(["latin.wav", "café", "EN", "spk", "test"], encoding="latin-1")
    _line_expectation(layout, n, "non_utf8")
    listed("empty.wav")
    (clips / "empty.wav").write_bytes(staged["good_wav.wav"])
    add(["empty.wav", "", "EN", "spk", "test"])  # no transcript in either file
    layout.rejected.append(Expected(Reason.BAD_TEXT, "empty_transcript", id=f"{COVOST_SRC}/empty"))
    add(["../../../outside/secret.wav", "escape", "EN", "spk", "test"])
    layout.rejected.append(Expected(Reason.PATH_ESCAPE, "dotdot_escape", id=f"{COVOST_SRC}/secret"))
    listed(SYMLINK_NAME, "escape")
    add([SYMLINK_NAME, "escape", "EN", "spk", "test"])
    layout.rejected.append(
        Expected(Reason.PATH_ESCAPE, "symlink_escape", id=f"{COVOST_SRC}/link_out")
    )
    _dotdot_symlink(clips, outside)
    listed(DOTDOT_LINK, "escape")
    add([DOTDOT_LINK, "escape", "EN", "spk", "test"])
    layout.rejected.append(
        Expected(Reason.MISSING_FILE, "dotdot_symlink", id=f"{COVOST_SRC}/through_link")
    )
    n = add(["good_wav.wav", "x" * HUGE_LINE_BYTES, "EN", "spk", "test"])
    _line_expectation(layout, n, "huge_line")
    add(lines[1 + [c.stem for c in cases].index(DUPLICATED_STEM)])  # a row listed twice
    layout.rejected.append(
        Expected(Reason.DUPLICATE_ID, "duplicate_id", id=f"{COVOST_SRC}/{DUPLICATED_STEM}")
    )
    # In CoVoST but not in Common Voice's validated.tsv: nothing to join with.
    n = add(["unlisted.wav", "not validated", "EN", "spk", "test"])
    layout.rejected.append(Expected(Reason.MISSING_FILE, "not_in_validated", source=f"{tsv}:{n}"))
    (cv / "validated.tsv").write_text("\n".join(validated) + "\n", encoding="utf-8")
    tsv.write_bytes(b"\n".join(lines) + b"\n")
    return layout


# -- WikiMatrix ----------------------------------------------------------------
@dataclass
class BitextCatalogue:
    glob: str
    accepted: set[tuple[str, str, str]]  # (src_lang, tgt_lang, src_text)
    rejected: list[Expected]

    @property
    def n_records(self) -> int:
        return len(self.accepted) + len(self.rejected)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def build_bitext_catalogue(folder: Path) -> BitextCatalogue:
    """WikiMatrix files: good pairs and every broken line kind, plus a corrupt gzip."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "WikiMatrix.en-fr.tsv.gz"
    good = [
        ("1.20", "The house is red.", "La maison est rouge."),
        ("1.15", "Everyone has the right to life.", "Tout individu a droit à la vie."),
        ("1.10", "I like green tea.", "J'aime le thé vert."),
    ]
    lines: list[bytes] = [("\t".join(g)).encode() for g in good]
    rejected: list[Expected] = []

    def add(line: bytes, reason: str, case: str) -> None:
        lines.append(line)
        rejected.append(Expected(reason, case, source=f"{path}:{len(lines)}"))

    add(b"1.09\tOne\ttwo\tthree tabs", Reason.MALFORMED_LINE, "extra_tabs")
    add(b"1.09\tonly two fields", Reason.MALFORMED_LINE, "too_few_columns")
    add(b"high\tNot a score.\tPas un score.", Reason.MALFORMED_LINE, "bad_score")
    add(b"nan\tNaN score.\tScore NaN.", Reason.MALFORMED_LINE, "nan_score")
    add("1.08\tCoffee.\tCaf\xe9.".encode("latin-1"), Reason.NON_UTF8, "non_utf8")
    add(b"1.08\t   \tVide.", Reason.BAD_TEXT, "empty_side")
    add(b"1.07\t" + b"y" * 70_000 + b"\tlong", Reason.MALFORMED_LINE, "huge_line")
    add(b"1.03\tBelow the threshold.\tSous le seuil.", Reason.LOW_SCORE, "low_score")
    # An exact repeat of a good pair (lower score): the first one stays.
    lines.append(b"1.05\tI like green tea.\tJ'aime le th\xc3\xa9 vert.")
    rejected.append(
        Expected(Reason.DUPLICATE_PAIR, "duplicate_pair", source=f"{path}:{len(lines)}")
    )
    path.write_bytes(_gzip(b"\n".join(lines) + b"\n"))
    # A gzip header followed by garbage, and a plain-text file named .gz.
    corrupt = folder / "WikiMatrix.de-en.tsv.gz"
    body = _gzip(b"1.2\tGuten Tag.\tGood day.\n" * 20)
    corrupt.write_bytes(body[:10] + np.random.default_rng(3).bytes(len(body) - 10))
    plain = folder / "WikiMatrix.de-fr.tsv.gz"
    plain.write_bytes(b"1.2\tGuten Tag.\tBonjour.\n")
    for bad in (corrupt, plain):
        rejected.append(Expected(Reason.BAD_GZIP, f"bad_gzip:{bad.name}", source=str(bad)))
    accepted = {("en", "fr", g[1]) for g in good}
    return BitextCatalogue(glob=str(folder / "*.tsv.gz"), accepted=accepted, rejected=rejected)


# -- Text and selection cases ---------------------------------------------------
# Every text format may start with a UTF-8 byte-order mark; text may be invisible
# (zero-width / format / space characters only) or not writable as UTF-8 (a JSON
# "\ud800" escape decodes to a lone surrogate); rows of other languages and splits
# must be left out by --langs / --splits (not read, not counted). Zero-width
# joiners between letters are legitimate (Persian, Hindi, emoji sequences).
BOM = "\ufeff"
TEXT_LANG, TEXT_SPLIT = "fr", "test"  # what the text catalogue's jobs select
ZWJ_TEXTS = {  # accepted: visible letters around the joiners
    "persian_zwnj": "می\u200cخواهم بروم",
    "hindi_zwj": "क्\u200dष और श्री",
    "emoji_zwj": "👩\u200d💻 au travail",
}
INVISIBLE_TEXTS = {  # bad_text: nothing visible
    "zero_width_space": "\u200b",
    "joiners_only": "\u200c\u200d",
    "word_joiner": "\u2060",
    "bom_only": "\ufeff",
    "zero_width_and_spaces": "\u200b \u3000\u00a0\u200b",
    "soft_hyphen": "\u00ad",
    "hangul_filler": "\u3164",
}
# JSONL string fields that take a lone surrogate (every other layout decodes
# strict UTF-8 lines, where a surrogate cannot occur).
SURROGATE_FIELDS = (
    "text", "id", "speaker", "translation", "sentence_id", "tgt_lang", "source_lang", "corpus",
    "audio",
)  # fmt: skip
SURROGATE = "bon\ud800jour"


@dataclass
class TextLayout:
    """One layout of the text catalogue: accepted ids -> (text, sentence_id,
    speaker), the read-stage rejects by line, and what the selection leaves out."""

    format: str
    manifest: str
    audio_root: str | None
    accepted: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    rejected: list[Expected] = field(default_factory=list)
    left_out: int = 0  # records of other languages/splits: neither accepted nor rejected

    def cli_args(self) -> list[str]:
        args = ["--format", self.format, "--input", self.manifest]
        return [*args, "--audio-root", self.audio_root] if self.audio_root else args

    @property
    def n_records(self) -> int:
        return len(self.accepted) + len(self.rejected)


def _clip(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        encoded(tone(0.6, SR, (200.0 + 40 * seed, 500.0), seed=seed), SR, "WAV", "PCM_16")
    )


def build_text_catalogue(root: Path) -> dict[str, TextLayout]:
    """The text cases in the JSONL, FLEURS and CoVoST layouts, each file opening with a BOM."""
    root = Path(root)
    return {
        "jsonl": _text_jsonl(root / "jsonl"),
        "fleurs": _text_fleurs(root / "fleurs"),
        "covost": _text_covost(root / "covost"),
    }


def _text_jsonl(folder: Path) -> TextLayout:
    manifest = folder / "manifest.jsonl"
    layout = TextLayout("jsonl", str(manifest), None)
    lines: list[str] = []

    def add(obj: dict) -> int:
        lines.append(json.dumps(obj))  # ensure_ascii: a surrogate is written as "\ud800"
        return len(lines)

    def obj(utt_id, text, lang=TEXT_LANG, split=TEXT_SPLIT, **kw):
        return {"id": utt_id, "audio": f"clips/{utt_id}.wav", "text": text, "lang": lang,
                "split": split, **kw}  # fmt: skip

    def good(utt_id: str, text: str, seed: int) -> None:
        _clip(folder / "clips" / f"{utt_id}.wav", seed)
        add(obj(utt_id, text, speaker=f"spk-{utt_id}", sentence_id=f"s-{utt_id}"))
        layout.accepted[utt_id] = (text, f"s-{utt_id}", f"spk-{utt_id}")

    good("bom_first", "Première ligne", 0)  # line 1 carries the BOM
    for i, (name, text) in enumerate(ZWJ_TEXTS.items()):
        good(name, text, i + 1)
    for name, text in INVISIBLE_TEXTS.items():
        n = add(obj(f"invisible_{name}", text))
        layout.rejected.append(Expected(Reason.BAD_TEXT, name, source=f"{manifest}:{n}"))
    for name in SURROGATE_FIELDS:
        record = obj(f"surrogate_{name}", "texte correct")
        record[name] = SURROGATE
        n = add(record)
        case = f"surrogate_{name}"
        layout.rejected.append(Expected(Reason.BAD_TEXT, case, source=f"{manifest}:{n}"))
    # Other languages and splits, some of them bad: none may show up anywhere.
    left_out = [
        obj("de_good", "Guten Tag", lang="de"),
        obj("de_invisible", "\u200b", lang="de"),
        obj("train_good", "Bonjour", split="train"),
        obj("dev_surrogate", SURROGATE, split="dev"),
        obj("en_fr_source", "Hello", lang="en", source_lang="en_us"),
    ]
    for record in left_out:
        add(record)
    layout.left_out = len(left_out)
    manifest.write_text(BOM + "\n".join(lines) + "\n", encoding="utf-8")
    return layout


def _text_fleurs(data_dir: Path) -> TextLayout:
    layout = TextLayout("fleurs", str(data_dir), None)
    code = FLEURS_CODE
    tsv = data_dir / code / f"{TEXT_SPLIT}.tsv"
    rows: list[str] = []

    def good(stem: str, text: str, seed: int) -> None:
        _clip(data_dir / code / "audio" / TEXT_SPLIT / f"{stem}.wav", seed)
        sentence_id = str(2001 + len(rows))
        rows.append(fleurs_row(sentence_id, f"{stem}.wav", text))
        layout.accepted[f"{code}/{stem}"] = (text, sentence_id, None)

    good("bom_first", "Première ligne", 0)  # its sentence id must not keep the BOM
    for i, (name, text) in enumerate(ZWJ_TEXTS.items()):
        good(name, text, i + 1)
    for name, text in INVISIBLE_TEXTS.items():
        rows.append(fleurs_row(str(3001 + len(rows)), f"invisible_{name}.wav", text))
        layout.rejected.append(Expected(Reason.BAD_TEXT, name, source=f"{tsv}:{len(rows)}"))
    tsv.write_text(BOM + "\n".join(rows) + "\n", encoding="utf-8")
    # Another split of the same language and another language: not selected.
    train = data_dir / code / "train.tsv"
    train.write_text(BOM + fleurs_row("1", "train_a.wav", "Bonjour") + "\n", encoding="utf-8")
    other = data_dir / "de_de" / f"{TEXT_SPLIT}.tsv"
    other.parent.mkdir(parents=True)
    other.write_text(fleurs_row("1", "de_a.wav", "\u200b") + "\n", encoding="utf-8")
    layout.left_out = 2
    return layout


def _text_covost(root: Path) -> TextLayout:
    cv = root / "cv" / COVOST_SRC
    tsv = root / f"covost_v2.{COVOST_SRC}_{COVOST_TGT}.tsv"
    layout = TextLayout("covost", str(tsv), str(cv))
    # "path" first in both files: a BOM left on either header breaks the join.
    validated = ["\t".join(["path", "client_id", "sentence_id", "sentence"])]
    rows = ["\t".join(["path", "translation", "split"])]

    def row(name: str, text: str, split: str = TEXT_SPLIT) -> int:
        validated.append("\t".join([f"{name}.wav", f"spk-{name}", f"s-{name}", text]))
        rows.append("\t".join([f"{name}.wav", f"EN {name}", split]))
        return len(rows)

    for i, (name, text) in enumerate({"bom_first": "Première ligne", **ZWJ_TEXTS}.items()):
        _clip(cv / "clips" / f"{name}.wav", i)
        row(name, text)
        layout.accepted[f"{COVOST_SRC}/{name}"] = (text, f"s-{name}", f"spk-{name}")
    for name, text in INVISIBLE_TEXTS.items():
        n = row(f"invisible_{name}", text)
        layout.rejected.append(Expected(Reason.BAD_TEXT, name, source=f"{tsv}:{n}"))
    row("train_a", "Bonjour", split="train")
    row("dev_invisible", "\u200b", split="dev")
    layout.left_out = 2
    cv.mkdir(parents=True, exist_ok=True)
    (cv / "validated.tsv").write_text(BOM + "\n".join(validated) + "\n", encoding="utf-8")
    tsv.write_text(BOM + "\n".join(rows) + "\n", encoding="utf-8")
    return layout


# Bitext: scores Python's float() takes but that are no margin scores, invisible
# sides, legitimate joiners, and a BOM opening each file (gzip and plain TSV).
BAD_SCORES = ("inf", "-inf", "1e400", "nan", "NaN", "1_1", "１.２", "infinity", "0x1p0")


def build_bitext_text_catalogue(folder: Path) -> BitextCatalogue:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gz = folder / "WikiMatrix.en-fr.tsv.gz"
    lines = [
        "1.20\tThe house is red.\tLa maison est rouge.",  # after the BOM: must be accepted
        "1.10\tI want to go.\tمی\u200cخواهم بروم.",
        "1.09\tA woman at work.\t👩\u200d💻 au travail.",
    ]
    accepted = {("en", "fr", line.split("\t")[1]) for line in lines}
    rejected: list[Expected] = []

    def add(line: str, reason: str, case: str) -> None:
        lines.append(line)
        rejected.append(Expected(reason, case, source=f"{gz}:{len(lines)}"))

    for i, score in enumerate(BAD_SCORES):
        add(f"{score}\tScore number {i}.\tScore numéro {i}.", Reason.MALFORMED_LINE, score)
    for name, text in INVISIBLE_TEXTS.items():
        add(f"1.08\t{text}\tInvisible {name}.", Reason.BAD_TEXT, f"invisible_{name}")
    gz.write_bytes(_gzip((BOM + "\n".join(lines) + "\n").encode()))
    plain = folder / "WikiMatrix.de-en.tsv"
    plain.write_text(BOM + "1.30\tGuten Tag.\tGood day.\n", encoding="utf-8")
    accepted.add(("de", "en", "Guten Tag."))
    return BitextCatalogue(glob=str(folder / "WikiMatrix.*"), accepted=accepted, rejected=rejected)
