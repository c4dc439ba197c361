"""Where the workers come from: a local cluster, a running scheduler, or a cluster file.

The science code only ever sees a :class:`distributed.Client`. Everything about
starting and stopping workers lives in this package and in the YAML files under
``cluster/``, so the same job file runs unchanged on a laptop, over SSH, on SLURM/PBS or
on Kubernetes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import distributed
from dask.utils import parse_timedelta

from .cluster_file import (
    DEFAULT_WORKER_TIMEOUT,
    check_scheduler_address,
    import_cluster_class,
    local_cluster_arguments,
    plan_from_settings,
    read_cluster_file,
)
from .errors import ClusterFileError, ClusterTimeoutError, one_line, root_cause
from .plugins import quiet_worker_logs
from .tls import scheduler_security

log = logging.getLogger(__name__)


@contextlib.contextmanager
def open_client(
    cluster_file: str | os.PathLike[str] | None = None,
    scheduler: str | None = None,
) -> Iterator[distributed.Client]:
    """Yield a client on a cluster with at least one worker, then clean up.

    Parameters
    ----------
    cluster_file : str or os.PathLike, optional
        YAML file describing the cluster; its ``kind`` key is one of :data:`~asm_dask.deploy.cluster_file.KINDS`
        and the other keys go to that kind's cluster class (see ``cluster/*.yaml``).
    scheduler : str, optional
        Address of a running scheduler, such as ``tcp://host:8786``. It is left
        running on exit. A ``tls://`` address takes its certificates from Dask's
        configuration (``distributed.comm.tls``); to name them, use a cluster file
        of kind ``scheduler`` instead.

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
    Only clusters started here are shut down on exit. See :func:`~asm_dask.deploy.cluster_file.plan_cluster` for
    what a cluster file's ``security`` does.
    """
    if cluster_file is not None and scheduler is not None:
        raise ClusterFileError("give either a cluster file or a scheduler address, not both")
    with contextlib.ExitStack() as stack:
        timeout = DEFAULT_WORKER_TIMEOUT
        if scheduler is not None:
            check_scheduler_address(scheduler, "--scheduler")
            client = _connect(scheduler, scheduler_security(scheduler, None, "--scheduler"), stack)
        elif cluster_file is not None:
            client, timeout = _open_from_file(Path(cluster_file), stack)
        else:
            cluster = stack.enter_context(distributed.LocalCluster(**local_cluster_arguments({})))
            client = stack.enter_context(distributed.Client(cluster))
        in_process = isinstance(client.cluster, distributed.LocalCluster) and not client.cluster.processes
        if client.cluster is not None and not in_process:
            quiet_worker_logs(client)
        if in_process:
            # An in-process scheduler has no network address; its dashboard listens on
            # loopback, which the default link (built from the host's address) misses.
            stack.enter_context(dask.config.set(
                {"distributed.dashboard.link": "{scheme}://127.0.0.1:{port}/status"}))
        # Said before waiting, so the dashboard can be watched while batch jobs sit in a queue.
        log.info("Dask dashboard: %s", client.dashboard_link, extra={"plain": True})
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterTimeoutError(
                f"no Dask worker joined the scheduler at {client.scheduler.address} "
                f"within {timeout:g} s"
            ) from None
        yield client


def _connect(address: str, security: distributed.Security | None,
             stack: contextlib.ExitStack) -> distributed.Client:
    """Connect to a scheduler someone else runs; closing the client leaves it running."""
    try:
        _ask_identity(address, security)
        return stack.enter_context(distributed.Client(address, security=security))
    except OSError as exc:
        # A TLS scheduler that refuses our certificate lands here too.
        raise ClusterTimeoutError(
            f"cannot reach the Dask scheduler at {address}: {one_line(exc)}"
        ) from exc


def _ask_identity(address: str, security: distributed.Security | None) -> None:
    """Ask what listens at ``address``, within the connect timeout: a client of another
    service (a web server, the dashboard's port, SSH) would otherwise wait for ever, or
    read a greeting as the length of a frame of exabytes. An ``OSError`` if no Dask
    scheduler answers."""
    from distributed.comm import connect

    timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
    arguments = security.get_connection_args("client") if security is not None else {}

    async def identity() -> Any:
        comm = await asyncio.wait_for(connect(address, timeout=timeout, **arguments), timeout)
        try:
            await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
            return await asyncio.wait_for(comm.read(), timeout)
        finally:
            comm.abort()

    # In a thread of its own: a notebook's event loop may be running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            answer = pool.submit(asyncio.run, identity()).result()
        except (TimeoutError, asyncio.TimeoutError):
            raise OSError(f"nothing answered as a Dask scheduler within {timeout:g} s") from None
        except OSError:
            raise
        except Exception as exc:  # what a service that is not Dask sends cannot be read as Dask's
            raise OSError(f"it does not answer as a Dask scheduler ({type(exc).__name__})") from exc
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise OSError(f"it does not answer as a Dask scheduler (it says {str(answer)[:60]!r})")


def _open_from_file(path: Path, stack: contextlib.ExitStack) -> tuple[distributed.Client, float]:
    """Start or connect to the cluster ``path`` describes; register its cleanup on ``stack``."""
    kind, settings = read_cluster_file(path)
    # A missing optional package is named before any other complaint about the file.
    cluster_class = (distributed.LocalCluster if kind in ("local", "scheduler")
                     else import_cluster_class(path, kind))
    plan = plan_from_settings(path, kind, settings, stack)
    if kind == "scheduler":
        return _connect(plan.arguments["address"], plan.arguments["security"], stack), plan.timeout
    # Held until the cluster is gone: SSHCluster reads it whenever it starts a process.
    stack.enter_context(dask.config.set(plan.config))
    try:
        cluster = stack.enter_context(cluster_class(**plan.arguments))
        if "scale" in plan.sizing:
            cluster.scale(plan.sizing["scale"])
        elif "jobs" in plan.sizing:
            cluster.scale(jobs=plan.sizing["jobs"])
        elif "adapt" in plan.sizing:
            cluster.adapt(**plan.sizing["adapt"])
    except (TypeError, ValueError, RuntimeError, OSError, ImportError, AttributeError) as exc:
        # A misspelt key or a bad value surfaces deep inside the cluster class (as "Cluster
        # failed to start", its cause chained below), with no hint of which file it came from.
        raise ClusterFileError(
            f"{path}: invalid settings for kind {kind!r}, the cluster did not start: {one_line(root_cause(exc))}"
        ) from exc
    return stack.enter_context(distributed.Client(cluster)), plan.timeout
