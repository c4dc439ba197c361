"""Where the workers come from: a local cluster, a running scheduler, or a cluster file.

The science code only ever sees a :class:`distributed.Client`. Everything about
starting and stopping workers lives here and in the YAML files under ``cluster/``,
so the same job file runs unchanged on a laptop, over SSH, on SLURM/PBS or on
Kubernetes.

Clusters started across machines (kinds ``ssh``, ``slurm`` and ``pbs``) use TLS with
mutual authentication by default: a Dask scheduler on plain TCP runs code for anyone
who can reach it. Plain TCP is only ever an explicit ``security: none`` in the file.

Errors are :class:`~asm_dask.errors.InputError` with a one-line message, so the
command line prints them as is; each also derives from the matching built-in
exception (``ValueError``, ``FileNotFoundError``, ``ImportError``, ``TimeoutError``).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.system
import distributed
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.system import MEMORY_LIMIT

from .config import read_yaml, resolve_path
from .errors import InputError
from .log import distributed_loggers, writes_to_console
from .storage import configure

KINDS = ("local", "scheduler", "ssh", "slurm", "pbs", "kubernetes")

#: seconds to wait for the first worker unless a cluster file sets ``worker_timeout``
DEFAULT_WORKER_TIMEOUT = 60.0

#: kinds whose scheduler and workers run on other machines, reachable over a network
REMOTE_KINDS = ("ssh", "slurm", "pbs", "kubernetes")

#: the files a cluster file's ``security`` mapping names (distributed.Security's
#: names); ``tls_cert`` and ``tls_key`` stand for every role not named on its own
TLS_FILE_KEYS = ("tls_ca_file", "tls_cert", "tls_key", "tls_client_cert", "tls_client_key",
                 "tls_scheduler_cert", "tls_scheduler_key", "tls_worker_cert", "tls_worker_key")

#: where SLURM and PBS workers find temporary credentials, unless the cluster file
#: names a ``shared_temp_directory``; it must be on a filesystem the compute nodes share
DEFAULT_SHARED_TEMP_DIRECTORY = "~/.asm-dask/tls"

#: scheduler dashboard of the remote kinds unless the file says otherwise: loopback
#: only, reached through ``ssh -L 8787:localhost:8787 HOST``
LOOPBACK_DASHBOARD = "127.0.0.1:8787"

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


@dataclass
class ClusterPlan:
    """What :func:`open_client` does with a cluster file, worked out before anything starts.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    arguments : dict
        Keyword arguments of the kind's cluster class; for kind ``scheduler``,
        ``address`` and ``security`` (a :class:`distributed.Security` or ``None``).
    config : dict
        Dask settings in force while the cluster runs. SSHCluster hands Dask's whole
        configuration to every host, so this is how its scheduler and workers get
        their TLS credentials.
    sizing : dict
        At most one of ``scale``, ``jobs`` and ``adapt``.
    timeout : float
        Seconds to wait for the first worker.
    """

    kind: str
    arguments: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    sizing: dict[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULT_WORKER_TIMEOUT


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
        running on exit. A ``tls://`` address takes its certificates from Dask's
        configuration (``distributed.comm.tls``); to name them, use a cluster file
        of kind ``scheduler`` instead.
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
    Only clusters started here are shut down on exit. See :func:`plan_cluster` for
    what a cluster file's ``security`` does.
    """
    if cluster_file is not None and scheduler is not None:
        raise ClusterFileError("give either a cluster file or a scheduler address, not both")
    with contextlib.ExitStack() as stack:
        timeout = DEFAULT_WORKER_TIMEOUT
        if scheduler is not None:
            check_scheduler_address(scheduler, "--scheduler")
            client = _connect(scheduler, _scheduler_security(scheduler, None, "--scheduler"), stack)
        elif cluster_file is not None:
            client, timeout = _open_from_file(Path(cluster_file), stack)
        else:
            cluster = stack.enter_context(distributed.LocalCluster(**_local_kwargs({})))
            client = stack.enter_context(distributed.Client(cluster))
        in_process = isinstance(client.cluster, distributed.LocalCluster) and not client.cluster.processes
        if client.cluster is not None and not in_process:
            _forward_worker_logs(client)
        if in_process:
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


def _forward_worker_logs(client: distributed.Client) -> None:
    """Have the workers of a cluster started here send ``distributed``'s log records to
    this process, where they are handled as its own (into asm-dask.log, see
    :mod:`asm_dask.log`), instead of printing them on their stderr: this console for a
    local cluster's worker processes, a batch job's file for SLURM and PBS."""
    client.register_plugin(_NoWorkerStderr(), name="asm-dask-no-worker-stderr")
    client.forward_logging("distributed")


