"""Writers for the three real on-disk layouts mini-FLEURS imitates.

- FLEURS: ``fleurs/{fleurs_code}/{split}.tsv`` (no header; sentence id, audio
  file name, raw transcription, normalised transcription, character-spaced
  transcription, number of samples, gender) beside
  ``fleurs/{fleurs_code}/audio/{split}/*.wav`` (16 kHz, 16-bit PCM). A
  sentence recorded V times repeats its id on V rows, as in FLEURS.
- Common Voice + CoVoST 2: ``cv/{covost_code}/clips/*.mp3`` (22.05 kHz MP3:
  like Common Voice's 32/48 kHz clips they must be resampled to 16 kHz, and
  MP3 encoding at espeak's own rate costs half as much as at 48 kHz) with
  ``cv/{covost_code}/validated.tsv`` (Common Voice's columns; its
  ``sentence_id`` holds the shared UDHR id where Common Voice has a hash of
  the sentence), and
  ``covost/covost_v2.{covost_code}_en.tsv`` (``path, sentence, translation,
  client_id, split``), ``translation`` being the English paragraph of the
  same sentence id.
- WikiMatrix: ``wikimatrix/WikiMatrix.{l1}-{l2}.tsv.gz`` (codes in alphabetical
  order, ``score\\tl1 text\\tl2 text``, descending score, no header).

TSV fields never hold tabs, newlines or backslashes (CoVoST's readers use
``QUOTE_NONE`` with a backslash escape); they are turned into spaces. Every
writer is deterministic: the same rows give the same bytes (gzip without a
timestamp or file name).
"""

from __future__ import annotations

import gzip
import hashlib
import io as _bytes_io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from datastore import storage

SPLITS = ("train", "dev", "test")
CV_COLUMNS = (
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
    "down_votes", "age", "gender", "accents", "variant", "locale", "segment",
)  # fmt: skip
COVOST_COLUMNS = ("path", "sentence", "translation", "client_id", "split")

# WikiMatrix margin scores: aligned pairs get a nominal score in
# [ALIGNED_MIN, ALIGNED_MAX), above the 1.04 threshold its authors recommend;
# the deliberately bad lines (a tenth of the aligned ones each: good pairs
# scored low, and mismatched pairs) get [NOISE_MIN, NOISE_MAX), below it.
ALIGNED_MIN, ALIGNED_MAX = 1.06, 1.30
NOISE_MIN, NOISE_MAX = 0.90, 1.03
NOISE_FRACTION = 0.1

_UNSAFE = str.maketrans({"\t": " ", "\n": " ", "\r": " ", "\\": " "})


@dataclass(frozen=True, kw_only=True)
class Clip:
    """One written recording, as the layouts list it."""

    sentence_id: int
    split: str
    file_name: str
    text: str
    n_samples: int
    gender: str  # "male" | "female"
    speaker: str


