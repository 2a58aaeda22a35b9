"""The one I/O module: every path is a URI (a local path, ``file://``, ``gs://``...).

Job code never calls ``open()`` on a path it was given: it calls these
functions, so the same job runs on a laptop and on Dataflow. Local paths use
the OS directly (fast, and atomic renames are real renames); every other
scheme goes through Beam's ``FileSystems``, imported lazily so that the
``kmeans`` and ``trainer`` libraries stay light when they only touch local
files.

Writes are atomic: ``open_write`` writes to a hidden temporary name beside the
target and renames it into place on success, so a reader (or a re-run after a
crash) never sees a half-written file. Object stores (GCS) publish an object
only when its upload completes, which gives the same guarantee.

Example::

    from tokenizer import io
    with io.open_write("gs://bucket/out/_index.json") as f:
        f.write(b"{}")
    io.read_text("gs://bucket/out/_index.json")
"""

from __future__ import annotations

import contextlib
import glob as _glob
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_LOCAL_SCHEMES = ("", "file")
TEMP_PREFIX = ".tmp-"


class PathEscapeError(ValueError):
    """A manifest path points outside the corpus root it must stay under."""


def scheme(uri: str) -> str:
    """``"gs"`` for ``gs://b/k``, ``""`` for a plain local path."""
    head, sep, _ = str(uri).partition("://")
    return head.lower() if sep else ""


def is_local(uri: str) -> bool:
    return scheme(uri) in _LOCAL_SCHEMES


def local_path(uri: str) -> str:
    """The OS path of a local URI (strips ``file://``)."""
    uri = str(uri)
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if not is_local(uri):
        raise ValueError(f"not a local path: {uri}")
    return uri


_fs_configured = False


def _beam_fs():
    global _fs_configured
    from apache_beam.io.filesystems import FileSystems

    if not _fs_configured:
        _fs_configured = True
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            _use_anonymous_gcs()
    return FileSystems


def _use_anonymous_gcs() -> None:
    """With a local GCS emulator (``STORAGE_EMULATOR_HOST``) there are no
    credentials to find, and Beam's lookup retries for ~20-30 s before it
    connects anonymously (``--no_auth`` does not reach its GCS client). Beam
    caches that lookup once per process: record "anonymous" up front. Only
    ever done when an emulator is configured."""
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:  # Beam without the gcp extra: nothing to skip
        return
    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials_init = True
        auth._Credentials._credentials = None


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_local(base):
        return os.path.join(base, *parts)
    out = base.rstrip("/")
    for part in parts:
        out = out + "/" + str(part).strip("/")
    return out


def dirname(uri: str) -> str:
    uri = str(uri)
    if is_local(uri):
        return os.path.dirname(local_path(uri))
    return uri.rstrip("/").rsplit("/", 1)[0]


def basename(uri: str) -> str:
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


def exists(uri: str) -> bool:
    if is_local(uri):
        return os.path.exists(local_path(uri))
    return _beam_fs().exists(uri)


def makedirs(uri: str) -> None:
    """Create a folder; a no-op on object stores, where folders are prefixes."""
    if is_local(uri):
        os.makedirs(local_path(uri), exist_ok=True)


