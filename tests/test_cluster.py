"""open_client and describe against real scheduler and worker processes on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import time
from urllib.parse import urlparse

import dask
import dask.system
import distributed
import psutil
import pytest
import yaml
from distributed.system import MEMORY_LIMIT

from asm_dask.cluster import describe, open_client
from asm_dask.errors import InputError


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


def test_default_is_an_in_process_local_cluster_sized_to_the_machine(capfd):
    with open_client() as client:
        cluster = client.cluster
        info = describe(client)
        assert client.submit(os.getpid, pure=False).result() == os.getpid()  # threads, here
        link = client.dashboard_link
        assert _accepts_connections(link)
    assert (info["n_workers"], info["threads"]) == (1, dask.system.CPU_COUNT)
    assert info["memory_bytes"] == MEMORY_LIMIT
    assert info["scheduler"].startswith("inproc://")
    assert f"Dask dashboard: {link}" in capfd.readouterr().err
    assert link.startswith("http://127.0.0.1:")
    assert cluster.status.name == "closed" and not _accepts_connections(link)


def test_worker_processes_on_request_and_shut_down_after(tmp_path):
    path = _write(tmp_path, {"kind": "local", "processes": True})
    with open_client(path, progress=False) as client:
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
        with open_client(progress=False, **kwargs) as client:
            info = describe(client)
            pids = set(client.run(os.getpid).values())
        assert (info["scheduler"], info["n_workers"], info["threads"]) == (procs.address, 2, 2)
        assert pids == {worker.pid for worker in procs.workers}
        assert procs.scheduler.poll() is None
        with distributed.Client(procs.address, timeout=10) as client:
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2


def test_local_cluster_file(tmp_path):
    path = _write(tmp_path, {"kind": "local", "n_workers": 1, "processes": True})
    with open_client(path, progress=False) as client:
        assert client.submit(os.getpid, pure=False).result() != os.getpid()
        info = describe(client)
    assert (info["n_workers"], info["threads"]) == (1, 1)
    assert info["memory_bytes"] == MEMORY_LIMIT


def test_scale_key_adds_workers(tmp_path):
    path = _write(tmp_path, {"kind": "local", "n_workers": 0, "scale": 1})
    with open_client(path, progress=False) as client:
        assert describe(client)["n_workers"] == 1


def test_no_worker_gives_a_timeout_naming_the_scheduler(tmp_path):
    path = _write(tmp_path, {"kind": "local", "processes": True, "n_workers": 0, "worker_timeout": 0.5})
    expected = r"^no Dask worker joined the scheduler at tcp://127\.0\.0\.1:\d+ within 0\.5 s$"
    with pytest.raises(TimeoutError, match=expected) as error:
        with open_client(path, progress=False):
            pass
    assert isinstance(error.value, InputError)


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
        ({"kind": "local", "memory_limit": "lots"}, "invalid settings for kind 'local': .*'lots'"),
        ({"kind": "local", "jobs": 2}, "'jobs' only applies to kinds slurm and pbs"),
        ({"kind": "local", "scale": 1, "adapt": {"maximum": 2}}, "give only one of scale, adapt"),
        ({"kind": "scheduler", "address": "tcp://127.0.0.1:8786", "port": 1},
         "kind 'scheduler' takes exactly one key, 'address'"),
    ],
)
def test_bad_cluster_file_names_file_and_problem(tmp_path, settings, message):
    path = _write(tmp_path, settings)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}") as error:
        with open_client(path, progress=False):
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
