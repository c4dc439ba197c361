"""open_client and describe against real scheduler and worker processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import dask
import dask.system
import distributed
import psutil
import pytest
import yaml
from builders import cli, write_job
from distributed.system import MEMORY_LIMIT

from asm_dask.deploy import open_client, plan_cluster
from asm_dask.deploy.tls import LOOPBACK_DASHBOARD
from asm_dask.errors import InputError
from asm_dask.records.manifest import describe_cluster as describe


def _write(tmp_path, settings):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _accepts_connections(address):
    url = urlparse(address)
    try:
        socket.create_connection((url.hostname, url.port), timeout=2).close()
    except OSError:
        return False
    return True


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_default_is_an_in_process_local_cluster_sized_to_the_machine():
    said, library = _Records(), logging.getLogger("asm_dask")
    library.addHandler(said)
    library.setLevel(logging.INFO)
    with open_client() as client:
        cluster = client.cluster
        info = describe(client)
        assert client.submit(os.getpid, pure=False).result() == os.getpid()  # threads, here
        link = client.dashboard_link
        assert _accepts_connections(link)
    assert (info["n_workers"], info["threads"]) == (1, dask.system.CPU_COUNT)
    assert info["memory_bytes"] == MEMORY_LIMIT
    assert info["scheduler"].startswith("inproc://")
    library.removeHandler(said)
    assert f"Dask dashboard: {link}" in said.messages  # said through logging, which a notebook sets up
    assert link.startswith("http://127.0.0.1:")
    assert cluster.status.name == "closed" and not _accepts_connections(link)


def test_worker_processes_on_request_and_shut_down_after(tmp_path):
    path = _write(tmp_path, {"kind": "local", "processes": True})
    with open_client(path) as client:
        assert client.submit(os.getpid, pure=False).result() != os.getpid()
        info = describe(client)
        worker_pids = list(client.run(os.getpid).values())
    assert info["n_workers"] == dask.system.CPU_COUNT and info["threads"] == info["n_workers"]
    assert 0 <= MEMORY_LIMIT - info["memory_bytes"] < info["n_workers"]  # integer division
    assert info["scheduler"].startswith("tcp://127.0.0.1:")
    assert not _accepts_connections(info["scheduler"])
    assert all(_gone(pid) for pid in worker_pids)


def test_existing_scheduler_is_used_and_left_running(dask_scheduler_with_workers, tmp_path):
    procs = dask_scheduler_with_workers(n_workers=2)
    scheduler_file = _write(tmp_path, {"kind": "scheduler", "address": procs.address})
    for kwargs in ({"scheduler": procs.address}, {"cluster_file": scheduler_file}):
        with open_client(**kwargs) as client:
            info = describe(client)
            pids = set(client.run(os.getpid).values())
        assert (info["scheduler"], info["n_workers"], info["threads"]) == (procs.address, 2, 2)
        assert pids == {worker.pid for worker in procs.workers}
        assert procs.scheduler.poll() is None
        with distributed.Client(procs.address, timeout=10) as client:
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2


def test_local_cluster_file(tmp_path):
    path = _write(tmp_path, {"kind": "local", "n_workers": 1, "processes": True})
    with open_client(path) as client:
        assert client.submit(os.getpid, pure=False).result() != os.getpid()
        info = describe(client)
    assert (info["n_workers"], info["threads"]) == (1, 1)
    assert info["memory_bytes"] == MEMORY_LIMIT


def test_scale_key_adds_workers(tmp_path):
    path = _write(tmp_path, {"kind": "local", "n_workers": 0, "scale": 1})
    with open_client(path) as client:
        assert describe(client)["n_workers"] == 1


def test_no_worker_gives_a_timeout_naming_the_scheduler(tmp_path, dask_scheduler_with_workers):
    procs = dask_scheduler_with_workers(n_workers=0)
    path = _write(tmp_path, {"kind": "scheduler", "address": procs.address, "worker_timeout": 0.5})
    expected = r"^no Dask worker joined the scheduler at tcp://127\.0\.0\.1:\d+ within 0\.5 s$"
    with pytest.raises(TimeoutError, match=expected) as error:
        with open_client(path):
            pass
    assert isinstance(error.value, InputError)


@pytest.mark.parametrize(("address", "message"), [
    ("not a url", "'not a url' is not a Dask scheduler address; expected like tcp://HOST:8786"),
    ("http://127.0.0.1:8787", r"http://127\.0\.0\.1:8787 is a web address \(the dashboard's\?\)"),
    ("tcp://127.0.0.1", r"tcp://127\.0\.0\.1: no host and port number"),
    ("tcp://:8786", "no host and port number"),
    ("tcp://127.0.0.1:99999", "no host and port number"),
    ("gopher://127.0.0.1:70", "unknown scheme 'gopher'"),
])
def test_a_scheduler_address_that_cannot_be_one_is_named(address, message):
    with pytest.raises(InputError, match=f"^--scheduler: .*{message}"):
        with open_client(scheduler=address):
            pass


def test_a_cluster_whose_workers_all_pause_stops_the_wait_instead_of_hanging(monkeypatch):
    """Workers pause when their memory is over 80% of their limit, and a paused worker
    takes no task: a wait on such a cluster would last forever."""
    from asm_dask.runtime import progress

    monkeypatch.setattr(progress, "STALL_S", 2.0)
    monkeypatch.setattr(progress, "CHECK_EVERY_S", 0.5)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit="1KB",
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(1)
        deadline = time.monotonic() + 10
        while client.scheduler_info()["workers"] and time.monotonic() < deadline and any(
                w["status"] != "paused" for w in client.scheduler_info()["workers"].values()):
            time.sleep(0.1)
        futures = [client.submit(sum, [i, 1], pure=False) for i in range(3)]
        started = time.monotonic()
        with pytest.raises(progress.ClusterStalledError, match=r"^every Dask worker has been paused for 2 s: "
                                                               r"out of memory \(memory limit 0\.98 kiB per worker\)"):
            progress.wait_with_progress(client, futures, "tasks")
        assert time.monotonic() - started < 10


def test_unreachable_scheduler(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(TimeoutError, match=f"^cannot reach the Dask scheduler at {address}: "):
            with open_client(scheduler=address):
                pass


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "yarn"},
         "unknown kind 'yarn'; expected one of local, scheduler, ssh, slurm, pbs, kubernetes"),
        ({"n_workers": 1}, "expected a mapping with a 'kind' key"),
        ({"kind": "local", "n_wrokers": 1}, r"unknown key\(s\) for kind 'local': n_wrokers"),
        ({"kind": "local", "memory_limit": "lots"}, "memory_limit: expected a size such as '4GB', a fraction of this machine's memory up to 1, 'auto' or null, got 'lots'"),
        ({"kind": "local", "jobs": 2}, "'jobs' only applies to kinds slurm and pbs"),
        ({"kind": "local", "scale": 1, "adapt": {"maximum": 2}}, "give only one of scale, adapt"),
        ({"kind": "scheduler", "address": "tcp://127.0.0.1:8786", "port": 1},
         "kind 'scheduler' takes the keys 'address' and, optionally, 'security'"),
        # values that cannot work, refused before anything starts (a worker of 1 KB pauses forever)
        ({"kind": "local", "memory_limit": "1KB"}, "memory_limit: '1KB' is too little for a Dask worker"),
        ({"kind": "local", "memory_limit": True}, "memory_limit: expected a size"),
        ({"kind": "local", "n_workers": -1}, r"n_workers: expected an integer >= 1 \(or 0 with scale or adapt\)"),
        ({"kind": "local", "n_workers": 0}, "n_workers: expected an integer >= 1"),
        ({"kind": "local", "n_workers": 1.5}, "n_workers: expected an integer >= 1"),
        ({"kind": "local", "threads_per_worker": 0}, "threads_per_worker: expected an integer >= 1"),
        ({"kind": "local", "processes": "yes"}, "processes: expected true or false, got 'yes'"),
        ({"kind": "local", "worker_timeout": "abc"}, "worker_timeout: expected a number of seconds > 0"),
        ({"kind": "scheduler", "address": "tcp://127.0.0.1:8786", "worker_timeout": -1},
         "worker_timeout: expected a number of seconds > 0"),
        ({"kind": "local", "scale": 0}, "scale: expected an integer >= 1"),
        ({"kind": "local", "adapt": {"minimum": 3, "maximum": 1}}, "adapt: expected a mapping with whole numbers"),
        ({"kind": "local", "adapt": "lots"}, "adapt: expected a mapping"),
        ({"kind": "local", "protocol": "foo"},
         "invalid settings for kind 'local', the cluster did not start: unknown address scheme 'foo'"),
        # addresses that cannot be a scheduler's
        ({"kind": "scheduler", "address": "tcp://127.0.0.1"}, "address: tcp://127.0.0.1: no host and port number"),
        ({"kind": "scheduler", "address": "http://127.0.0.1:8787"}, "address: http://127.0.0.1:8787 is a web address"),
        ({"kind": "scheduler", "address": 8786}, "address: 8786 is not a Dask scheduler address"),
    ],
)
def test_bad_cluster_file_names_file_and_problem(tmp_path, settings, message):
    path = _write(tmp_path, settings)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}") as error:
        with open_client(path):
            pass
    assert isinstance(error.value, InputError)
    assert "\n" not in str(error.value)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("kind: local\n  n_workers: [1\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: not valid YAML \\([^\n]+\\)$"):
        with open_client(path):
            pass


def test_missing_cluster_file(tmp_path):
    path = tmp_path / "nope.yaml"
    expected = f"^{re.escape(str(path))}: cluster file not found$"
    with pytest.raises(FileNotFoundError, match=expected):
        with open_client(path):
            pass


def test_scheduler_and_cluster_file_together(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        with open_client(tmp_path / "c.yaml", scheduler="tcp://127.0.0.1:8786"):
            pass


@pytest.mark.parametrize(
    ("kind", "module", "extra"),
    [("slurm", "dask_jobqueue", "jobqueue"), ("pbs", "dask_jobqueue", "jobqueue"),
     ("kubernetes", "dask_kubernetes", "kubernetes"), ("ssh", "asyncssh", "ssh")],
)
def test_missing_optional_package_names_the_extra(tmp_path, kind, module, extra):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    path = _write(tmp_path, {"kind": kind})
    expected = rf'^{re.escape(str(path))}: .*pip install "asm_dask\[{extra}\]"$'
    with pytest.raises(ImportError, match=expected):
        with open_client(path):
            pass


def test_fixture_worker_processes_can_be_killed(dask_scheduler_with_workers):
    # The end-to-end tests rely on this: SIGKILL on workers[i] loses that worker for good.
    procs = dask_scheduler_with_workers(n_workers=2)
    procs.workers[0].kill()
    procs.workers[0].wait()
    with distributed.Client(procs.address, timeout=10) as client:
        client.wait_for_workers(1, timeout=10)
        deadline = time.monotonic() + 10
        while len(client.scheduler_info(n_workers=-1)["workers"]) != 1:
            assert time.monotonic() < deadline, "killed worker still registered"
            time.sleep(0.1)
        (name,) = [w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    assert name == "worker-1"


# --- TLS: only the cluster's own workers and clients get in ----------------------


def _wait_for_line(log, text, process=None, timeout=30.0):
    """The first line of the file ``log`` containing ``text``, once a process has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            if text in line:
                return line
        assert process is None or process.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {log}:\n{log.read_text()}")