class _NoWorkerStderr(WorkerPlugin):
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


def share_storage_options(client: distributed.Client, storage_options: dict[str, dict[str, Any]]) -> None:
    """:func:`asm_dask.storage.configure` on this process and on every worker of
    ``client``'s cluster, present and joining later.

    The options travel to the workers as any task does: over TLS on clusters asm-dask
    starts across machines; on a plain-TCP cluster prefer credentials the workers find
    themselves (environment variables, instance roles).
    """
    configure(storage_options)
    if storage_options:
        client.register_plugin(_StorageOptions(storage_options), name="asm-dask-storage-options")


class _StorageOptions(WorkerPlugin):
    """In a worker: the job's ``storage_options`` as fsspec's defaults."""

    def __init__(self, storage_options: dict[str, dict[str, Any]]):
        self.storage_options = storage_options

    def setup(self, worker: distributed.Worker) -> None:
        configure(self.storage_options)


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


#: address schemes of a Dask scheduler that a client can reach over a network
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def check_scheduler_address(address: Any, where: str) -> None:
    """Refuse, in one line naming ``where``, what cannot be a scheduler's address: text
    without a scheme, a web address (the dashboard's is a common slip), no host or port."""
    example = "expected like tcp://HOST:8786"
    if not isinstance(address, str) or "://" not in address:
        raise ClusterFileError(f"{where}: {address!r} is not a Dask scheduler address; {example}")
    scheme, location = address.split("://", 1)
    if scheme in ("http", "https"):
        raise ClusterFileError(f"{where}: {address} is a web address (the dashboard's?); the scheduler "
                               f"listens on another port, {example}")
    if scheme not in SCHEDULER_SCHEMES:
        raise ClusterFileError(f"{where}: {address}: unknown scheme {scheme!r} (one of "
                               f"{', '.join(SCHEDULER_SCHEMES)}); {example}")
    host, _, port = location.rpartition(":")
    if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterFileError(f"{where}: {address}: no host and port number (1 to 65535); {example}")


def _connect(address: str, security: distributed.Security | None,
             stack: contextlib.ExitStack) -> distributed.Client:
    """Connect to a scheduler someone else runs; closing the client leaves it running."""
    try:
        return stack.enter_context(distributed.Client(address, security=security))
    except OSError as exc:
        # A TLS scheduler that refuses our certificate lands here too.
        raise ClusterTimeoutError(
            f"cannot reach the Dask scheduler at {address}: {_one_line(exc)}"
        ) from exc


def _open_from_file(path: Path, stack: contextlib.ExitStack) -> tuple[distributed.Client, float]:
    """Start or connect to the cluster ``path`` describes; register its cleanup on ``stack``."""
    kind, settings = _read_cluster_file(path)
    # A missing optional package is named before any other complaint about the file.
    cluster_class = (distributed.LocalCluster if kind in ("local", "scheduler")
                     else _import_cluster_class(path, kind))
    plan = _plan(path, kind, settings, stack)
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
            f"{path}: invalid settings for kind {kind!r}, the cluster did not start: {_one_line(_root_cause(exc))}"
        ) from exc
    return stack.enter_context(distributed.Client(cluster)), plan.timeout


def plan_cluster(path: str | os.PathLike[str], stack: contextlib.ExitStack) -> ClusterPlan:
    """Read and check a cluster file, and work out its cluster's arguments and credentials.

    Parameters
    ----------
    path : str or os.PathLike
        The cluster file.
    stack : contextlib.ExitStack
        Receives the removal of any credential files written for the workers.

    Returns
    -------
    ClusterPlan
        What :func:`open_client` passes to the cluster class, nothing started yet.

    Raises
    ------
    ClusterFileError, ClusterFileNotFoundError, MissingExtraError
        As :func:`open_client`.

    Notes
    -----
    The ``security`` key of a cluster file, for kinds ``ssh``, ``slurm``, ``pbs``,
    ``kubernetes`` and ``scheduler``:

    - absent, or ``temporary`` (kinds ssh, slurm, pbs): TLS with mutual
      authentication, from a self-signed certificate and key made for this run
      (:meth:`distributed.Security.temporary`, which needs ``cryptography``). SSH
      hosts get them through Dask's configuration; SLURM and PBS workers read them
      from files only the user can read, in a new folder under
      ``shared_temp_directory`` (default :data:`DEFAULT_SHARED_TEMP_DIRECTORY`),
      removed when the run ends.
    - a mapping of :data:`TLS_FILE_KEYS` to PEM files: TLS with those certificates.
    - ``none``: plain TCP, which lets anyone who can reach the scheduler run code as
      the user running the workers. Kind ``kubernetes`` requires it, since the Dask
      operator starts plain-TCP clusters.
    """
    path = Path(path)
    kind, settings = _read_cluster_file(path)
    return _plan(path, kind, settings, stack)


