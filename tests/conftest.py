"""Shared fixtures: real Dask scheduler and worker processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import distributed
import pytest

STARTUP_TIMEOUT = 30.0


@dataclass
class DaskProcesses:
    """A scheduler and its workers, each a separate OS process.

    ``workers[i]`` is the process of the worker named ``worker-i``; it runs without a
    nanny, so SIGKILL on its pid really loses that worker (nothing restarts it).
    """

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    # `python -m` rather than the `dask` script, so the processes run the same
    # interpreter and packages as the tests; own session, so the whole process
    # group can be killed at teardown.
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone, e.g. killed by the test
        pass
    process.wait()


def _read_scheduler_file(path: Path, scheduler: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited early:\n{log.read_text()}")
        try:
            return json.loads(path.read_text())["address"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.1)  # not written yet, or written halfway
    raise RuntimeError(
        f"dask scheduler did not start within {STARTUP_TIMEOUT:g} s:\n{log.read_text()}"
    )


@pytest.fixture
def dask_scheduler_with_workers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., DaskProcesses]]:
    """Factory starting ``dask scheduler`` plus ``n_workers`` ``dask worker`` processes.

    Call it as ``procs = dask_scheduler_with_workers(n_workers=2)``; it returns once
    every worker has joined. All processes are killed when the test ends.
    """
    started: list[subprocess.Popen] = []

    def start(n_workers: int = 2) -> DaskProcesses:
        folder = tmp_path_factory.mktemp("dask-processes")
        # Port 0 and a scheduler file: the OS picks a free port, with no race
        # between choosing it and binding it.
        scheduler_file = folder / "scheduler.json"
        scheduler_log = folder / "scheduler.log"
        scheduler = _spawn(
            ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
            scheduler_log,
        )
        started.append(scheduler)
        address = _read_scheduler_file(scheduler_file, scheduler, scheduler_log)
        workers = []
        for i in range(n_workers):
            worker = _spawn(
                ["distributed.cli.dask_worker", address, "--host", "127.0.0.1",
                 "--name", f"worker-{i}", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--local-directory", str(folder / f"worker-{i}")],
                folder / f"worker-{i}.log",
            )
            started.append(worker)
            workers.append(worker)
        with distributed.Client(address, timeout=STARTUP_TIMEOUT) as client:
            client.wait_for_workers(n_workers, timeout=STARTUP_TIMEOUT)
        return DaskProcesses(address=address, scheduler=scheduler, workers=workers)

    try:
        yield start
    finally:
        for process in reversed(started):  # workers before their scheduler
            _kill(process)


@pytest.fixture(scope="session")
def client() -> Iterator[distributed.Client]:
    """A real local cluster: two worker processes of one thread each, on 127.0.0.1."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(scope="session")
def country(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic country in the notebook's formats, shared by the slower tests."""
    from asm_dask.demo import make_country

    return make_country(tmp_path_factory.mktemp("country"), n_cells=1500, n_features=40,
                        n_labels=700, seed=3, rows_per_batch=600)



@pytest.fixture(scope="session")
def local_run(country, tmp_path_factory):
    """``asm-dask run`` of the small country on its default local cluster: (output, process)."""
    from builders import asm_dask, write_job

    folder = tmp_path_factory.mktemp("local-run")
    job = write_job(folder, country.labels, country.features)
    done = asm_dask("run", job, "--out", folder / "result")
    assert done.returncode == 0, done.stderr
    return folder / "result", done
