"""``speechtok tokenize`` on every manifest format, run as the README shows it.

For each format the README's own command line (section "Manifest formats")
runs in a subprocess with its paths pointed at a corpus the test writes in
that format (``tests/tokenizer/format_fixtures.py``) and the mfcc encoder:
exit 0, every good utterance a row whose ``n_frames`` is
``ceil(segment samples / 320)`` and whose ``offset_s`` / ``duration_s``
describe the segment, every bad line one reject with its reason, counts
reconciled.
"""

from __future__ import annotations

import math
import re
import shlex

import pyarrow.parquet as pq
import pytest

from datastore import schema
from tests.reliability.helpers import (
    REPO,
    assert_index_reconciles,
    assert_no_traceback,
    assert_rejects_match,
    read_rows,
    speechtok,
)
from tests.tokenizer import format_fixtures as ff

# The fixture that plays each README example; the README command of its format.
FIXTURE_FORMAT = {
    "nemo": "nemo",
    "lhotse-cuts": "lhotse",
    "lhotse-pair": "lhotse",
    "kaldi": "kaldi",
    "hf-fleurs": "hf-parquet",
    "hf-common-voice": "hf-parquet",
    "fleurs-archives": "fleurs",
}
PATH_FLAGS = {"--input", "--audio-root", "--lang", "--codebook", "--out", "--encoder"}


FORMATS_DOC = REPO / "docs" / "formats.md"


def readme_command(fmt: str) -> list[str]:
    """The user guide's ``speechtok tokenize --format FMT`` line: in
    docs/formats.md, or the README's tour (``fleurs``, ``covost``)."""
    text = (REPO / "README.md").read_text() + FORMATS_DOC.read_text()
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        argv = shlex.split(line) if line.startswith("speechtok tokenize ") else []
        if argv and argv[argv.index("--format") + 1] == fmt:
            return argv[2:]  # after "speechtok tokenize"
    raise AssertionError(f"README has no tokenize command for --format {fmt}")


def command(fixture_args: list[str], fmt: str, codebook, out) -> list[str]:
    """The README command with this corpus's paths: flags naming paths (and the
    encoder, here mfcc) take the fixture's values; every other flag stays."""
    argv = readme_command(fmt)
    kept: list[str] = []
    i = 0
    while i < len(argv):
        flag = argv[i]
        takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        if flag not in PATH_FLAGS:
            kept += argv[i : i + 1 + takes_value]
        i += 1 + takes_value
    fixture = dict(zip(fixture_args[::2], fixture_args[1::2], strict=True))
    assert fixture.pop("--format") == fmt
    extra = [x for k, v in fixture.items() for x in (k, v)]
    return [*kept, *extra, "--encoder", "mfcc", "--codebook", str(codebook), "--out", str(out)]


def test_readme_shows_every_format():
    for fmt in ("fleurs", "covost", "nemo", "lhotse", "hf-parquet", "kaldi"):
        assert readme_command(fmt)
    section = FORMATS_DOC.read_text().split("## Manifest formats")[1].split("\n## ")[0]
    for fmt in ("fleurs", "jsonl", "nemo", "lhotse", "hf-parquet", "kaldi"):
        assert re.search(rf"\*\*{fmt}\*\*", section), fmt


@pytest.mark.parametrize("name", sorted(FIXTURE_FORMAT))
def test_tokenize_each_format_as_the_readme_shows(tmp_path, mfcc_codebook, name):
    built = ff.BUILDERS[name](tmp_path / "corpus")
    out = tmp_path / "out"
    proc = speechtok("tokenize", *command(built.args, FIXTURE_FORMAT[name], mfcc_codebook, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_traceback(proc)
    assert_index_reconciles(out, built.n_records, len(built.accepted), built.rejects)
    assert_rejects_match(read_rows(out, "rejects"), built.rejects)
    rows = {r["id"]: r for r in read_rows(out, "tokens")}
    assert set(rows) == set(built.accepted)
    for utt_id, utt in built.accepted.items():
        row = rows[utt_id]
        assert (row["text"], row["lang"], row["offset_s"]) == (utt.text, utt.lang, utt.offset_s)
        samples = round(row["duration_s"] * 16000)
        if utt.n_samples is not None:
            assert samples == utt.n_samples, utt_id
        assert row["n_frames"] == math.ceil(samples / 320), utt_id
        runs = row["durations"]  # the fleurs tour line deduplicates
        assert (sum(runs) if runs is not None else len(row["tokens"])) == row["n_frames"]
        assert row["audio"].startswith(str(tmp_path)), row["audio"]  # absolute
    one = next((out / "tokens").rglob("*.parquet"))
    meta = pq.ParquetFile(one).schema_arrow.metadata
    assert meta[schema.META_VERSION] == schema.SCHEMA_VERSION.encode() == b"2"