def open_read(uri: str) -> BinaryIO:
    """Raw bytes of a file. Never decompresses (Beam's default would for
    ``.gz`` on remote filesystems): callers decode formats themselves, the
    same way for every scheme."""
    if is_local(uri):
        return open(local_path(uri), "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return _beam_fs().open(uri, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as f:
        return f.read()


def read_text(uri: str, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


@contextlib.contextmanager
def open_write(uri: str) -> Iterator[BinaryIO]:
    """Atomically write ``uri``: visible only complete, never half-written."""
    uri = str(uri)
    if is_local(uri):
        path = local_path(uri)
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f"{TEMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(path)}")
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
        return
    # Object stores commit an object when the upload finishes: atomic already.
    f = _beam_fs().create(uri)
    try:
        yield f
    except BaseException:
        with contextlib.suppress(Exception):
            f.close()
            _beam_fs().delete([uri])
        raise
    f.close()


def write_bytes(uri: str, data: bytes) -> None:
    with open_write(uri) as f:
        f.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def write_npy(uri: str, array) -> None:
    """One array as a plain ``.npy`` (never a pickle), written atomically."""
    import io as _stdio

    import numpy as np

    buf = _stdio.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_bytes(uri, buf.getvalue())


def read_npy(uri: str):
    """A plain ``.npy`` array; object arrays (pickles) raise ``ValueError``."""
    import io as _stdio

    import numpy as np

    return np.load(_stdio.BytesIO(read_bytes(uri)), allow_pickle=False)


def glob(pattern: str) -> list[str]:
    """Sorted URIs matching a glob (``*``, ``?``, ``**``), hidden temp files excluded."""
    pattern = str(pattern)
    if is_local(pattern):
        hits = _glob.glob(local_path(pattern), recursive=True)
        hits = [h for h in hits if os.path.isfile(h)]
    else:
        result = _beam_fs().match([pattern])[0]
        hits = [m.path for m in result.metadata_list]
    return sorted(h for h in hits if not basename(h).startswith(TEMP_PREFIX))


def list_files(prefix: str, suffix: str = "") -> list[str]:
    """Every file under a folder (recursively), sorted; temp files excluded."""
    prefix = str(prefix)
    if is_local(prefix):
        root = local_path(prefix)
        out = []
        for d, _, files in os.walk(root):
            out += [os.path.join(d, f) for f in files if f.endswith(suffix)]
        return sorted(p for p in out if not basename(p).startswith(TEMP_PREFIX))
    return [u for u in glob(join(prefix, "**")) if u.endswith(suffix)]


def size(uri: str) -> int:
    if is_local(uri):
        return os.path.getsize(local_path(uri))
    return _beam_fs().match([uri])[0].metadata_list[0].size_in_bytes


def delete(uri: str) -> None:
    if is_local(uri):
        path = local_path(uri)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        return
    fs = _beam_fs()
    if fs.exists(uri):
        fs.delete([uri])


def rename(src: str, dst: str) -> None:
    if is_local(src) and is_local(dst):
        os.makedirs(os.path.dirname(local_path(dst)) or ".", exist_ok=True)
        os.replace(local_path(src), local_path(dst))
        return
    _beam_fs().rename([src], [dst])


def resolve_under(root: str, relative: str) -> str:
    """Resolve a manifest path against its corpus root, refusing escapes.

    ``..`` segments, absolute paths outside the root and (for local files)
    symlinks that lead outside it all raise :class:`PathEscapeError`.
    """
    root, relative = str(root), str(relative)
    if not relative:
        raise PathEscapeError("empty path")
    if "\x00" in relative:
        raise PathEscapeError(f"NUL byte in path {relative!r}")
    if is_local(root):
        base = Path(local_path(root)).resolve()
        cand = Path(relative) if os.path.isabs(relative) else Path(base, relative)
        # Resolve symlinks of whatever exists, so a link out of the root is caught.
        real = cand.resolve()
        if real != base and base not in real.parents:
            raise PathEscapeError(f"{relative!r} resolves outside the corpus root {str(base)!r}")
        return os.path.normpath(os.path.join(local_path(root), relative))
    if scheme(relative):
        target = relative
    else:
        parts: list[str] = []
        for seg in relative.split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                if not parts:
                    raise PathEscapeError(f"{relative!r} climbs above the corpus root {root!r}")
                parts.pop()
            else:
                parts.append(seg)
        target = join(root, *parts)
    if not target.startswith(root.rstrip("/") + "/"):
        raise PathEscapeError(f"{relative!r} is outside the corpus root {root!r}")
    return target


def user_cache_dir() -> str:
    """Where converted pretrained assets are cached (``$SPEECHTOK_CACHE`` wins)."""
    explicit = os.environ.get("SPEECHTOK_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "speechtok")
