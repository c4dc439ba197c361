"""What asm-dask installs on the workers of a cluster: the job's storage options, quiet
logs (their records sent to the ``asm-dask`` process), and imports started early."""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from ..runtime.logs import distributed_loggers, writes_to_console
from ..storage import configured


def quiet_worker_logs(client: distributed.Client) -> None:
    """Have the workers of a cluster started here send ``distributed``'s log records to
    this process, where they are handled as its own (into asm-dask.log, see
    :mod:`asm_dask.cli.console`), instead of printing them on their stderr: this console for a
    local cluster's worker processes, a batch job's file for SLURM and PBS."""
    client.register_plugin(_QuietWorker(), name="asm-dask-no-worker-stderr")
    client.forward_logging("distributed")


class _QuietWorker(WorkerPlugin):
    """In a worker process: take ``distributed``'s stderr handlers off its loggers, and
    ignore Ctrl-C, which a terminal sends to every process of the command: asm-dask
    stops its workers itself as it unwinds, instead of each printing a traceback."""

    def setup(self, worker: distributed.Worker) -> None:
        self.detached = [(logger, handler) for logger in distributed_loggers()
                         for handler in logger.handlers if writes_to_console(handler)]
        for logger, handler in self.detached:
            logger.removeHandler(handler)
        self.sigint = None
        if threading.current_thread() is threading.main_thread():
            self.sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def teardown(self, worker: distributed.Worker) -> None:
        for logger, handler in self.detached:
            logger.addHandler(handler)
        if self.sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.sigint)


@contextlib.contextmanager
def storage_options_shared(client: distributed.Client, storage_options: dict[str, dict[str, Any]]) -> Iterator[None]:
    """:func:`asm_dask.storage.configured` on this process and on every worker of
    ``client``'s cluster, present and joining later, for the time inside: the workers of
    a client a notebook passed are left as they were.

    The options travel to the workers as any task does: over TLS on clusters asm-dask
    starts across machines; on a plain-TCP cluster prefer credentials the workers find
    themselves (environment variables, instance roles).
    """
    with configured(storage_options):
        if not storage_options:
            yield
            return
        client.register_plugin(_StorageOptions(storage_options), name=_STORAGE_PLUGIN)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a cluster already gone keeps nothing
                client.unregister_worker_plugin(_STORAGE_PLUGIN)


_STORAGE_PLUGIN = "asm-dask-storage-options"


class _StorageOptions(WorkerPlugin):
    """In a worker: the job's ``storage_options`` as fsspec's defaults, until removed."""

    def __init__(self, storage_options: dict[str, dict[str, Any]]):
        self.storage_options = storage_options

    def setup(self, worker: distributed.Worker) -> None:
        self.configured = configured(self.storage_options)
        self.configured.__enter__()

    def teardown(self, worker: distributed.Worker) -> None:
        self.configured.__exit__(None, None, None)


def import_on_workers(client: distributed.Client, module: str) -> None:
    """Have every current worker import ``module`` now, without waiting for it."""
    for address in client.scheduler_info(n_workers=-1)["workers"]:
        distributed.fire_and_forget(client.submit(
            _import_module, module, workers=[address], allow_other_workers=False, pure=False))


def _import_module(module: str) -> None:
    importlib.import_module(module)
