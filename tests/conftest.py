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
    #: where ``scheduler.log`` and ``worker-i.log`` are
    log_folder: Path


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


def _start_processes(folder: Path, n_workers: int, started: list[subprocess.Popen],
                     tls_args: list[str] | None = None, security=None) -> DaskProcesses:
    """A scheduler and ``n_workers`` workers, each a process logging into ``folder``
    (``scheduler.log``, ``worker-i.log``); with ``tls_args``, all on TLS."""
    # Port 0 and a scheduler file: the OS picks a free port, with no race between
    # choosing it and binding it.
    scheduler_file, scheduler_log = folder / "scheduler.json", folder / "scheduler.log"
    protocol = ["--protocol", "tls", *tls_args] if tls_args else []
    scheduler = _spawn(
        ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", *protocol,
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
        scheduler_log,
    )
    started.append(scheduler)
    address = _read_scheduler_file(scheduler_file, scheduler, scheduler_log)
    workers = []
    for i in range(n_workers):
        worker = _spawn(
            ["distributed.cli.dask_worker", address, "--host", "127.0.0.1", *(tls_args or []),
             "--name", f"worker-{i}", "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--local-directory", str(folder / f"worker-{i}")],
            folder / f"worker-{i}.log",
        )
        started.append(worker)
        workers.append(worker)
    if n_workers:
        with distributed.Client(address, security=security, timeout=STARTUP_TIMEOUT) as client:
            client.wait_for_workers(n_workers, timeout=STARTUP_TIMEOUT)
    return DaskProcesses(address=address, scheduler=scheduler, workers=workers, log_folder=folder)


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
        return _start_processes(tmp_path_factory.mktemp("dask-processes"), n_workers, started)

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
    from builders import cli, write_job

    folder = tmp_path_factory.mktemp("local-run")
    job = write_job(folder, country.labels, country.features)
    done = cli("run", job, "--out", folder / "result")
    assert done.returncode == 0, done.stderr
    return folder / "result", done


@dataclass
class TlsFiles:
    """PEM files of a private certificate authority and of certificates it signed.

    ``node`` is for the scheduler and workers, ``client`` for whoever submits work,
    ``stranger`` a self-signed pair the authority never signed.
    """

    ca: Path
    node_cert: Path
    node_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    def client_security(self) -> distributed.Security:
        return distributed.Security(require_encryption=True, tls_ca_file=str(self.ca),
                                    tls_client_cert=str(self.client_cert),
                                    tls_client_key=str(self.client_key))


def _write_key_and_cert(folder: Path, name: str, subject: str, issuer=None):
    """Write ``name.pem`` and ``name-key.pem``; signed by ``issuer`` (cert, key), else by itself."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # far faster to make than RSA
    subject_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject_name)
               .issuer_name(issuer_cert.subject if issuer_cert else subject_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True))
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert, key, cert_path, key_path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA, a node and a client certificate it signed, and a stranger's pair."""
    folder = tmp_path_factory.mktemp("tls")
    ca_cert, ca_key, ca_path, _ = _write_key_and_cert(folder, "ca", "asm-dask test CA")
    *_, node_cert, node_key = _write_key_and_cert(folder, "node", "dask-node", (ca_cert, ca_key))
    *_, client_cert, client_key = _write_key_and_cert(folder, "client", "dask-client", (ca_cert, ca_key))
    *_, stranger_cert, stranger_key = _write_key_and_cert(folder, "stranger", "stranger")
    return TlsFiles(ca_path, node_cert, node_key, client_cert, client_key, stranger_cert, stranger_key)


@pytest.fixture
def tls_dask_scheduler_with_workers(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles,
) -> Iterator[Callable[..., DaskProcesses]]:
    """Like ``dask_scheduler_with_workers``, but a TLS scheduler and workers using ``tls_files``.

    Scheduler and workers present the node certificate and accept only peers whose
    certificate the test CA signed. The returned ``address`` is ``tls://127.0.0.1:PORT``;
    each process's output is in ``scheduler.log`` and ``worker-i.log`` in its ``log_folder``.
    """
    started: list[subprocess.Popen] = []
    tls_args = ["--tls-ca-file", str(tls_files.ca), "--tls-cert", str(tls_files.node_cert),
                "--tls-key", str(tls_files.node_key)]

    def start(n_workers: int = 2) -> DaskProcesses:
        return _start_processes(tmp_path_factory.mktemp("tls-dask-processes"), n_workers, started,
                                tls_args=tls_args, security=tls_files.client_security())

    try:
        yield start
    finally:
        for process in reversed(started):
            _kill(process)