def _plan(path: Path, kind: str, settings: dict[str, Any], stack: contextlib.ExitStack) -> ClusterPlan:
    """The plan for a cluster file already read: ``kind`` and its other ``settings``."""
    _check_values(path, kind, settings)
    timeout = float(settings.pop("worker_timeout", DEFAULT_WORKER_TIMEOUT))
    if kind == "scheduler":
        if "address" not in settings or not set(settings) <= {"address", "security"}:
            raise ClusterFileError(
                f"{path}: kind 'scheduler' takes the keys 'address' and, optionally, 'security'")
        address = settings["address"]
        check_scheduler_address(address, f"{path}: address")
        security = _scheduler_security(address, settings.get("security"), str(path))
        return ClusterPlan(kind, {"address": address, "security": security}, timeout=timeout)

    sizing = {key: settings.pop(key) for key in ("scale", "jobs", "adapt") if key in settings}
    if len(sizing) > 1:
        raise ClusterFileError(f"{path}: give only one of {', '.join(sizing)}")
    if "jobs" in sizing and kind not in ("slurm", "pbs"):
        raise ClusterFileError(f"{path}: 'jobs' only applies to kinds slurm and pbs")
    if kind == "local":
        _check_local_keys(path, settings)
        return ClusterPlan(kind, _local_kwargs(settings), sizing=sizing, timeout=timeout)
    plan = ClusterPlan(kind, settings, sizing=sizing, timeout=timeout)
    _secure(path, plan, settings.pop("security", "temporary"), stack)
    return plan


def _secure(path: Path, plan: ClusterPlan, setting: Any, stack: contextlib.ExitStack) -> None:
    """Give a remote kind's ``plan`` its TLS credentials, or nothing with ``security: none``."""
    kind, arguments = plan.kind, plan.arguments
    if kind == "kubernetes":
        if setting != "none":
            raise ClusterFileError(
                f"{path}: kind 'kubernetes' cannot use TLS (the Dask operator starts its scheduler "
                f"and workers on plain TCP); add 'security: none' to accept that, see cluster/README.md")
        return
    _loopback_dashboard(path, plan)
    shared = arguments.pop("shared_temp_directory", DEFAULT_SHARED_TEMP_DIRECTORY) \
        if kind in ("slurm", "pbs") else None
    if setting == "none":
        return
    _check_protocols(path, arguments, kind)
    if setting == "temporary":
        security = _temporary_security(path)
    elif isinstance(setting, dict):
        # SLURM and PBS run the scheduler here and read the workers' files from the
        # shared filesystem; SSH hosts read theirs on the hosts.
        here = ("client",) if kind == "ssh" else ("client", "scheduler", "worker")
        security = _security_from_files(path, setting, ("client", "scheduler", "worker"), here)
    else:
        raise ClusterFileError(
            f"{path}: 'security' must be 'temporary', 'none' or a mapping of certificate files, "
            f"not {setting!r}")
    arguments["security"] = security
    if kind == "ssh":
        arguments["scheduler_options"].setdefault("protocol", "tls")
        plan.config.update(_remote_config(security))
    elif setting == "temporary":
        # Left to itself, dask-jobqueue writes them to the working folder and removes
        # them only when the cluster object is garbage collected.
        shared = Path(resolve_path(shared, path.parent))
        try:
            arguments["security"] = _write_worker_credentials(security, shared, stack)
        except OSError as exc:
            raise ClusterFileError(
                f"{path}: cannot write the workers' TLS credentials under shared_temp_directory "
                f"{shared}: {_one_line(exc)}") from exc


def _loopback_dashboard(path: Path, plan: ClusterPlan) -> None:
    """Put the scheduler's dashboard on loopback unless the file places it elsewhere.

    Dask's default listens on every interface, where anyone on the network sees
    the tasks and worker logs; ``ssh -L`` reaches it on loopback.
    """
    options = plan.arguments.get("scheduler_options") or {}
    if not isinstance(options, dict):
        raise ClusterFileError(f"{path}: 'scheduler_options' must be a mapping")
    options = plan.arguments["scheduler_options"] = {"dashboard_address": LOOPBACK_DASHBOARD, **options}
    if str(options["dashboard_address"]).rsplit(":", 1)[0] in ("127.0.0.1", "localhost"):
        # The default link names the host's network address, where nothing listens.
        plan.config["distributed.dashboard.link"] = "{scheme}://127.0.0.1:{port}/status"


