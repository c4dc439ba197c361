"""Where the workers come from: a local cluster, a running scheduler, or a cluster file.

The science code only ever sees a :class:`distributed.Client`. Everything about
starting and stopping workers lives here and in the YAML files under ``cluster/``,
so the same job file runs unchanged on a laptop, over SSH, on SLURM/PBS or on
Kubernetes.

Errors are :class:`~asm_dask.errors.InputError` with a one-line message, so the
command line prints them as is; each also derives from the matching built-in
exception (``ValueError``, ``FileNotFoundError``, ``ImportError``, ``TimeoutError``).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.system
import distributed
from distributed.system import MEMORY_LIMIT

from .config import read_yaml

from .errors import InputError

KINDS = ("local", "scheduler", "ssh", "slurm", "pbs", "kubernetes")

#: seconds to wait for the first worker unless a cluster file sets ``worker_timeout``
DEFAULT_WORKER_TIMEOUT = 60.0

# kind -> (module that must import, module holding the class, class, pip extra).
# SSHCluster ships with distributed but notices a missing asyncssh only once it
# is connecting, so that dependency is checked on its own.
_OPTIONAL = {
    "ssh": ("asyncssh", "distributed", "SSHCluster", "ssh"),
    "slurm": ("dask_jobqueue", "dask_jobqueue", "SLURMCluster", "jobqueue"),
    "pbs": ("dask_jobqueue", "dask_jobqueue", "PBSCluster", "jobqueue"),
    "kubernetes": ("dask_kubernetes.operator", "dask_kubernetes.operator", "KubeCluster",
                   "kubernetes"),
}


class ClusterFileError(InputError, ValueError):
    """A cluster file, or a combination of arguments, that cannot be used."""


class ClusterFileNotFoundError(InputError, FileNotFoundError):
    """The cluster file does not exist."""


class MissingExtraError(InputError, ImportError):
    """The cluster kind needs an optional package; the message names the pip extra."""


class ClusterTimeoutError(InputError, TimeoutError):
    """The scheduler could not be reached, or no worker joined it, in time."""


@contextlib.contextmanager
def open_client(
    cluster_file: str | os.PathLike[str] | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> Iterator[distributed.Client]:
    """Yield a client on a cluster with at least one worker, then clean up.

    Parameters
    ----------
    cluster_file : str or os.PathLike, optional
        YAML file describing the cluster; its ``kind`` key is one of :data:`KINDS`
        and the other keys go to that kind's cluster class (see ``cluster/*.yaml``).
    scheduler : str, optional
        Address of a running scheduler, such as ``tcp://host:8786``. It is left
        running on exit.
    progress : bool, default True
        Print the dashboard link to stderr; ``False`` keeps stderr quiet.

    Yields
    ------
    distributed.Client
        Client on the cluster, with at least one worker connected.

    Raises
    ------
    ClusterFileError
        Both arguments given, or a cluster file that cannot be used (a ``ValueError``).
    ClusterFileNotFoundError
        The cluster file does not exist (a ``FileNotFoundError``).
    MissingExtraError
        The cluster kind needs an optional package (an ``ImportError``).
    ClusterTimeoutError
        The scheduler is unreachable or no worker joined in time (a ``TimeoutError``).

    Notes
    -----
    With neither argument, a :class:`distributed.LocalCluster` is started in this
    process: one worker with a thread per available core and the machine's memory.
    Only clusters started here are shut down on exit.
    """
    if cluster_file is not None and scheduler is not None:
        raise ClusterFileError("give either a cluster file or a scheduler address, not both")
    with contextlib.ExitStack() as stack:
        timeout = DEFAULT_WORKER_TIMEOUT
        if scheduler is not None:
            client = _connect(scheduler, stack)
        elif cluster_file is not None:
            client, timeout = _open_from_file(Path(cluster_file), stack)
        else:
            cluster = stack.enter_context(distributed.LocalCluster(**_local_kwargs({})))
            client = stack.enter_context(distributed.Client(cluster))
        if isinstance(client.cluster, distributed.LocalCluster) and not client.cluster.processes:
            # An in-process scheduler has no network address; its dashboard listens on
            # loopback, which the default link (built from the host's address) misses.
            stack.enter_context(dask.config.set(
                {"distributed.dashboard.link": "{scheme}://127.0.0.1:{port}/status"}))
        if progress:
            # Printed before waiting, so the dashboard can be watched while batch
            # jobs sit in a queue.
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterTimeoutError(
                f"no Dask worker joined the scheduler at {client.scheduler.address} "
                f"within {timeout:g} s"
            ) from None
        yield client


def import_on_workers(client: distributed.Client, module: str) -> None:
    """Have every current worker import ``module`` now, without waiting for it."""
    for address in client.scheduler_info(n_workers=-1)["workers"]:
        distributed.fire_and_forget(client.submit(
            _import_module, module, workers=[address], allow_other_workers=False, pure=False))


def _import_module(module: str) -> None:
    importlib.import_module(module)


def describe(client: distributed.Client) -> dict[str, Any]:
    """Summarise the cluster behind ``client`` for the run metadata.

    Parameters
    ----------
    client : distributed.Client
        A connected client.

    Returns
    -------
    dict
        ``scheduler`` (address), ``n_workers``, ``threads`` (over all workers) and
        ``memory_bytes`` (sum of the workers' memory limits; workers without a
        limit count as 0).
    """
    info = client.scheduler_info(n_workers=-1)
    workers = info["workers"].values()
    return {
        "scheduler": info["address"],
        "n_workers": len(workers),
        "threads": sum(w["nthreads"] for w in workers),
        "memory_bytes": sum(w["memory_limit"] or 0 for w in workers),
    }


def _connect(address: str, stack: contextlib.ExitStack) -> distributed.Client:
    """Connect to a scheduler someone else runs; closing the client leaves it running."""
    try:
        return stack.enter_context(distributed.Client(address))
    except OSError as exc:
        raise ClusterTimeoutError(
            f"cannot reach the Dask scheduler at {address}: {_one_line(exc)}"
        ) from exc


def _open_from_file(path: Path, stack: contextlib.ExitStack) -> tuple[distributed.Client, float]:
    """Start or connect to the cluster ``path`` describes; register its cleanup on ``stack``."""
    kind, settings = _read_cluster_file(path)
    timeout = float(settings.pop("worker_timeout", DEFAULT_WORKER_TIMEOUT))
    if kind == "scheduler":
        if set(settings) != {"address"}:
            raise ClusterFileError(f"{path}: kind 'scheduler' takes exactly one key, 'address'")
        return _connect(settings["address"], stack), timeout

    sizing = {key: settings.pop(key) for key in ("scale", "jobs", "adapt") if key in settings}
    if len(sizing) > 1:
        raise ClusterFileError(f"{path}: give only one of {', '.join(sizing)}")
    if "jobs" in sizing and kind not in ("slurm", "pbs"):
        raise ClusterFileError(f"{path}: 'jobs' only applies to kinds slurm and pbs")
    if kind == "local":
        _check_local_keys(path, settings)
        cluster_class, settings = distributed.LocalCluster, _local_kwargs(settings)
    else:
        cluster_class = _import_cluster_class(path, kind)
    try:
        cluster = stack.enter_context(cluster_class(**settings))
        if "scale" in sizing:
            cluster.scale(sizing["scale"])
        elif "jobs" in sizing:
            cluster.scale(jobs=sizing["jobs"])
        elif "adapt" in sizing:
            cluster.adapt(**sizing["adapt"])
    except (TypeError, ValueError) as exc:
        # A misspelt key or a bad value surfaces deep inside the cluster class,
        # with no hint of which file it came from.
        raise ClusterFileError(
            f"{path}: invalid settings for kind {kind!r}: {_one_line(exc)}"
        ) from exc
    return stack.enter_context(distributed.Client(cluster)), timeout


def _read_cluster_file(path: Path) -> tuple[str, dict[str, Any]]:
    """Return the ``kind`` and the remaining settings of a cluster file."""
    spec = read_yaml(path, "cluster file", missing=ClusterFileNotFoundError, invalid=ClusterFileError)
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ClusterFileError(
            f"{path}: expected a mapping with a 'kind' key (one of {', '.join(KINDS)})"
        )
    kind = spec.pop("kind")
    if kind not in KINDS:
        raise ClusterFileError(
            f"{path}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    return kind, spec


def _local_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """LocalCluster arguments: machine-sized defaults, overridden by ``settings``.

    By default one worker runs a thread per core inside this process. asm_dask's tasks
    spend their time in NumPy, BLAS, Arrow and GEOS, which release the GIL, so threads
    compute in parallel, while sharing one process saves starting and importing into
    a process per core, copying the training kernel to each, and the memory of all that.
    ``processes: true`` gives one single-threaded worker process per core instead.
    """
    # dask's count honours CPU affinity and cgroup quotas (containers, SLURM
    # allocations), unlike os.cpu_count(); likewise MEMORY_LIMIT honours cgroups.
    if settings.get("processes", False):
        n_workers = settings.get("n_workers", dask.system.CPU_COUNT)
        defaults = {"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                    "memory_limit": MEMORY_LIMIT // max(n_workers, 1), "host": "127.0.0.1"}
    else:
        n_workers = settings.get("n_workers", 1)
        defaults = {"n_workers": n_workers,
                    "threads_per_worker": max(dask.system.CPU_COUNT // max(n_workers, 1), 1),
                    "processes": False, "memory_limit": MEMORY_LIMIT // max(n_workers, 1),
                    "worker_dashboard_address": "127.0.0.1:0"}
    # Loopback only, on an ephemeral port, so concurrent runs on one machine never clash.
    return defaults | {"dashboard_address": "127.0.0.1:0"} | settings


def _check_local_keys(path: Path, settings: dict[str, Any]) -> None:
    """Reject keys no LocalCluster, Nanny or Worker accepts.

    LocalCluster forwards unknown keywords to every worker process, where a typo
    shows up only as "Nanny failed to start" after a screenful of tracebacks.
    """
    known = {
        name
        for cls in (distributed.LocalCluster, distributed.Nanny, distributed.Worker)
        for name, parameter in inspect.signature(cls).parameters.items()
        if parameter.kind is not parameter.VAR_KEYWORD
    }
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ClusterFileError(f"{path}: unknown key(s) for kind 'local': {', '.join(unknown)}")


def _import_cluster_class(path: Path, kind: str) -> type:
    """Import the cluster class of an optional kind, naming the pip extra if it is missing."""
    dependency, module, name, extra = _OPTIONAL[kind]
    try:
        importlib.import_module(dependency)
    except ImportError:
        raise MissingExtraError(
            f"{path}: kind {kind!r} needs {dependency}; "
            f'install it with: pip install "asm_dask[{extra}]"'
        ) from None
    return getattr(importlib.import_module(module), name)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
