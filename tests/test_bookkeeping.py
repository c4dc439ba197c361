"""The output folder's lock: one run writes a folder at a time, and a dead run's lock is taken over."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from builders import cli, write_job

HOLD_LOCK = """
import sys, time
from asm_dask.records.lock import OutputLock
with OutputLock(sys.argv[1]) as lock:
    print(lock.holder["run"], flush=True)
    time.sleep(600)
"""


def test_a_second_run_stops_on_a_held_lock_and_a_dead_runs_lock_is_taken_over(country, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        run_id = holder.stdout.readline().strip()
        job = write_job(tmp_path, country.labels, country.features)
        second = cli("run", job)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert lines[-1].startswith(f"asm-dask: error: {out}: in use by another asm-dask run ({run_id}, ")
        assert f"process {holder.pid}, started " in lines[-1]
        assert not any("Traceback" in line for line in lines)
        # Nothing written but the refused run's record in the log.
        assert sorted(p.name for p in out.iterdir()) == [".asm-dask.lock", "asm-dask.log"]
        assert (out / "asm-dask.log").read_text().strip().splitlines()[-1] == \
            "asm_dask.errors.InputError: " + \
            lines[-1].removeprefix("asm-dask: error: ").removesuffix(f" (details: {out}/asm-dask.log)")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing its lock: a run on this host sees it is gone.
    assert json.loads((out / ".asm-dask.lock").read_text())["run"] == run_id
    third = cli("run", job)
    assert third.returncode == 0, third.stderr
    assert not (out / ".asm-dask.lock").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_two_runs_started_together_never_corrupt_the_folder(country, tmp_path):
    job = write_job(tmp_path, country.labels, country.features)
    runs = [subprocess.Popen([sys.executable, "-m", "asm_dask.cli", "run", str(job)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    for code, stderr in results:
        assert code in (0, 2), stderr
        assert "Traceback" not in stderr
        if code == 2:
            assert "in use by another asm-dask run" in stderr.strip().splitlines()[-1]
    assert 0 in [code for code, _ in results]
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and not (out / ".asm-dask.lock").exists()
    assert len(list((out / "predictions").glob("*.parquet"))) == manifest["n_partitions"]
    assert not list(out.rglob(".*.tmp-*"))


def test_a_run_stopped_by_bad_input_leaves_no_output_folder_behind(country, tmp_path):
    import pandas as pd

    labels = pd.read_csv(country.labels)
    labels.loc[3, "label"] = 7
    bad = tmp_path / "labels.csv"
    labels.to_csv(bad, index=False)
    job = write_job(tmp_path, bad, country.features)
    done = cli("run", job)
    assert done.returncode == 2, done.stderr
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").iterdir()
                                                    if p.name != "asm-dask.log"]


@pytest.mark.parametrize("started_by", ["this host, dead", "another host"])
def test_a_lock_of_a_dead_process_here_is_stale_but_not_one_from_another_host(tmp_path, started_by):
    from asm_dask.errors import InputError
    from asm_dask.records.lock import OutputLock
    from asm_dask.records.outputs import LOCK_FILE

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    lock = OutputLock(str(tmp_path))
    host = lock.holder["host"] if started_by == "this host, dead" else "elsewhere.example"
    (tmp_path / LOCK_FILE).write_text(json.dumps({"run": "abc", "host": host, "pid": int(dead),
                                                  "started": time.strftime("%Y")}))
    if started_by == "another host":
        with pytest.raises(InputError, match=r"\(abc, \?@elsewhere.example process \d+"):
            with lock:
                pass
        assert json.loads((tmp_path / LOCK_FILE).read_text())["run"] == "abc"  # left alone
    else:
        with lock:
            assert json.loads((tmp_path / LOCK_FILE).read_text())["run"] == lock.holder["run"]
        assert not (tmp_path / LOCK_FILE).exists()


def test_another_run_into_a_finished_folder_removes_the_earlier_one_before_writing(local_run, tmp_path):
    """A job of other settings into a finished run's folder replaces it: the earlier run's
    files go before the new one writes any, so that a new run stopped half-way (Ctrl-C, a
    folder that refuses a write) leaves no earlier report or metrics beside its own model.
    The same job keeps them: it resumes."""
    import shutil

    from asm_dask.records.outputs import KEPT_ACROSS_RUNS, remove_stale_outputs

    folder = tmp_path / "out"
    shutil.copytree(local_run[0], folder)
    earlier = sorted(path.name for path in folder.iterdir())
    key = json.loads((folder / "manifest.json").read_text())["run_key"]
    remove_stale_outputs(str(folder), (), key)
    assert sorted(path.name for path in folder.iterdir()) == earlier
    remove_stale_outputs(str(folder), (), "another job's key")
    assert {path.name for path in folder.iterdir()} == set(earlier) & KEPT_ACROSS_RUNS == {"asm-dask.log"}