def _client_file(tmp_path, address, tls_files, cert=None, key=None):
    return _write(tmp_path, {"kind": "scheduler", "address": address, "security": {
        "tls_ca_file": str(tls_files.ca), "tls_client_cert": str(cert or tls_files.client_cert),
        "tls_client_key": str(key or tls_files.client_key)}})


def test_tls_scheduler_runs_the_job_and_refuses_everyone_else(tls_dask_scheduler_with_workers, tls_files,
                                                               country, tmp_path):
    procs = tls_dask_scheduler_with_workers(n_workers=2)
    assert procs.address.startswith("tls://127.0.0.1:")
    scheduler_log = procs.log_folder / "scheduler.log"

    # The whole job, through the TLS scheduler and its two worker processes.
    job = write_job(tmp_path, country.labels, country.features)
    done = cli("run", job, "--out", tmp_path / "out", "--cluster",
                    _client_file(tmp_path, procs.address, tls_files))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_cells"] == country.n_cells

    # Plain TCP to the same port: the scheduler sees no TLS handshake and hangs up.
    plain = procs.address.replace("tls://", "tcp://")
    with pytest.raises(TimeoutError, match=f"^cannot reach the Dask scheduler at {plain}: .*reset by peer"):
        with open_client(scheduler=plain):
            pass
    assert "[SSL: WRONG_VERSION_NUMBER]" in _wait_for_line(scheduler_log, "WRONG_VERSION_NUMBER")

    # TLS that trusts the scheduler but shows no certificate of its own.
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    context.check_hostname = False  # the test CA names no host, as Dask's own setup
    url = urlparse(procs.address)
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            with pytest.raises(ssl.SSLError, match="TLSV13_ALERT_CERTIFICATE_REQUIRED"):
                tls.recv(1)
    _wait_for_line(scheduler_log, "PEER_DID_NOT_RETURN_A_CERTIFICATE")

    # A certificate the cluster's CA never signed.
    stranger = _client_file(tmp_path, procs.address, tls_files, tls_files.stranger_cert, tls_files.stranger_key)
    with pytest.raises(TimeoutError, match=f"^cannot reach the Dask scheduler at {procs.address}: "):
        with open_client(stranger):
            pass
    assert "certificate verify failed" in _wait_for_line(scheduler_log, "CERTIFICATE_VERIFY_FAILED")

    # None of that disturbed the cluster.
    with distributed.Client(procs.address, security=tls_files.client_security(), timeout=10) as client:
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2