def _check_protocols(path: Path, arguments: dict[str, Any], kind: str) -> None:
    """Refuse a plain-TCP ``protocol`` next to TLS credentials: it needs ``security: none``."""
    if kind == "ssh":
        protocols = [options.get("protocol") for options in
                     (arguments["scheduler_options"], arguments.get("worker_options"))
                     if isinstance(options, dict)]
    else:
        protocols = [arguments.get("protocol"), arguments["scheduler_options"].get("protocol")]
    for protocol in protocols:
        if protocol is not None and not str(protocol).startswith("tls"):
            raise ClusterFileError(
                f"{path}: protocol {protocol!r} is not TLS; plain TCP needs 'security: none'")


def _temporary_security(path: Path) -> distributed.Security:
    """A self-signed certificate and key, in memory, for every role of one run's cluster."""
    try:
        return distributed.Security.temporary()
    except ImportError:
        raise MissingExtraError(
            f"{path}: TLS credentials made for the run need cryptography; install it with: "
            f"pip install cryptography (or name certificate files under 'security')"
        ) from None


def _security_from_files(path: Path, files: dict[str, Any], roles: tuple[str, ...],
                         here: tuple[str, ...]) -> distributed.Security:
    """TLS with the certificate files a cluster file names.

    Parameters
    ----------
    path : Path
        The cluster file; relative file names resolve against its folder.
    files : dict
        Its ``security`` mapping, keys from :data:`TLS_FILE_KEYS`.
    roles : tuple of str
        Roles (``client``, ``scheduler``, ``worker``) that need a certificate and key.
    here : tuple of str
        Roles whose files this machine reads: checked now, so a wrong path is a
        one-line error rather than a failed handshake later.
    """
    unknown = sorted(set(files) - set(TLS_FILE_KEYS))
    if unknown:
        raise ClusterFileError(
            f"{path}: unknown key(s) under 'security': {', '.join(map(str, unknown))}; "
            f"expected {', '.join(TLS_FILE_KEYS)}")
    named = {key: resolve_path(value, path.parent) for key, value in files.items()}
    fields = {"tls_ca_file": named.get("tls_ca_file")}
    for role in roles:
        for part in ("cert", "key"):
            fields[f"tls_{role}_{part}"] = named.get(f"tls_{role}_{part}", named.get(f"tls_{part}"))
    missing = [key for key, value in fields.items() if value is None]
    if missing:
        raise ClusterFileError(
            f"{path}: 'security' must name {', '.join(missing)} (tls_cert and tls_key stand "
            f"for every role)")
    local = ["tls_ca_file"] + [f"tls_{role}_{part}" for role in here for part in ("cert", "key")]
    for key in local:
        if not Path(fields[key]).is_file():
            raise ClusterFileError(f"{path}: security: {key} {fields[key]}: file not found")
    security = distributed.Security(require_encryption=True, **fields)
    for role in here:
        try:
            security.get_connection_args(role)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ClusterFileError(
                f"{path}: security: cannot load the CA file and {role} certificate and key: "
                f"{_one_line(exc)}") from exc
    return security


def _scheduler_security(address: str, setting: Any, where: str) -> distributed.Security | None:
    """Credentials for a running scheduler at ``address``, from a cluster file or Dask's config.

    ``setting`` is the ``security`` value of a cluster file of kind ``scheduler``
    (``where`` is its path), or ``None`` for ``--scheduler`` or no such key.
    """
    tls = address.startswith("tls://")
    if isinstance(setting, dict):
        if not tls:
            raise ClusterFileError(
                f"{where}: 'security' names certificates, but {address} is not a tls:// address")
        return _security_from_files(Path(where), setting, ("client",), ("client",))
    if setting not in (None, "none"):
        raise ClusterFileError(
            f"{where}: kind 'scheduler' takes 'security' as a mapping of certificate files or "
            f"'none', not {setting!r}")
    if not tls:
        return None
    if setting is None:
        # Dask's own configuration (~/.config/dask, DASK_DISTRIBUTED__COMM__TLS__...) may name them.
        configured = distributed.Security()
        if configured.tls_ca_file and configured.tls_client_cert:
            return configured
    raise ClusterFileError(
        f"{where}: {address} is a TLS scheduler and no certificates are named: give its CA file "
        f"and your client certificate and key under 'security' in a cluster file of kind "
        f"'scheduler' (see cluster/scheduler.yaml)")


