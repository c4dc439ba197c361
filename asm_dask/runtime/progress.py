"""Progress of a run: which stage runs, and how many of a stage's tasks are done.

Everything is said through :mod:`logging`, at INFO, on the ``asm_dask`` loggers: a
stage as ``fit...``, progress as ``predict cells: [####      ] 2/4 (0.3 s)`` records
that carry a ``progress`` attribute (``"partial"`` or ``"done"``), so that a console can
redraw one line. A notebook shows none of it unless it asks (``logging.basicConfig``);
the command line shows all of it (:mod:`asm_dask.cli.console`).

``dask.diagnostics.ProgressBar`` only sees local schedulers; this follows futures as they
complete, so it works the same on a LocalCluster and on a remote scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from distributed import Client, Future, wait

from ..errors import InputError
from .signals import check_stop

log = logging.getLogger("asm_dask.progress")

REPORT_EVERY_S = 2.0
#: how often, while no task finishes, the cluster is asked whether it can still work
CHECK_EVERY_S = 5.0
#: every worker paused (out of memory), or no worker at all, this long: the run stops
STALL_S = 60.0


class ClusterStalledError(InputError):
    """The cluster cannot make progress: every worker paused, or none left."""


def wait_with_progress(client: Client, futures: Sequence[Future], description: str,
                       on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Wait for ``futures``, logging progress; return their results in order.

    ``on_result(index, result)`` runs as each task finishes (to record it, say). The first
    failure cancels the remaining tasks and is raised as the task raised it. A cluster
    that cannot work (every worker paused for lack of memory, or no worker left) for
    :data:`STALL_S` seconds raises :class:`ClusterStalledError` instead of waiting forever.
    """
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    pending = list(futures)
    done, started, last = 0, time.monotonic(), 0.0
    watch = _StallWatch(client)
    try:
        while pending:
            check_stop()
            try:
                finished = wait(pending, timeout=CHECK_EVERY_S, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                watch.check()
                continue
            watch.progressed()
            pending = [f for f in pending if f not in finished]
            for future in sorted(finished, key=lambda f: index[f.key]):
                i = index[future.key]
                results[i] = future.result()
                future.release()
                if on_result is not None:
                    on_result(i, results[i])
                done += 1
            now = time.monotonic()
            if now - last >= REPORT_EVERY_S or done == len(futures):
                bar = "#" * (20 * done // max(len(futures), 1))
                log.info("%s: [%-20s] %d/%d (%.1f s)", description, bar, done, len(futures), now - started,
                         extra={"progress": "done" if done == len(futures) else "partial"})
                last = now
    except BaseException:
        client.cancel([f for f in futures if not f.done()])
        raise
    return results


class _StallWatch:
    """Whether a cluster has been unable to work for :data:`STALL_S` seconds."""

    def __init__(self, client: Client):
        self.client = client
        self.since: float | None = None

    def progressed(self) -> None:
        self.since = None

    def check(self) -> None:
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        paused = bool(workers) and all(w.get("status") == "paused" for w in workers)
        if workers and not paused:
            self.since = None
            return
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        if now - self.since < STALL_S:
            return
        if paused:
            from dask.utils import format_bytes

            limits = sorted({format_bytes(w["memory_limit"]) for w in workers if w.get("memory_limit")})
            raise ClusterStalledError(
                f"every Dask worker has been paused for {STALL_S:g} s: out of memory (memory limit "
                f"{', '.join(limits) or 'none'} per worker); give the workers more memory (memory_limit in a "
                "cluster file) or more workers")
        raise ClusterStalledError(f"no Dask worker for {STALL_S:g} s: they died (out of memory?) or the "
                                  "scheduler lost them; see the log")


@contextlib.contextmanager
def stage(timings: dict[str, float], name: str) -> Iterator[None]:
    """Say which stage runs (``fit...``), and time it into ``timings``."""
    check_stop()
    logging.getLogger("asm_dask").info("%s...", name)
    with timed(timings, name):
        yield


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall time, in seconds, to ``timings[name]``."""
    start = time.perf_counter()
    yield
    timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 3)
