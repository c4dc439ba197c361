"""Arithmetic that gives the same bits on any cluster, and tasks on the current client.

Multithreaded BLAS may split a sum differently with another thread count, which changes
the last bits of a result; so BLAS runs on one thread inside every task, and the
parallelism comes from Dask's tasks (or, for one product, from fixed blocks on a pool of
threads). A model fitted on a laptop and on a cluster is the same model, bit for bit.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController

from ..runtime.progress import wait_with_progress

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")


def current_client() -> Client | None:
    """The ``distributed`` client of this context (the one a notebook made, or a task's),
    or ``None``: then the work runs in this process."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):  # no client anywhere
        return None


#: rows of a row-major matrix turned into columns at a time by :func:`linear_scores`
SCORE_BLOCK_ROWS = 1024


def column_sum(columns: Sequence[np.ndarray], coef: np.ndarray) -> np.ndarray:
    """``sum_j coef[j] * columns[j]`` in float64, one feature column after the other.

    The arithmetic of every linear score: each row's terms added in the order of the
    features, each product and sum rounded as IEEE float64 (NumPy fuses no multiply-add),
    so equal rows score equal bits wherever they sit, whatever the SIMD lanes did. A
    column is read whole and contiguous, which is how Arrow holds it: no transposition to
    rows, which cost more than the arithmetic. A non-finite feature gives a NaN or
    infinite score (0 x inf is NaN: no non-finite value goes unnoticed).
    """
    total = np.zeros(len(columns[0]) if len(columns) else 0)
    for weight, column in zip(coef.astype(np.float64, copy=False), columns):
        total += weight * column
    return total


def linear_scores(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """``X @ coef + intercept`` by :func:`column_sum`'s arithmetic, a block of rows at a time.

    BLAS treats the rows at the tail of a matrix with other code than the rest, so two
    equal rows can score a rounding error apart, which breaks ROC AUC ties at random.
    """
    scores = np.empty(len(X))
    for start in range(0, len(X), SCORE_BLOCK_ROWS):
        block = np.ascontiguousarray(X[start:start + SCORE_BLOCK_ROWS].T)
        scores[start:start + SCORE_BLOCK_ROWS] = column_sum(block, coef)
    return scores + intercept


def gram(Z: np.ndarray, block: int = 512) -> np.ndarray:
    """``Z @ Z.T`` with every core, the same to the last bit whatever their number.

    Multithreaded BLAS may split a product differently with another thread count (a test
    showed it), so the result is cut into fixed square blocks instead, each one
    single-threaded BLAS call on a thread of a pool (BLAS releases the GIL). Only blocks
    on and above the diagonal are computed; the rest are their mirror images.
    """
    n = len(Z)
    K = np.empty((n, n))
    starts = range(0, n, block)

    def fill(i: int, j: int) -> None:
        np.matmul(Z[i:i + block], Z[j:j + block].T, out=K[i:i + block, j:j + block])
        if i != j:
            K[j:j + block, i:i + block] = K[i:i + block, j:j + block].T

    with one_blas_thread(), ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(lambda ij: fill(*ij), [(i, j) for i in starts for j in starts if j >= i]))
    return K


def times_symmetric(vectors: np.ndarray, K: np.ndarray, pool: ThreadPoolExecutor, block: int = 1024) -> np.ndarray:
    """``vectors @ K`` for a symmetric ``K``, in fixed blocks of ``K``'s columns on the
    threads of ``pool``: the same bits whatever their number.

    ``K``'s columns are read as its rows (``K`` is symmetric), contiguous in memory; the
    product is bound by reading ``K``, so several vectors cost about what one does.
    """
    out = np.empty((len(vectors), len(K)))

    def fill(start: int) -> None:
        np.matmul(vectors, K[start:start + block].T, out=out[:, start:start + block])

    list(pool.map(fill, range(0, len(K), block)))
    return out


def single_threaded(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)``, with BLAS and LAPACK on one thread in this process.

    Multithreaded BLAS may split a sum differently with another thread count, which
    changes the last bits of a result. With one thread everywhere, the job's results
    are the same bit for bit on any cluster, run after run; parallelism comes from
    Dask's tasks instead. The limit is process-wide, so it holds while any such call
    runs and is lifted when the last one ends: a notebook's own NumPy gets its threads
    back after a fit or a run in its process.
    """
    with one_blas_thread():
        return func(*args, **kwargs)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS and LAPACK on one thread in this process while any caller is inside."""
    global _blas_callers, _blas_limits
    with _blas_lock:
        if _blas_callers == 0:
            _blas_limits = _blas_controller().limit(limits=1)
        _blas_callers += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_callers -= 1
            if _blas_callers == 0:
                _blas_limits.restore_original_limits()
                _blas_limits = None


_blas_lock = threading.Lock()
_blas_callers = 0
_blas_limits: Any = None


def _blas_controller() -> ThreadpoolController:
    """The process's BLAS and OpenMP libraries. ``threadpool_limits`` looks for them at
    every call (5 ms, paid by every prediction task); they are looked for again only
    when a module was imported since, which may have loaded another."""
    global _controller
    if _controller is None or _controller[0] != len(sys.modules):
        _controller = (len(sys.modules), ThreadpoolController())
    return _controller[1]


_controller: tuple[int, ThreadpoolController] | None = None


def share(client: Client | None, values: dict) -> dict:
    """Send large task inputs (the kernel) to every worker once, not inside each task.

    Under keys of their own (``hash=False``): a key named by content may be one that an
    earlier fit on the same rows scattered, and released as that fit ended, under these tasks.
    """
    if client is None:
        return values
    return {name: client.scatter(value, broadcast=True, hash=False) for name, value in values.items()}


def run_tasks(client: Client | None, calls: list[tuple], shared: dict, description: str) -> list:
    """``func(*args, **shared)`` for each ``(func, *args)``, as tasks if there is a cluster."""
    if client is None:
        return [single_threaded(func, *args, **shared) for func, *args in calls]
    futures = [client.submit(_aligned_task, func, *args, **shared, pure=False) for func, *args in calls]
    return wait_with_progress(client, futures, description)


def _aligned_task(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return single_threaded(func, *aligned(args), **aligned(kwargs))


def aligned(value: Any) -> Any:
    """``value`` with every NumPy array in it (in lists, tuples and dicts too) where NumPy
    can hand it to BLAS: at an address that is a multiple of its item size.

    An array sent from another process arrives as a view into the message, at any byte
    (``distributed`` does not align it). NumPy then multiplies it with loops of its own
    instead of BLAS, which add in another order: a fit on worker processes would differ
    from the same fit in one process in its last bits. Such an array is copied, once.
    """
    if isinstance(value, np.ndarray):
        return value if value.flags.aligned else np.require(value, requirements="A")
    if type(value) in (list, tuple):
        return type(value)(aligned(item) for item in value)
    if type(value) is dict:
        return {key: aligned(item) for key, item in value.items()}
    return value
