"""Paths a command reads and writes, checked before anything runs: inputs that exist and
can be opened, output folders that can be written, locally or at an fsspec URL.

Each problem is an :class:`~asm_dask.errors.InputError` naming the path and the setting
(or option) that gave it.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

from ..errors import InputError
from .files import filesystem, join


def check_output_folder(path: str, key: str) -> None:
    """The output folder ``path`` (the setting ``key``) can be written, locally or at a URL."""
    if "://" in path:
        check_remote_folder(path, key)
    else:
        _check_output(path, key)


def check_input(path: str, key: str, what: str, expected: str | None) -> None:
    """An input exists and can be opened; a folder only if ``expected`` is ``None``."""
    if "://" in path:
        _check_remote_input(path, key, what, expected)
        return
    if not stat.S_ISDIR(_stat(path, key, f"{path}: {what} not found").st_mode):
        try:
            open(path, "rb").close()
        except OSError as exc:
            raise InputError(f"{path}: cannot be opened: {_reason(exc)} ({key})") from None
    elif expected is not None:
        raise InputError(f"{path}: is a folder, expected {expected} ({key})")


def _check_remote_input(url: str, key: str, what: str, expected: str | None) -> None:
    try:
        fs, fs_path = filesystem(url)
        if fs.isfile(fs_path):
            return
        found_folder = fs.isdir(fs_path)
    except Exception as exc:  # any backend's failure to reach the store: no credentials, no endpoint...
        raise InputError(f"{url}: cannot be opened: {_first_line(exc)} ({key})") from None
    if not found_folder:
        raise InputError(f"{url}: {what} not found")
    if expected is not None:
        raise InputError(f"{url}: is a folder, expected {expected} ({key})")


def check_remote_folder(url: str, key: str) -> None:
    """A URL can hold a folder: it is not an object itself, and an object can be written
    under it (and is removed again)."""
    probe = join(url, f".asm-dask-write-test-{os.getpid()}")
    try:
        fs, fs_path = filesystem(url)
        if fs.isfile(fs_path):
            raise InputError(f"{url}: is a file, expected a folder ({key})")
        protocol, rest = url.split("://", 1)
        parts = rest.rstrip("/").split("/")
        for ancestor in (f"{protocol}://{'/'.join(parts[:i])}" for i in range(2, len(parts))):  # below the bucket
            ancestor_fs, ancestor_path = filesystem(ancestor)
            if ancestor_fs.isfile(ancestor_path):
                raise InputError(f"{url}: {ancestor} is a file, not a folder ({key})")
        probe_fs, probe_path = filesystem(probe)
        probe_fs.pipe_file(probe_path, b"")
        probe_fs.rm_file(probe_path)
    except InputError:
        raise
    except Exception as exc:  # a missing bucket, no credentials, no endpoint, no permission...
        raise InputError(f"{url}: cannot write the folder: {_first_line(exc)} ({key})") from None


def _check_output(path: str, key: str) -> None:
    """The output folder is not a file, and it or its nearest existing parent is writable."""
    path = os.path.abspath(path)
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    where = "" if existing == path else f" in {existing}"
    if not stat.S_ISDIR(_stat(existing, key, f"{existing}: broken symbolic link ({key})").st_mode):
        raise InputError(f"{path}: is a file, expected a folder ({key})" if existing == path else
                         f"{path}: {existing} is a file, not a folder ({key})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write the output folder{where}: permission denied ({key})")
    try:
        # Permission bits are not the whole story (read-only mounts, /proc, ACLs): try.
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot write the output folder{where}: {_reason(exc)} ({key})") from None


def _stat(path: str, key: str, missing: str) -> os.stat_result:
    """``os.stat(path)``; a missing path raises the message ``missing``, anything else
    (a link loop, a file as a parent folder) a one-line error naming ``key``."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise InputError(missing) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be opened: {_reason(exc)} ({key})") from None


def _reason(exc: OSError) -> str:
    return "a symbolic link loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc)).lower()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
