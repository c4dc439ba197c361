"""Writes that readers never see half done: write beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator


def temporary_path(path: str | os.PathLike) -> str:
    """A unique name beside ``path``, hidden (dot-prefixed) so dataset readers skip it."""
    head, tail = os.path.split(os.fspath(path))
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it on success, removed on failure."""
    tmp = Path(temporary_path(path))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file so that readers see the old file or the new one, never half."""
    with replacing(path) as tmp:
        tmp.write_text(text)