def test_tls_address_without_certificates_is_a_one_line_error(tmp_path, country):
    address = f"tls://127.0.0.1:{_free_port()}"
    expected = (f"--scheduler: {address} is a TLS scheduler and no certificates are named: give its CA file "
                f"and your client certificate and key under 'security' in a cluster file of kind 'scheduler' "
                f"(see cluster/scheduler.yaml)")
    with pytest.raises(ValueError) as error:
        with open_client(scheduler=address):
            pass
    assert str(error.value) == expected and isinstance(error.value, InputError)
    job = write_job(tmp_path, country.labels, country.features)
    done = cli("run", job, "--scheduler", address, timeout=60)
    log = tmp_path / "out" / "asm-dask.log"
    assert (done.returncode, done.stderr) == (2, f"asm-dask: error: {expected} (details: {log})\n")
    assert os.listdir(tmp_path / "out") == ["asm-dask.log"]

    path = _write(tmp_path, {"kind": "scheduler", "address": address})
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {address} is a TLS scheduler and no certif"):
        with open_client(path):
            pass


def test_tls_scheduler_certificates_from_dasks_own_configuration(tls_dask_scheduler_with_workers, tls_files):
    procs = tls_dask_scheduler_with_workers(n_workers=1)
    with dask.config.set({"distributed.comm.tls.ca-file": str(tls_files.ca),
                          "distributed.comm.tls.client.cert": str(tls_files.client_cert),
                          "distributed.comm.tls.client.key": str(tls_files.client_key)}):
        with open_client(scheduler=procs.address) as client:
            assert describe(client)["n_workers"] == 1


