"""Where a run's files live: one fsspec layer for local folders and object storage.

Every stage reads and writes its files through these functions, so that an output
folder, a feature store or an input may be a local path or any fsspec URL (``s3://``,
``gs://``, ``az://``, ``memory://``...) alike. Credentials and endpoints come from where
each backend looks (for S3: the AWS environment variables, ``AWS_ENDPOINT_URL``
included, or ``~/.aws``), or from the job file's ``storage_options`` (see :func:`configure`).

Readers never see a file half written:

* on a local disk a file is written beside its target under a hidden temporary name and
  renamed over it;
* on object storage an object is uploaded whole, in one request, and becomes visible
  only once complete: there is no rename, and no temporary object to leave behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import fsspec
import fsspec.config
from fsspec.spec import AbstractFileSystem

from ..errors import InputError

#: fsspec protocols that are this machine's own disk
LOCAL_PROTOCOLS = ("file", "local")
#: a write that fails with one of these is the place's fault (permissions, a full disk,
#: a read-only mount), not asm-dask's: one line naming the path, not a bug
PLACE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG,
                          errno.EIO, errno.ENAMETOOLONG})
#: free bytes below which a folder counts as full, when a writer does not say why it failed
FULL_BELOW_BYTES = 1 << 20


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` names remote storage (an fsspec URL other than ``file://``)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def local_path(path: str | os.PathLike) -> str | None:
    """``path`` on this machine's disk, or ``None`` for remote storage."""
    text = os.fspath(path)
    return None if is_url(text) else text.removeprefix("file://")


def normalized(path: str | os.PathLike) -> str:
    """``path`` in one spelling, to compare: a local path resolved (links, ``..``), a URL
    without a trailing slash."""
    local = local_path(path)
    return os.path.realpath(local) if local is not None else os.fspath(path).rstrip("/")


def join(base: str | os.PathLike, *names: str) -> str:
    """``base`` and ``names`` joined with the separator of ``base``'s storage."""
    text = os.fspath(base)
    return posixpath.join(text, *names) if is_url(text) else os.path.join(text, *names)


