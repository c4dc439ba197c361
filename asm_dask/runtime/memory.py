"""Memory a stage freed, handed back to the operating system before the next stage.

glibc keeps freed blocks of up to 32 MB in its heaps for reuse, and Arrow's allocator
keeps what it freed too. A fit frees hundreds of MB of such blocks (kernel rows, fold
buffers, float64 copies of the training rows), and without this the prediction that
follows stacks its own buffers on top of them: measured 1,150 MB peak instead of about
870 MB at Sierra Leone's size. Only this process needs it: the worker processes Dask's
nannies start trim on their own (``MALLOC_TRIM_THRESHOLD_``), and their tasks release
Arrow's memory as they end; the default local cluster's worker runs in this process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

import pyarrow as pa


def release_freed_memory() -> None:
    """Give the memory this process freed back to the operating system: Arrow's unused
    blocks, and glibc's (``malloc_trim``, where the C library is glibc)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None elsewhere (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