def _credentials_in_memory(security):
    return all("BEGIN CERTIFICATE" in getattr(security, f"tls_{name}")
               for name in ("ca_file", "client_cert", "scheduler_cert", "worker_cert"))


@pytest.mark.parametrize("kind", ["ssh", "slurm", "pbs"])
def test_clusters_across_machines_use_tls_by_default(tmp_path, kind):
    settings = {"kind": kind, "hosts": ["a", "b"]} if kind == "ssh" else \
        {"kind": kind, "cores": 1, "memory": "1GB", "shared_temp_directory": str(tmp_path / "shared")}
    with contextlib.ExitStack() as stack:
        plan = plan_cluster(_write(tmp_path, settings), stack)
        security = plan.arguments["security"]
        assert security.require_encryption
        assert plan.arguments["scheduler_options"]["dashboard_address"] == LOOPBACK_DASHBOARD
        if kind == "ssh":
            # The hosts get the credentials with the rest of Dask's configuration.
            assert _credentials_in_memory(security)
            assert plan.arguments["scheduler_options"]["protocol"] == "tls"
            assert plan.config["distributed.comm.require-encryption"] is True
            assert plan.config["distributed.comm.tls.worker.key"] == security.tls_worker_key
        else:
            # Batch jobs get file names, in a folder only this user can open.
            assert "protocol" not in plan.arguments  # dask-jobqueue makes it tls:// itself
            assert "BEGIN CERTIFICATE" in security.tls_client_cert + security.tls_scheduler_cert
            files = [Path(security.tls_ca_file), Path(security.tls_worker_cert), Path(security.tls_worker_key)]
            (folder,) = {f.parent for f in files}
            assert folder.parent == tmp_path / "shared"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
            assert "PRIVATE KEY" in files[2].read_text()
    if kind != "ssh":
        assert not folder.exists()  # removed with the run


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "ssh", "hosts": ["a"], "scheduler_options": {"protocol": "tcp"}},
         "protocol 'tcp' is not TLS; plain TCP needs 'security: none'"),
        ({"kind": "slurm", "protocol": "tcp://"}, "protocol 'tcp://' is not TLS; plain TCP needs 'security: none'"),
        ({"kind": "kubernetes"}, "kind 'kubernetes' cannot use TLS .*add 'security: none' to accept that"),
        ({"kind": "ssh", "security": "off"}, "'security' must be 'temporary', 'none' or a mapping"),
        ({"kind": "ssh", "security": {"tls_ca": "ca.pem"}}, r"unknown key\(s\) under 'security': tls_ca;"),
        ({"kind": "ssh", "security": {"tls_ca_file": "ca.pem", "tls_cert": "c.pem"}},
         "'security' must name tls_client_key, tls_scheduler_key, tls_worker_key"),
        ({"kind": "ssh", "security": {"tls_ca_file": "ca.pem", "tls_cert": "c.pem", "tls_key": "k.pem"}},
         "security: tls_ca_file .*ca.pem: file not found"),
        ({"kind": "scheduler", "address": "tcp://127.0.0.1:8786", "security": {"tls_ca_file": "ca.pem"}},
         "'security' names certificates, but tcp://127.0.0.1:8786 is not a tls:// address"),
        ({"kind": "scheduler", "address": "tls://127.0.0.1:8786", "security": "temporary"},
         "kind 'scheduler' takes 'security' as a mapping of certificate files or 'none'"),
        ({"kind": "scheduler", "address": "tls://127.0.0.1:8786", "security": "none"},
         "tls://127.0.0.1:8786 is a TLS scheduler and no certificates are named"),
    ],
)
def test_bad_security_names_file_and_problem(tmp_path, settings, message):
    path = _write(tmp_path, settings)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}") as error:
        with contextlib.ExitStack() as stack:
            plan_cluster(path, stack)
    assert isinstance(error.value, InputError) and "\n" not in str(error.value)