def _remote_config(security: distributed.Security) -> dict[str, Any]:
    """Dask settings that make a process started elsewhere a TLS scheduler or worker.

    SSHCluster starts every remote process with this machine's Dask configuration;
    credentials in memory travel inside it, file names are read on the host.
    """
    return {"distributed.comm.require-encryption": True,
            "distributed.comm.tls.ca-file": security.tls_ca_file,
            "distributed.comm.tls.scheduler.cert": security.tls_scheduler_cert,
            "distributed.comm.tls.scheduler.key": security.tls_scheduler_key,
            "distributed.comm.tls.worker.cert": security.tls_worker_cert,
            "distributed.comm.tls.worker.key": security.tls_worker_key}


def _write_worker_credentials(security: distributed.Security, shared: Path,
                              stack: contextlib.ExitStack) -> distributed.Security:
    """``security`` with the workers' CA, certificate and key in files only the user can read.

    Batch jobs can only be handed file names. The files go into a new folder (mode
    0700) under ``shared``, which the compute nodes must see under the same name; the
    folder is removed when ``stack`` closes, after the cluster.
    """
    shared.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="asm-dask-tls-", dir=shared))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    written = copy.copy(security)
    for attribute, name in (("tls_ca_file", "ca.pem"), ("tls_worker_cert", "worker.pem"),
                            ("tls_worker_key", "worker-key.pem")):
        target = folder / name
        # O_EXCL: never write into a file someone else placed there.
        with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(getattr(security, attribute))
        setattr(written, attribute, str(target))
    return written


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


def _check_values(path: Path, kind: str, settings: dict[str, Any]) -> None:
    """Refuse, before anything starts, values of the settings asm-dask reads itself (and of
    a local cluster's) that cannot work: a negative count, a timeout that is not a number,
    a worker memory limit too small for any task. The cluster classes check the rest."""
    def refuse(key: str, expected: str) -> None:
        raise ClusterFileError(f"{path}: {key}: expected {expected}, got {settings[key]!r}")

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if "worker_timeout" in settings and not (number(settings["worker_timeout"]) and settings["worker_timeout"] > 0):
        refuse("worker_timeout", "a number of seconds > 0")
    counts = ("scale", "jobs") + (("n_workers", "threads_per_worker") if kind == "local" else ())
    for key in counts:
        if key in settings:
            # No worker at the start is fine where scale or adapt adds them.
            least = 0 if key == "n_workers" and ("scale" in settings or "adapt" in settings) else 1
            if not (number(settings[key]) and settings[key] == int(settings[key]) >= least):
                refuse(key, f"an integer >= {least}" + (" (or 0 with scale or adapt)" if least else ""))
            settings[key] = int(settings[key])  # 2.0 is 2
    if "adapt" in settings:
        adapt = settings["adapt"]
        bounds = [adapt.get(key, 0) for key in ("minimum", "maximum")] if isinstance(adapt, dict) else [None]
        if not all(number(b) and b == int(b) >= 0 for b in bounds) or \
                ("maximum" in adapt and adapt.get("minimum", 0) > adapt["maximum"]):
            refuse("adapt", "a mapping with whole numbers minimum <= maximum")
    if kind == "local":
        if "processes" in settings and not isinstance(settings["processes"], bool):
            refuse("processes", "true or false")
        if "memory_limit" in settings:
            _check_memory_limit(path, settings["memory_limit"])


#: a worker memory limit below this cannot run a task: a worker holds its libraries
#: (about 300 MB) and a group of feature columns (64 MB) plus copies, and Dask pauses it
#: at 80% of its limit
MIN_WORKER_MEMORY = 512 << 20


def _check_memory_limit(path: Path, value: Any) -> None:
    """``memory_limit`` as Dask reads it (``"4GB"``, a number of bytes, ``"auto"``; 0 or
    null for none), and not below :data:`MIN_WORKER_MEMORY`."""
    from dask.utils import format_bytes, parse_bytes

    if value is None or value == "auto" or (type(value) is int and value == 0):
        return
    try:
        limit = parse_bytes(value) if isinstance(value, str) else value
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
            raise ValueError
    except (ValueError, TypeError):
        raise ClusterFileError(f"{path}: memory_limit: expected a size such as '4GB', 'auto' or null, "
                               f"got {value!r}") from None
    if limit < MIN_WORKER_MEMORY:
        raise ClusterFileError(f"{path}: memory_limit: {value!r} is too little for a Dask worker to run a task "
                               f"(at least {format_bytes(MIN_WORKER_MEMORY)}; a worker with its libraries "
                               "loaded holds about 300 MB, and Dask pauses it at 80% of its limit)")


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


def _root_cause(exc: BaseException) -> BaseException:
    """The first exception of the chain that led to ``exc``."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__
    return exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
