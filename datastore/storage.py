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

    from datastore import storage
    with storage.open_write("gs://bucket/out/_index.json") as f:
        f.write(b"{}")
    storage.read_text("gs://bucket/out/_index.json")
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob as _glob
import os
import posixpath
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_LOCAL_SCHEMES = ("", "file")
TEMP_PREFIX = ".tmp-"


class PathEscapeError(ValueError):
    """A manifest path points outside the corpus root it must stay under."""


class NotAFileError(OSError):
    """A path that names a FIFO, device, socket or directory: never read as data."""


class FileTooLargeError(ValueError):
    """A file holding more bytes than the reader allows."""


class NpyIntegrityError(ValueError):
    """A ``.npy`` whose header does not describe the data that follows it."""


class GcsCredentialsError(RuntimeError):
    """``gs://`` was asked for and no way to authenticate exists."""


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


def _beam_fs(uri: str | None = None):
    """Beam's FileSystems; the first ``gs://`` use probes credentials (see
    :func:`check_gcs_credentials`)."""
    global _fs_configured
    if uri is not None and scheme(uri) == "gs":
        check_gcs_credentials()
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


def absolute_uri(uri: str) -> str:
    """A URI with a scheme (``gs://``, ``file://``...) as written; a local path made absolute.

    Relative local paths are resolved against the current directory; symlinks
    are not resolved here. The manifest readers already hand over the path
    that is opened (:func:`resolve_under`: symlinks followed, so
    a git-annex clip's row names its annex object), and this keeps it.
    """
    uri = str(uri)
    return uri if scheme(uri) else os.path.abspath(uri)


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
    return _beam_fs(uri).exists(uri)


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

    return _beam_fs(uri).open(uri, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as f:
        return f.read()


def read_text(uri: str, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


_CHUNK = 1 << 20
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _read_capped(read, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = read(min(_CHUNK, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def open_regular(uri: str, *, resolved: bool = False) -> BinaryIO:
    """Open one regular file for reading (seekable), refusing anything else.

    Why: a FIFO blocks its reader forever and a device (``/dev/zero``) never
    ends, while both report a size of 0. A local path is opened with
    ``O_NONBLOCK`` (opening a FIFO cannot wait for a writer) and its type is
    checked with ``fstat`` on the opened descriptor, so the file checked is the
    file read; a ``stat`` before opening spares devices the side effects of an
    open. Anything but a regular file raises :class:`NotAFileError`. Other
    schemes open through Beam (object stores hold only regular objects).

    ``resolved``: ``uri`` is a fully resolved path (:func:`resolve_under`, every
    symlink followed, the path the path policy checked): the file actually
    opened must be that one, so a component swapped for a symlink between the
    check and the read raises :class:`PathEscapeError` instead of being read.
    """
    if not is_local(uri):
        return open_read(uri)
    path = local_path(uri)
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotAFileError(f"{path} is {_kind(before.st_mode)}, not a regular file")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a device without its driver)
            raise NotAFileError(f"{path} is not a regular file ({exc.strerror})") from None
        raise
    f = os.fdopen(fd, "rb", buffering=0)
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise NotAFileError(f"{path} is {_kind(st.st_mode)}, not a regular file")
    if resolved:
        opened = _opened_path(fd)
        if opened is not None and opened != path:
            f.close()
            raise PathEscapeError(
                f"{path} changed after it was checked: the file opened is {opened}"
            )
    return f


def _opened_path(fd: int) -> str | None:
    """The real path of an open descriptor (Linux ``/proc``; None elsewhere)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def read_bounded(uri: str, max_bytes: int, *, resolved: bool = False) -> bytes:
    """The bytes of one regular file (:func:`open_regular`, ``resolved`` as
    there), refusing anything larger.

    At most ``max_bytes + 1`` bytes are read whatever the file claims to hold;
    more raises :class:`FileTooLargeError`.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    with open_regular(uri, resolved=resolved) as f:
        size = os.fstat(f.fileno()).st_size if is_local(uri) else 0
        if size > max_bytes:
            raise FileTooLargeError(f"{local_path(uri)}: {size} bytes > max {max_bytes}")
        data = read_capped(f, max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(f"{uri}: more than {max_bytes} bytes")
    return data


def read_capped(f: BinaryIO, limit: int) -> bytes:
    """At most ``limit`` bytes from an open stream, read in 1 MB chunks."""
    return _read_capped(f.read, limit)


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
    f = _beam_fs(uri).create(uri)
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
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_bytes(uri, buf.getvalue())


def read_npy(uri: str):
    """A plain ``.npy`` array; object arrays (pickles) raise ``ValueError``.

    The header is checked against the bytes that follow it before anything is
    allocated: a header claiming shape (4e9, 39) in a 1 kB file raises
    :class:`NpyIntegrityError` instead of asking for 581 GiB.
    """
    import io
    import math

    import numpy as np

    raw = read_bytes(uri)
    buf = io.BytesIO(raw)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(buf)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, _fortran, dtype = fmt.read_array_header_2_0(buf)
        else:  # 3.0 (utf-8 field names) has no public reader
            shape, _fortran, dtype = fmt._read_array_header(buf, version)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise NpyIntegrityError(f"{uri}: not a .npy file ({exc})") from None
    if dtype.hasobject:
        raise NpyIntegrityError(f"{uri}: an object array (a pickle), refused")
    expected = math.prod(shape) * dtype.itemsize
    held = len(raw) - buf.tell()
    if held != expected:
        raise NpyIntegrityError(
            f"{uri}: header claims {dtype} {tuple(shape)} ({expected} bytes) but the file "
            f"holds {held} bytes of data"
        )
    buf.seek(0)
    return np.load(buf, allow_pickle=False)


PICKLE_CONVERT_HINT = (
    'python -c "import torch, safetensors.torch as st; st.save_file({k: v.clone() for k, v '
    "in torch.load('pytorch_model.bin', weights_only=False).items()}, 'model.safetensors')\""
)


def refused_pickle_message(exc: BaseException) -> str | None:
    """One line for a pickled checkpoint that ``torch.load(weights_only=True)``
    refused (torch's own message ends with "Check the documentation of
    torch.load..."), saying what happened and how to convert it; else None."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc):
        return (
            "refused a pickled PyTorch checkpoint (e.g. pytorch_model.bin): loading it could run "
            "code, and speechtok loads weights only from safetensors; if you trust its source, "
            f"convert it once and remove the .bin: {PICKLE_CONVERT_HINT}"
        )
    return None


def glob(pattern: str) -> list[str]:
    """Sorted URIs matching a glob (``*``, ``?``, ``**``), hidden temp files excluded."""
    pattern = str(pattern)
    if is_local(pattern):
        hits = _glob.glob(local_path(pattern), recursive=True)
        hits = [h for h in hits if os.path.isfile(h)]
    else:
        result = _beam_fs(pattern).match([pattern])[0]
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
    return _beam_fs(uri).match([uri])[0].metadata_list[0].size_in_bytes


def delete(uri: str) -> None:
    if is_local(uri):
        path = local_path(uri)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        return
    fs = _beam_fs(uri)
    if fs.exists(uri):
        fs.delete([uri])


def rename(src: str, dst: str) -> None:
    if is_local(src) and is_local(dst):
        os.makedirs(os.path.dirname(local_path(dst)) or ".", exist_ok=True)
        os.replace(local_path(src), local_path(dst))
        return
    _beam_fs(src).rename([src], [dst])


def resolve_under(root: str, path: str, *, confine: str | None = None) -> str:
    """Where a manifest's audio path points, under the one path policy of every
    format; what it returns is exactly what the job opens.

    - A relative path resolves against ``root`` (the manifest's folder, or
      ``--audio-root``), ``..`` included, as NeMo and Kaldi tools resolve
      theirs: refusing ``..`` protected nothing while absolute paths are
      taken as written; ``confine`` is the one confinement switch.
    - An absolute path or a URI (``gs://...``, ``file://...``) is taken as
      written.
    - Symlinks are followed: a symlinked clips folder or symlinked clips
      (git-annex, DVC) are read where they point. A local path comes back
      fully resolved, every symlink and ``..`` in order as the kernel would
      (``sub/../x.wav`` through a linked ``sub`` is ``<sub's target>/../x.wav``),
      never a lexically normalised form that would check one file and open
      another.
    - ``confine``: an opt-in root; anything whose resolved form is not under
      it (an absolute path, a URI, a symlink leading out) is refused. The
      check is made on the returned path, the one opened.

    Refusals raise :class:`PathEscapeError`.
    """
    root, path = str(root), str(path)
    if not path:
        raise PathEscapeError("empty path")
    if "\x00" in path:
        raise PathEscapeError(f"NUL byte in path {path!r}")
    if not is_local(path):
        target = path  # a URI, as written
    elif os.path.isabs(local_path(path)):
        target = local_path(path)
    elif is_local(root):
        _check_names_a_file(path, root)
        target = os.path.join(local_path(root), path)  # ".." resolved below, as the kernel would
    else:
        target = _join_uri(root, path)
    if is_local(target):
        try:  # symlinks and ".." of whatever exists, in order, as the kernel resolves them
            target = _resolve_local(target)
        except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before 3.13)
            raise PathEscapeError(f"{path!r} cannot be resolved: {exc}") from None
    if confine is not None:
        _check_confined(path, target, confine)
    return target


def _resolve_local(target: str) -> str:
    """``Path(target).resolve()``, with the folder's resolution cached: a
    manifest names millions of files in a few folders, and resolving every
    component of every path cost a third of the read stage. Only a plain leaf
    (not a symlink, no ``.``/``..`` anywhere) takes the cached folder."""
    folder, leaf = os.path.split(target)
    if leaf and not any(seg in (".", "..") for seg in target.split(os.sep)):
        try:
            is_link = stat.S_ISLNK(os.lstat(target).st_mode)
        except FileNotFoundError:
            is_link = False  # resolved as its folder's resolution plus the name
        except OSError:
            is_link = True  # let the full resolution raise or decide
        if not is_link:  # (the cache is keyed by absolute folders: cwd may change)
            return os.path.join(_resolved_folder(os.path.abspath(folder or ".")), leaf)
    return str(Path(target).resolve())


@functools.lru_cache(maxsize=4096)
def _resolved_folder(folder: str) -> str:
    return str(Path(folder).resolve())


def _check_names_a_file(path: str, root: str) -> None:
    if posixpath.normpath(path) in (".", "/") or path.endswith("/"):
        raise PathEscapeError(f"{path!r} names a folder under {root!r}, not a file")


def _join_uri(root: str, path: str) -> str:
    """``root`` (``gs://bucket/a/b``) joined with a relative path, ``.``/``..``
    applied lexically (an object store has no links); above the bucket is refused."""
    _check_names_a_file(path, root)
    scheme_, rest = root.split("://", 1)
    bucket, _, prefix = rest.partition("/")
    parts = relative_parts(f"{prefix}/{path}", f"{scheme_}://{bucket}")
    return f"{scheme_}://{bucket}/" + "/".join(parts)


def relative_parts(path: str, root: str) -> list[str]:
    """The segments of a relative path, ``.``/``..`` applied; refuses climbing above the root."""
    parts: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if not parts:
                raise PathEscapeError(f"{path!r} climbs above the corpus root {root!r}")
            parts.pop()
        else:
            parts.append(seg)
    if not parts:
        raise PathEscapeError(f"{path!r} names the corpus root, not a file")
    return parts


def _check_confined(path: str, target: str, confine: str) -> None:
    outside = PathEscapeError(f"{path!r} resolves to {target!r}, outside {confine!r}")
    if is_local(confine):
        if not is_local(target):
            raise outside
        base = Path(local_path(confine)).resolve()
        real = Path(target)
        if real != base and base not in real.parents:
            raise outside
        return
    if is_local(target):
        raise outside
    if any(seg in (".", "..") for seg in target.split("://", 1)[1].split("/")):
        raise PathEscapeError(f"{path!r}: a URI with . or .. segments is refused when confined")
    if not target.startswith(confine.rstrip("/") + "/"):
        raise outside


# -- gs:// credentials ---------------------------------------------------------
_ADC_FILE = "application_default_credentials.json"
_METADATA_TIMEOUT_S = 2.0
_GCS_ENV = ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "HOME")
_gcs_ok: set[tuple] = set()  # credential environments the probe accepted
GCS_AUTH_HINT = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
    "to a service-account key file (STORAGE_EMULATOR_HOST for a local GCS emulator)"
)


def _metadata_server_answers() -> bool:
    """GCE/Dataflow workers get credentials from the metadata server: one 2 s ping."""
    import urllib.request

    host = (
        os.environ.get("GCE_METADATA_IP")
        or os.environ.get("GCE_METADATA_HOST")
        or "169.254.169.254"
    )
    request = urllib.request.Request(f"http://{host}/", headers={"Metadata-Flavor": "Google"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=_METADATA_TIMEOUT_S) as response:
            return response.headers.get("Metadata-Flavor") == "Google"
    except Exception:  # refused, unreachable, timed out, not HTTP: no metadata server
        return False


def _gcs_credentials_problem() -> str | None:
    """Why ``gs://`` cannot authenticate here, or ``None`` when it can.

    The sources ``google.auth.default`` (which Beam and google-cloud-storage
    use) tries, in its order, each checked without a network call except the
    last: the emulator, ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's
    application-default file, the GCE metadata server (2 s).
    """
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return None
    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        if os.path.isfile(explicit):
            return None
        return f"GOOGLE_APPLICATION_CREDENTIALS={explicit} is not a file"
    config_dir = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(
        os.path.expanduser("~"), ".config", "gcloud"
    )
    if os.path.isfile(os.path.join(config_dir, _ADC_FILE)):
        return None
    if _metadata_server_answers():
        return None
    return "no Google Cloud credentials found"


def check_gcs_credentials() -> None:
    """Raise :class:`GcsCredentialsError` (one line, seconds) when ``gs://`` cannot
    authenticate, instead of the ~2 minutes of retries Beam's client takes to
    fail. Probed on the first ``gs://`` access; a success is remembered for as
    long as the credential environment variables stay the same."""
    key = tuple(os.environ.get(name) for name in _GCS_ENV)
    if key in _gcs_ok:
        return
    problem = _gcs_credentials_problem()
    if problem:
        raise GcsCredentialsError(f"gs:// access: {problem}: {GCS_AUTH_HINT}")
    _gcs_ok.add(key)


def user_cache_dir() -> str:
    """Where converted pretrained assets are cached (``$SPEECHTOK_CACHE`` wins)."""
    explicit = os.environ.get("SPEECHTOK_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "speechtok")
