"""Writes that readers never see half done: write beside the target, then rename over it."""

from __future__ import annotations

import os
import uuid


def temporary_path(path: str | os.PathLike) -> str:
    """A unique name beside ``path``, hidden (dot-prefixed) so dataset readers skip it."""
    head, tail = os.path.split(os.fspath(path))
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:8]}")


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file so that readers see the old file or the new one, never half."""
    tmp = temporary_path(path)
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