def digest_int(*keys: object) -> int:
    """A deterministic 64-bit number from the keys (no RNG state, any platform)."""
    digest = hashlib.blake2b(":".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def unit(*keys: object) -> float:
    """A deterministic number in [0, 1) from the keys."""
    return digest_int(*keys) / 2**64


def tsv_field(value: object) -> str:
    return str(value).translate(_UNSAFE)


def tsv_bytes(rows: Iterable[Sequence[object]], header: Sequence[str] | None = None) -> bytes:
    lines = ["\t".join(header)] if header else []
    lines += ["\t".join(tsv_field(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def normalize_transcript(text: str) -> str:
    """FLEURS' normalised transcription: lower case, punctuation and symbols removed."""
    text = unicodedata.normalize("NFC", text.lower()).replace("\u2019", "'")
    kept = "".join(c if unicodedata.category(c)[0] in "LMN" or c == "'" else " " for c in text)
    return " ".join(kept.split())


def char_transcript(normalized: str) -> str:
    """FLEURS' character-spaced column: characters split by spaces, ``|`` between words."""
    return " ".join("|".join(normalized.split())) + " |"


def client_id(lang: str, speaker: str) -> str:
    """A Common Voice style client id (128 hex digits) for one synthetic speaker."""
    return hashlib.sha512(f"mini-fleurs:{lang}:{speaker}".encode()).hexdigest()


def write_fleurs(out: str, fleurs_code: str, clips: Sequence[Clip]) -> None:
    folder = storage.join(out, "fleurs", fleurs_code)
    for split in SPLITS:
        rows = []
        for clip in sorted(clips, key=lambda c: (c.sentence_id, c.file_name)):
            if clip.split != split:
                continue
            normalized = normalize_transcript(clip.text)
            rows.append(
                (
                    clip.sentence_id,
                    clip.file_name,
                    clip.text,
                    normalized,
                    char_transcript(normalized),
                    clip.n_samples,
                    clip.gender.upper(),
                )
            )
        storage.write_bytes(storage.join(folder, f"{split}.tsv"), tsv_bytes(rows))


def write_common_voice(
    out: str, covost_code: str, clips: Sequence[Clip], english: dict[int, str]
) -> None:
    """``cv/{code}/validated.tsv`` and ``covost/covost_v2.{code}_en.tsv`` for written clips."""
    ordered = sorted(clips, key=lambda c: (c.sentence_id, c.file_name))
    validated = [
        (
            client_id(covost_code, c.speaker),
            c.file_name,
            c.sentence_id,  # Common Voice hashes the sentence; ours is the shared UDHR id
            c.text,
            "",
            2,
            0,
            "",
            f"{c.gender}_{'masculine' if c.gender == 'male' else 'feminine'}",
            "",
            "",
            covost_code,
            "",
        )
        for c in ordered
    ]
    storage.write_bytes(
        storage.join(out, "cv", covost_code, "validated.tsv"), tsv_bytes(validated, CV_COLUMNS)
    )
    covost = [
        (c.file_name, c.text, english[c.sentence_id], client_id(covost_code, c.speaker), c.split)
        for c in ordered
    ]
    storage.write_bytes(
        storage.join(out, "covost", f"covost_v2.{covost_code}_en.tsv"),
        tsv_bytes(covost, COVOST_COLUMNS),
    )


def wikimatrix_lines(
    lang: str, texts: dict[int, str], english: dict[int, str], ids: Sequence[int], seed: int
) -> tuple[list[tuple[float, str, str]], dict[str, int]]:
    """``(score, lang text, English text)`` lines for X-en and their counts by kind.

    Aligned pairs score high; ``NOISE_FRACTION`` of them are scored low
    instead, and as many mismatched pairs (paragraph i with the English of
    paragraph j) are added with low scores, so filters have work to do.
    """
    ids = sorted(i for i in ids if i in texts and i in english)
    n_noise = max(1, round(NOISE_FRACTION * len(ids))) if len(ids) >= 2 else 0
    ranked = sorted(ids, key=lambda i: unit(seed, "wikimatrix-low", lang, i))
    low = set(ranked[:n_noise])
    lines = []
    for i in ids:
        u = unit(seed, "wikimatrix-score", lang, i)
        if i in low:
            lines.append((NOISE_MIN + u * (NOISE_MAX - NOISE_MIN), texts[i], english[i]))
        else:
            lines.append((ALIGNED_MIN + u * (ALIGNED_MAX - ALIGNED_MIN), texts[i], english[i]))
    shuffled = sorted(ids, key=lambda i: unit(seed, "wikimatrix-mismatch", lang, i))
    for k in range(n_noise):
        i, j = shuffled[k], shuffled[(k + 1) % len(shuffled)]
        u = unit(seed, "wikimatrix-mismatch-score", lang, i)
        lines.append((NOISE_MIN + u * (NOISE_MAX - NOISE_MIN), texts[i], english[j]))
    counts = {"aligned": len(ids) - n_noise, "low_score": n_noise, "mismatched": n_noise}
    return lines, counts


def write_wikimatrix(out: str, lang: str, lines: Sequence[tuple[float, str, str]]) -> str:
    """Write X-en lines as ``WikiMatrix.{l1}-{l2}.tsv.gz``; returns the file name."""
    l1, l2 = sorted((lang, "en"))
    rows = [
        (f"{score:.6f}", x, en) if l1 == lang else (f"{score:.6f}", en, x)
        for score, x, en in sorted(lines, key=lambda line: (-round(line[0], 6), line[1], line[2]))
    ]
    buf = _bytes_io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(tsv_bytes(rows))
    name = f"WikiMatrix.{l1}-{l2}.tsv.gz"
    storage.write_bytes(storage.join(out, "wikimatrix", name), buf.getvalue())
    return name
