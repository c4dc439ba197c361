"""TLS for clusters started across machines (kinds ``ssh``, ``slurm``, ``pbs``): mutual
authentication by default, since a Dask scheduler on plain TCP runs code for anyone who
can reach it. Plain TCP is only ever an explicit ``security: none`` in the cluster file.
See :func:`asm_dask.deploy.cluster_file.plan_cluster` for what ``security`` may say.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import distributed

from ..config.reading import resolve_path
from .errors import ClusterFileError, MissingExtraError, one_line

if TYPE_CHECKING:
    from .cluster_file import ClusterPlan


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

def secure(path: Path, plan: ClusterPlan, setting: Any, stack: contextlib.ExitStack) -> None:
    """Give a remote kind's ``plan`` its TLS credentials, or nothing with ``security: none``."""
    kind, arguments = plan.kind, plan.arguments
    if kind == "kubernetes":
        if setting != "none":
            raise ClusterFileError(
                f"{path}: kind 'kubernetes' cannot use TLS (the Dask operator starts its scheduler "
                f"and workers on plain TCP); add 'security: none' to accept that, see cluster/README.md")
        return
    loopback_dashboard(path, plan)
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
                f"{shared}: {one_line(exc)}") from exc


def loopback_dashboard(path: Path, plan: ClusterPlan) -> None:
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
                f"{one_line(exc)}") from exc
    return security


def scheduler_security(address: str, setting: Any, where: str) -> distributed.Security | None:
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
