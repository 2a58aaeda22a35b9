import os

import pytest

from datastore import storage


def test_atomic_write_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "out" / "shard.bin"
    with pytest.raises(RuntimeError), storage.open_write(str(target)) as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert os.listdir(target.parent) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = str(tmp_path / "a.txt")
    storage.write_text(target, "old contents that are longer")
    storage.write_text(target, "new")
    assert storage.read_text(target) == "new"
    assert storage.list_files(str(tmp_path)) == [target]


def test_glob_and_list_skip_temp_files(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("part-00001.parquet", "part-00000.parquet", ".tmp-abc-part-00002.parquet"):
        (tmp_path / "d" / name).write_bytes(b"x")
    hits = storage.glob(str(tmp_path / "d" / "*.parquet"))
    assert [storage.basename(h) for h in hits] == ["part-00000.parquet", "part-00001.parquet"]
    assert len(storage.list_files(str(tmp_path), ".parquet")) == 2


def test_file_scheme_is_local(tmp_path):
    uri = "file://" + str(tmp_path / "x.bin")
    storage.write_bytes(uri, b"abc")
    assert storage.exists(uri) and storage.read_bytes(uri) == b"abc" and storage.size(uri) == 3


@pytest.mark.parametrize("bad", ["", ".", "a/.."])
def test_resolve_under_refuses_what_names_no_file(tmp_path, bad):
    with pytest.raises(storage.PathEscapeError):
        storage.resolve_under(str(tmp_path), bad)
    with pytest.raises(storage.PathEscapeError):
        storage.resolve_under("gs://bkt/corpus", bad)


def test_resolve_under_resolves_dotdot_as_the_tools_do(tmp_path):
    """``..`` resolves against the root (NeMo: the manifest's folder); only
    ``confine`` refuses what lands elsewhere, and nothing climbs above a bucket."""
    (tmp_path / "c").mkdir()
    assert storage.resolve_under(str(tmp_path / "c"), "../x.wav") == str(tmp_path / "x.wav")
    assert storage.resolve_under(str(tmp_path / "c"), "a/../../x.wav") == str(tmp_path / "x.wav")
    assert storage.resolve_under("gs://bkt/corpus", "../x.wav") == "gs://bkt/x.wav"
    with pytest.raises(storage.PathEscapeError):
        storage.resolve_under("gs://bkt/corpus", "../../x.wav")
    with pytest.raises(storage.PathEscapeError):
        storage.resolve_under(str(tmp_path / "c"), "../x.wav", confine=str(tmp_path / "c"))


def test_resolve_under_takes_absolute_paths_and_uris_as_written(tmp_path):
    """The path policy: absolute paths and URIs are accepted as written; with a
    confinement root, anything resolving elsewhere is refused."""
    (tmp_path / "c").mkdir()
    assert storage.resolve_under(str(tmp_path / "c"), "/etc/hostname") == "/etc/hostname"
    assert storage.resolve_under(str(tmp_path), "gs://other/a.wav") == "gs://other/a.wav"
    assert storage.resolve_under(str(tmp_path), "file:///etc/hostname") == "/etc/hostname"
    for outside in ("/etc/hostname", "gs://other/a.wav", "../x.wav", "file:///etc/hostname"):
        with pytest.raises(storage.PathEscapeError):
            storage.resolve_under(str(tmp_path / "c"), outside, confine=str(tmp_path / "c"))
    inside = str(tmp_path / "c" / "a.wav")
    assert storage.resolve_under("/", inside, confine=str(tmp_path / "c")) == inside


def test_resolve_under_follows_symlinks_unless_confined(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    (root / "link.wav").symlink_to(outside)
    assert storage.resolve_under(str(root), "link.wav") == str(outside)  # git-annex, DVC
    with pytest.raises(storage.PathEscapeError, match="outside"):
        storage.resolve_under(str(root), "link.wav", confine=str(root))
    linked = tmp_path / "shared"
    linked.mkdir()
    (linked / "a.wav").write_bytes(b"a")
    (root / "clips").symlink_to(linked)  # a symlinked clips/ folder
    assert storage.resolve_under(str(root), "clips/a.wav") == str(linked / "a.wav")
    assert storage.resolve_under(str(root), "clips/a.wav", confine=str(tmp_path)) == str(
        linked / "a.wav"
    )


def test_resolve_under_on_object_stores():
    assert storage.resolve_under("gs://bkt/corpus", "clips/a.mp3") == "gs://bkt/corpus/clips/a.mp3"
    assert storage.resolve_under("gs://bkt/corpus", "a/./b/../c.wav") == "gs://bkt/corpus/a/c.wav"
    other = storage.resolve_under("gs://bkt/corpus", "clips/../../other/a.mp3")
    assert other == "gs://bkt/other/a.mp3"  # ".." applied lexically: no links in a bucket
    assert (
        storage.resolve_under("gs://bkt/corpus", "gs://bkt/corpus2/a.mp3")
        == "gs://bkt/corpus2/a.mp3"
    )
    with pytest.raises(storage.PathEscapeError):
        storage.resolve_under(
            "gs://bkt/corpus", "gs://bkt/corpus2/a.mp3", confine="gs://bkt/corpus"
        )
    with pytest.raises(storage.PathEscapeError, match="segments"):
        storage.resolve_under("gs://b/c", "gs://b/c/x/../../d/a.wav", confine="gs://b/c")
    with pytest.raises(storage.PathEscapeError):  # a local file under a gs:// confinement root
        storage.resolve_under("/data", "a.wav", confine="gs://b/c")


def test_resolve_under_accepts_inside_paths(tmp_path):
    assert storage.resolve_under(str(tmp_path), "a/./b/../c.wav") == str(tmp_path / "a/c.wav")


def test_join_and_scheme():
    assert storage.join("gs://b/x/", "y", "/z") == "gs://b/x/y/z"
    assert storage.scheme("gs://b") == "gs" and storage.scheme("/tmp/a") == ""
    assert storage.dirname("gs://b/x/y.txt") == "gs://b/x"


def test_resolve_under_returns_the_path_it_checked(tmp_path):
    """``sub/../x.wav`` with ``sub`` a link: the kernel opens ``<sub's target>/../x.wav``,
    so that is what is checked and returned, never the lexical ``x.wav``."""
    root = tmp_path / "root"
    (root / "deep" / "inner").mkdir(parents=True)
    (root / "sub").symlink_to(root / "deep" / "inner")
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    (root / "x.wav").symlink_to(outside)
    with pytest.raises(storage.PathEscapeError):
        storage.resolve_under(str(root), "x.wav", confine=str(root))
    assert storage.resolve_under(str(root), "sub/../x.wav", confine=str(root)) == str(
        root / "deep" / "x.wav"
    )
    assert storage.resolve_under(str(root), "sub/../x.wav") == str(root / "deep" / "x.wav")
    (root / "deep" / "y.wav").write_bytes(b"y")
    (root / "alias.wav").symlink_to(root / "deep" / "y.wav")  # a link inside: followed
    assert storage.resolve_under(str(root), "alias.wav", confine=str(root)) == str(
        root / "deep" / "y.wav"
    )


def test_resolve_under_refuses_a_symlink_loop(tmp_path):
    (tmp_path / "a.wav").symlink_to(tmp_path / "b.wav")
    (tmp_path / "b.wav").symlink_to(tmp_path / "a.wav")
    with pytest.raises(storage.PathEscapeError, match="cannot be resolved"):
        storage.resolve_under(str(tmp_path), "a.wav")