def test_certificate_that_does_not_load_is_a_one_line_error(tmp_path, tls_files):
    path = _write(tmp_path, {"kind": "slurm", "security": {
        "tls_ca_file": str(tls_files.ca), "tls_cert": str(tls_files.node_cert),
        "tls_key": str(tls_files.stranger_key)}})  # a key of another certificate
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: security: cannot load the CA file and "
                                         f"client certificate and key: .*KEY_VALUES_MISMATCH"):
        with contextlib.ExitStack() as stack:
            plan_cluster(path, stack)


def test_plain_tcp_only_when_the_file_says_so(tmp_path):
    for kind in ("ssh", "slurm", "pbs", "kubernetes"):
        with contextlib.ExitStack() as stack:
            plan = plan_cluster(_write(tmp_path, {"kind": kind, "security": "none"}), stack)
        assert "security" not in plan.arguments
        assert "distributed.comm.require-encryption" not in plan.config
        if kind != "kubernetes":  # the operator's dashboard sits behind a ClusterIP service
            assert plan.arguments["scheduler_options"] == {"dashboard_address": LOOPBACK_DASHBOARD}
            assert plan.config["distributed.dashboard.link"].startswith("{scheme}://127.0.0.1:")


def test_certificate_files_named_in_the_cluster_file(tmp_path, tls_files):
    folder = tls_files.ca.parent
    # Relative names resolve against the cluster file's folder; tls_cert and tls_key serve every
    # role not named on its own.
    path = folder / f"cluster-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump({"kind": "ssh", "hosts": ["a", "b"], "security": {
        "tls_ca_file": "ca.pem", "tls_cert": "node.pem", "tls_key": "node-key.pem",
        "tls_client_cert": "client.pem", "tls_client_key": "client-key.pem"}}))
    with contextlib.ExitStack() as stack:
        plan = plan_cluster(path, stack)
    security = plan.arguments["security"]
    assert (security.tls_ca_file, security.tls_client_cert, security.tls_worker_key) == (
        str(tls_files.ca), str(tls_files.client_cert), str(tls_files.node_key))
    assert plan.config["distributed.comm.tls.scheduler.cert"] == str(tls_files.node_cert)  # read on the hosts


def _spawn_logged(args, log, env=None):
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