def filesystem(path: str | os.PathLike) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem holding ``path``, and ``path`` as that filesystem names it."""
    return fsspec.core.url_to_fs(os.fspath(path))


#: bytes a read of a remote raster fetches beyond what GDAL asks for: a COG's header in
#: one request, then each block it needs and little more (fsspec's default block, 5 to
#: 50 MB, would fetch a whole Sentinel-2 band file to read one cell)
RASTER_READ_AHEAD = 1 << 16


class RasterReads:
    """An fsspec filesystem as a rasterio opener (``rasterio.open(path, opener=...)``)
    that fetches the byte ranges GDAL reads, plus :data:`RASTER_READ_AHEAD`: a windowed
    read of a Cloud-Optimized GeoTIFF costs its header and its blocks, not the file."""

    def __init__(self, fs: AbstractFileSystem):
        self.fs = fs

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        return self.fs.open(path, mode, block_size=RASTER_READ_AHEAD, cache_type="readahead")

    def isfile(self, path: str) -> bool:
        return self.fs.isfile(path)

    def isdir(self, path: str) -> bool:
        return self.fs.isdir(path)

    def ls(self, path: str) -> list[str]:
        return self.fs.ls(path, detail=False)

    def mtime(self, path: str) -> Any:
        return self.fs.modified(path)

    def size(self, path: str) -> int:
        return self.fs.size(path)

    def rm(self, path: str) -> None:
        raise PermissionError(f"{path}: imagery is read, never removed")


def configure(storage_options: Mapping[str, Mapping[str, Any]]) -> None:
    """Make ``storage_options`` (protocol -> keyword arguments, as in a job file's
    ``storage_options: {s3: {endpoint_url: ...}}``) the defaults of every filesystem of
    that protocol this process opens: fsspec's own configuration, which every reader
    (pyarrow, geopandas, rasterio's uploads here) goes through. For the life of the
    process (a command's, a worker's); :func:`configured` for the time of a call."""
    for protocol, options in storage_options.items():
        fsspec.config.conf[protocol] = {**fsspec.config.conf.get(protocol, {}), **options}
        _forget_filesystems(protocol)


@contextlib.contextmanager
def configured(storage_options: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """:func:`configure` while inside, and fsspec's configuration as it was afterwards:
    a job's endpoint and credentials never reach what a notebook reads later."""
    saved = {protocol: fsspec.config.conf.get(protocol) for protocol in storage_options}
    configure(storage_options)
    try:
        yield
    finally:
        for protocol, options in saved.items():
            if options is None:
                fsspec.config.conf.pop(protocol, None)
            else:
                fsspec.config.conf[protocol] = options
            _forget_filesystems(protocol)


def _forget_filesystems(protocol: str) -> None:
    # A filesystem already opened keeps the options it was made with.
    with contextlib.suppress(ImportError, ValueError):
        fsspec.get_filesystem_class(protocol).clear_instance_cache()


def exists(path: str | os.PathLike) -> bool:
    fs, fs_path = filesystem(path)
    return fs.exists(fs_path)


def list_names(folder: str | os.PathLike) -> list[str]:
    """Names of the entries directly in ``folder`` (hidden ones too); none if it does not exist."""
    fs, fs_path = filesystem(folder)
    try:
        entries = fs.ls(fs_path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    # Some stores list a file given as a folder as the file itself.
    listed = fs_path.rstrip("/")
    return sorted(posixpath.basename(entry.rstrip("/")) for entry in entries if entry.rstrip("/") != listed)


def make_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` and its parents; object stores have no folders, only keys."""
    fs, fs_path = filesystem(folder)
    if local_path(folder) is not None:
        with reporting_write_errors(folder):
            fs.makedirs(fs_path, exist_ok=True)


@contextlib.contextmanager
def reporting_write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a failure to write ``path`` that is the place's fault into an :class:`InputError`
    naming it: a permission refused, a full disk, a read-only folder (see :data:`PLACE_ERRNOS`).
    Anything else is raised as it is: a bug."""
    try:
        yield
    except OSError as exc:
        reason = _place_problem(path, exc)
        if reason is None:
            raise
        raise InputError(f"{path}: cannot write: {reason}; once that is fixed, the same command "
                         "resumes where it stopped") from exc


def _place_problem(path: str | os.PathLike, exc: OSError) -> str | None:
    """Why writing ``path`` failed, if its place is at fault; ``None`` if it is not."""
    if isinstance(exc, PermissionError) or exc.errno in PLACE_ERRNOS:
        return (os.strerror(exc.errno) if exc.errno else "permission denied").lower()
    local = local_path(path)
    if local is None or exc.errno is not None:
        return None
    # A library that writes files itself (GDAL) may not say why: ask the folder.
    folder = os.path.dirname(os.path.abspath(local))
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as probe_exc:
        if isinstance(probe_exc, PermissionError) or probe_exc.errno in PLACE_ERRNOS:
            return os.strerror(probe_exc.errno or errno.EACCES).lower()
    stats = os.statvfs(folder)
    if stats.f_bavail * stats.f_frsize < FULL_BELOW_BYTES:
        return os.strerror(errno.ENOSPC).lower()
    return None


def remove(path: str | os.PathLike) -> None:
    """Remove a file or a whole folder; nothing if it is not there. A link is removed
    itself, never what it leads to."""
    local = local_path(path)
    with reporting_write_errors(path):  # a folder that refuses it is the place's fault, as for any write
        if local is not None and os.path.islink(local):
            os.unlink(local)
            return
        fs, fs_path = filesystem(path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(fs_path, recursive=True)


def read_bytes(path: str | os.PathLike) -> bytes:
    fs, fs_path = filesystem(path)
    return fs.cat_file(fs_path)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content, or ``None`` when it is missing or not JSON."""
    try:
        return json.loads(read_bytes(path))
    except (OSError, ValueError):
        return None


def temporary_path(path: str | os.PathLike) -> str:
    """A unique name beside a local ``path``, hidden (dot-prefixed) so dataset readers skip it."""
    head, tail = os.path.split(os.fspath(path))
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[Path]:
    """A local file to write ``path``'s content into; it becomes ``path`` on success.

    Locally it is a hidden file beside ``path``, renamed over it; for remote storage a
    temporary file of this machine, uploaded whole. On failure nothing is left behind
    and ``path`` keeps what it held.
    """
    local = local_path(path)
    if local is not None:
        tmp = Path(temporary_path(local))
        try:
            with reporting_write_errors(path):
                yield tmp
                os.replace(tmp, local)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        return
    with tempfile.TemporaryDirectory(prefix="asm-dask-upload-") as folder:
        tmp = Path(folder) / posixpath.basename(os.fspath(path))
        yield tmp
        fs, fs_path = filesystem(path)
        with reporting_write_errors(path):
            fs.put_file(str(tmp), fs_path)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a whole file, so that readers see the old one or the new one, never half."""
    local = local_path(path)
    if local is None:
        fs, fs_path = filesystem(path)
        with reporting_write_errors(path):
            fs.pipe_file(fs_path, data)
        return
    with writing(local) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def open_appending(path: str | os.PathLike) -> IO[str]:
    """``path`` opened to append text to, created (with its local folder) if missing.

    On object storage, where an object cannot grow, the backend uploads the whole object
    again when the file is closed.
    """
    local = local_path(path)
    if local is not None:
        make_folder(os.path.dirname(local))
    return fsspec.open(os.fspath(path), "a", encoding="utf-8").open()


def create_exclusively(path: str | os.PathLike, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; whether this call created it.

    Exactly one of several processes racing to create the same path wins: locally by
    ``O_EXCL``, on S3 by a conditional write (``If-None-Match``), which s3fs makes of
    mode ``xb``. A store that cannot write conditionally is checked first, then written:
    a race between two runs within that gap is not caught there.
    """
    local = local_path(path)
    if local is not None:
        try:
            with reporting_write_errors(path):
                fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    fs, fs_path = filesystem(path)
    try:
        with fs.open(fs_path, "xb") as f:
            f.write(data)
        return True
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError):  # no exclusive mode in this backend
        if fs.exists(fs_path):
            return False
        fs.pipe_file(fs_path, data)
        return True

