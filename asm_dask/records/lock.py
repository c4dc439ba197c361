"""One run per output folder: ``.asm-dask.lock`` says which run is writing it.

A second run into the same folder stops with one line naming the first; a lock left by
a run that died on this machine is taken over.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from typing import Any

from .. import storage
from ..errors import InputError
from .outputs import LOCK_FILE, check_output_kind


class OutputLock:
    """Holds ``output`` for one run of ``command`` (``run`` or ``predict``), as a context manager.

    The lock is a file created exclusively (see :func:`asm_dask.storage.create_exclusively`)
    that names its run, host, process and start time, removed when the run ends, however
    it ends. A lock whose process is gone from this host is stale and taken over; one
    from another host cannot be checked, so the message says how to remove it. A folder
    holding the output of the other command is refused (see :func:`check_output_kind`).
    """

    def __init__(self, output: str, command: str = "run"):
        self.output = output
        self.command = command
        self.path = storage.join(output, LOCK_FILE)
        self.holder = {"run": uuid.uuid4().hex[:12], "host": socket.gethostname(), "pid": os.getpid(),
                       "user": _user(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def __enter__(self) -> OutputLock:
        self._created_folder = not storage.exists(self.output)
        storage.make_folder(self.output)
        data = json.dumps(self.holder).encode()
        for _ in range(3):
            if storage.create_exclusively(self.path, data):
                try:
                    check_output_kind(self.output, self.command)
                except InputError:
                    self.__exit__()
                    raise
                return self
            other = storage.read_json(self.path)
            if not _readable(other):  # removed meanwhile, being written, or damaged: look again
                time.sleep(0.1)
                continue
            if not self._is_stale(other):
                raise InputError(
                    f"{self.output}: in use by another asm-dask run ({other.get('run')}, "
                    f"{other.get('user', '?')}@{other.get('host')} process {other.get('pid')}, started "
                    f"{other.get('started')}); wait for it to finish, choose another output folder, or "
                    f"remove {self.path} if that run is dead")
            storage.remove(self.path)
        if storage.exists(self.path):
            raise InputError(f"{self.path}: not a lock asm-dask can read (a folder, or damaged); remove it if no "
                             "asm-dask run is writing this folder")
        raise InputError(f"{self.output}: could not take the lock {self.path}; another run keeps taking it")

    def __exit__(self, *exc_info: Any) -> None:
        current = storage.read_json(self.path)
        if isinstance(current, dict) and current.get("run") == self.holder["run"]:
            storage.remove(self.path)
        # A run stopped by bad input leaves no output folder it made behind.
        if self._created_folder and storage.local_path(self.output) and not storage.list_names(self.output):
            storage.remove(self.output)

    def _is_stale(self, other: dict[str, Any]) -> bool:
        return other.get("host") == self.holder["host"] and not process_alive(other["pid"])


def _readable(lock: Any) -> bool:
    """Whether ``lock`` is what :class:`OutputLock` writes: a host and a process id."""
    return isinstance(lock, dict) and isinstance(lock.get("host"), str) and type(lock.get("pid")) is int


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        pass
    return True
