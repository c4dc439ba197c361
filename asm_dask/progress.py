"""Progress of a stage's tasks on any Dask client, local or remote.

``dask.diagnostics.ProgressBar`` only sees local schedulers; this follows futures as they
complete, so it works the same on a LocalCluster and on a remote scheduler.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, Callable, Sequence

from distributed import Client, Future, as_completed

REPORT_EVERY_S = 2.0


def wait_with_progress(client: Client, futures: Sequence[Future], description: str,
                       on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Wait for ``futures``; print progress to stderr; return their results in order.

    ``on_result(index, result)`` runs as each task finishes (to record it, say). The first
    failure cancels the remaining tasks and is raised as the task raised it.
    """
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    done, started, last = 0, time.monotonic(), 0.0
    # One line redrawn in a terminal; one line per report in a log file.
    tty = sys.stderr.isatty()
    try:
        for future in as_completed(futures):
            i = index[future.key]
            results[i] = future.result()
            future.release()
            if on_result is not None:
                on_result(i, results[i])
            done += 1
            now = time.monotonic()
            if now - last >= REPORT_EVERY_S or done == len(futures):
                bar = "#" * (20 * done // max(len(futures), 1))
                print(("\r" if tty else "") + f"{description}: [{bar:<20}] {done}/{len(futures)} "
                      f"({now - started:.1f} s)", end="" if tty and done < len(futures) else "\n",
                      file=sys.stderr, flush=True)
                last = now
    except BaseException:
        client.cancel([f for f in futures if not f.done()])
        raise
    return results


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall time, in seconds, to ``timings[name]``."""
    start = time.perf_counter()
    yield
    timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 3)