@contextlib.contextmanager
def _killed_at_exit(processes):
    try:
        yield processes
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_ssh_hosts_get_working_credentials(tmp_path):
    # What SSHCluster runs on each host, run here: `python -m distributed.cli.dask_spec` with
    # this machine's whole Dask configuration in DASK_INTERNAL_INHERIT_CONFIG (SSHCluster
    # writes it on the command line; an environment variable here).
    with contextlib.ExitStack() as stack:
        plan = plan_cluster(_write(tmp_path, {"kind": "ssh", "hosts": ["a", "b"]}), stack)
    options = plan.arguments["scheduler_options"] | {"host": "127.0.0.1", "port": 0,
                                                      "dashboard_address": "127.0.0.1:0"}
    with dask.config.set(plan.config):
        env = os.environ | {"DASK_INTERNAL_INHERIT_CONFIG": dask.config.serialize(dask.config.global_config)}
    spec = [sys.executable, "-m", "distributed.cli.dask_spec"]
    with _killed_at_exit([]) as started:
        started.append(_spawn_logged(
            [*spec, "--spec", json.dumps({"cls": "distributed.Scheduler", "opts": options})],
            tmp_path / "scheduler.log", env))
        line = _wait_for_line(tmp_path / "scheduler.log", "Scheduler at:", started[0])
        address = line.split("Scheduler at:")[1].strip()
        assert address.startswith("tls://127.0.0.1:")
        worker = {0: {"cls": "distributed.Nanny", "opts": {"nthreads": 1, "host": "127.0.0.1"}}}
        started.append(_spawn_logged([*spec, address, "--spec", json.dumps(worker)], tmp_path / "worker.log", env))
        with distributed.Client(address, security=plan.arguments["security"], timeout=30) as client:
            client.wait_for_workers(1, timeout=30)
            assert client.submit(sum, [1, 2]).result() == 3
            (worker_address,) = client.scheduler_info()["workers"]
        assert worker_address.startswith("tls://")  # workers listen with TLS too
        with pytest.raises(OSError):  # a plain-TCP client is turned away
            distributed.Client(address.replace("tls://", "tcp://"), timeout=5)


def test_batch_workers_join_with_the_credential_files(tmp_path):
    # dask-jobqueue's scheduler runs here with the plan's Security; each batch job runs
    # `dask worker` with the options it derives from the workers' credential files.
    settings = {"kind": "slurm", "shared_temp_directory": str(tmp_path / "shared")}
    with contextlib.ExitStack() as stack:
        plan = plan_cluster(_write(tmp_path, settings), stack)
        security = plan.arguments["security"]
        scheduler = {"cls": distributed.Scheduler, "options": {
            "protocol": "tls://", "security": security, "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0"}}
        cluster = stack.enter_context(distributed.SpecCluster(scheduler=scheduler, workers={},
                                                              security=security))
        worker_args = ["--protocol", "tls://", "--tls-ca-file", security.tls_ca_file,
                       "--tls-cert", security.tls_worker_cert, "--tls-key", security.tls_worker_key]
        with _killed_at_exit([]) as started:
            started.append(_spawn_logged(
                [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                 "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard", *worker_args],
                tmp_path / "worker.log"))
            with distributed.Client(cluster) as client:
                client.wait_for_workers(1, timeout=30)
                assert client.submit(sum, [1, 2]).result() == 3


def test_the_shipped_cluster_files_plan_as_their_comments_say(tmp_path, tls_files, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # slurm and pbs write credentials under ~/.asm-dask/tls
    folder = Path(__file__).parent.parent / "cluster"
    # scheduler.yaml names the one-certificate recipe's files beside it: a self-signed pair.
    (tmp_path / "dask.pem").write_bytes(tls_files.stranger_cert.read_bytes())
    (tmp_path / "dask-key.pem").write_bytes(tls_files.stranger_key.read_bytes())
    plans = {}
    for name in ("local", "scheduler", "ssh", "slurm", "pbs", "kubernetes"):
        copy = tmp_path / f"{name}.yaml"
        copy.write_text((folder / f"{name}.yaml").read_text())
        with contextlib.ExitStack() as stack:
            plans[name] = plan_cluster(copy, stack)
            if name in ("slurm", "pbs"):
                worker_key = Path(plans[name].arguments["security"].tls_worker_key)
                assert worker_key.is_relative_to(tmp_path / ".asm-dask" / "tls")
    for name in ("ssh", "slurm", "pbs"):
        assert plans[name].arguments["security"].require_encryption
        assert plans[name].arguments["scheduler_options"]["dashboard_address"] == LOOPBACK_DASHBOARD
    assert "security" not in plans["kubernetes"].arguments
    scheduler = plans["scheduler"].arguments
    assert scheduler["address"] == "tls://127.0.0.1:8786"
    assert scheduler["security"].tls_client_key == str(tmp_path / "dask-key.pem")
    assert plans["local"].arguments["host"] == "127.0.0.1"
