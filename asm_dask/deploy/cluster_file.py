"""Cluster files: the YAML under ``cluster/`` read, checked and turned into the arguments
of a cluster class, before anything starts.

A file's ``kind`` is one of :data:`KINDS`; asm-dask reads ``worker_timeout``,
``scale``/``jobs``/``adapt`` and ``security`` itself and hands every other key to the
kind's cluster class (``LocalCluster``, ``SSHCluster``, dask-jobqueue's, the Dask
Kubernetes operator's), so that a user edits settings those projects document.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.system
import distributed
from distributed.system import MEMORY_LIMIT

from ..config.reading import read_yaml
from .errors import ClusterFileError, ClusterFileNotFoundError, MissingExtraError
from .tls import scheduler_security, secure

KINDS = ("local", "scheduler", "ssh", "slurm", "pbs", "kubernetes")

#: seconds to wait for the first worker unless a cluster file sets ``worker_timeout``
DEFAULT_WORKER_TIMEOUT = 60.0

#: kinds whose scheduler and workers run on other machines, reachable over a network
REMOTE_KINDS = ("ssh", "slurm", "pbs", "kubernetes")

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


#: address schemes of a Dask scheduler that a client can reach over a network
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss")


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
    from distributed.comm.addressing import parse_host_port

    try:
        parse_host_port(location)
    except ValueError:
        raise ClusterFileError(f"{where}: {address}: {host!r} is not a host name or address; {example}") from None
    if any(char in host for char in "/@") or (":" in host.strip("[]") and not host.startswith("[")):
        raise ClusterFileError(f"{where}: {address}: {host!r} is not a host name or address; {example}")


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
    kind, settings = read_cluster_file(path)
    return plan_from_settings(path, kind, settings, stack)


def plan_from_settings(path: Path, kind: str, settings: dict[str, Any], stack: contextlib.ExitStack) -> ClusterPlan:
    """The plan for a cluster file already read: ``kind`` and its other ``settings``."""
    _check_values(path, kind, settings)
    timeout = float(settings.pop("worker_timeout", DEFAULT_WORKER_TIMEOUT))
    if kind == "scheduler":
        if "address" not in settings or not set(settings) <= {"address", "security"}:
            raise ClusterFileError(
                f"{path}: kind 'scheduler' takes the keys 'address' and, optionally, 'security'")
        address = settings["address"]
        check_scheduler_address(address, f"{path}: address")
        security = scheduler_security(address, settings.get("security"), str(path))
        return ClusterPlan(kind, {"address": address, "security": security}, timeout=timeout)

    sizing = {key: settings.pop(key) for key in ("scale", "jobs", "adapt") if key in settings}
    if len(sizing) > 1:
        raise ClusterFileError(f"{path}: give only one of {', '.join(sizing)}")
    if "jobs" in sizing and kind not in ("slurm", "pbs"):
        raise ClusterFileError(f"{path}: 'jobs' only applies to kinds slurm and pbs")
    if kind == "local":
        _check_local_keys(path, settings)
        return ClusterPlan(kind, local_cluster_arguments(settings), sizing=sizing, timeout=timeout)
    plan = ClusterPlan(kind, settings, sizing=sizing, timeout=timeout)
    secure(path, plan, settings.pop("security", "temporary"), stack)
    return plan


def read_cluster_file(path: Path) -> tuple[str, dict[str, Any]]:
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


def local_cluster_arguments(settings: dict[str, Any]) -> dict[str, Any]:
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
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

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
        unknown = sorted(set(adapt) - _ADAPT_KEYS)
        if unknown:
            raise ClusterFileError(f"{path}: adapt: unknown key(s) {', '.join(map(str, unknown))}; known keys: "
                                   f"{', '.join(sorted(_ADAPT_KEYS))}")
    if kind == "local":
        if "processes" in settings and not isinstance(settings["processes"], bool):
            refuse("processes", "true or false")
        _check_memory_limit(path, settings)


#: what ``adapt`` takes (distributed's Adaptive)
_ADAPT_KEYS = frozenset({"minimum", "maximum", "minimum_memory", "maximum_memory", "interval", "wait_count",
                         "target_duration", "target_interval"})


#: a worker memory limit below this cannot run a task: a worker holds its libraries
#: (about 300 MB) and a group of feature columns (64 MB) plus copies, and Dask pauses it
#: at 80% of its limit
MIN_WORKER_MEMORY = 512 << 20


def _check_memory_limit(path: Path, settings: dict[str, Any]) -> None:
    """A local cluster's ``memory_limit`` as Dask reads it (``"4GB"``, a number of bytes, a
    fraction of the machine's memory up to 1, ``"auto"``; 0 or null for none), and what each
    worker gets when it is not given (the machine's memory shared among ``n_workers``): at
    least :data:`MIN_WORKER_MEMORY`."""
    from dask.utils import format_bytes, parse_bytes

    value = settings.get("memory_limit", "auto")
    if value is None or (type(value) is int and value == 0):
        return
    workers = max(int(settings.get("n_workers", dask.system.CPU_COUNT if settings.get("processes") else 1)), 1)
    try:
        if value == "auto":
            limit = MEMORY_LIMIT / workers
        elif isinstance(value, str):
            limit = parse_bytes(value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0:
            raise ValueError
        else:
            limit = value * MEMORY_LIMIT if isinstance(value, float) and value <= 1 else value
    except (ValueError, TypeError):
        raise ClusterFileError(f"{path}: memory_limit: expected a size such as '4GB', a fraction of this "
                               f"machine's memory up to 1, 'auto' or null, got {value!r}") from None
    if limit < MIN_WORKER_MEMORY:
        given = f"{value!r} is" if "memory_limit" in settings else \
            f"this machine's {format_bytes(MEMORY_LIMIT)} shared by n_workers: {workers} is {format_bytes(limit)} each,"
        raise ClusterFileError(f"{path}: memory_limit: {given} too little for a Dask worker to run a task "
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


def import_cluster_class(path: Path, kind: str) -> type:
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
