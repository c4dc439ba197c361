"""The same job on real Dask processes: a running scheduler, lost workers, resumed runs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from builders import cli, write_job

import asm_dask

# Many small partitions make the prediction stage long enough to interrupt.
SMALL_PARTITIONS = {"rows_per_partition": 25}
SMALL_BATCHES = 25


def _small_batches(country, folder):
    """The country's features in Feather batches of a few rows: many partitions read in place."""
    import pyarrow.feather as feather

    path = folder / "small_batches.feather"
    feather.write_feather(feather.read_table(country.features), path, chunksize=SMALL_BATCHES)
    return path


def _predictions(out) -> pd.DataFrame:
    frame = pd.read_parquet(out / "predictions", columns=["cell_id", "score", "probability"])
    return frame.sort_values("cell_id").reset_index(drop=True)


def _metrics(out) -> dict:
    """``metrics.json`` without the fit times, the one entry that changes run to run."""
    metrics = json.loads((out / "metrics.json").read_text())
    for entry in metrics.get("model_comparison", {}).values():
        entry.pop("fit_seconds")
    return metrics


def _job(folder, country, **features):
    return write_job(folder, country.labels, country.features, features_settings=features)


def _start(job, out, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "asm_dask.cli", "run", str(job), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_written_partitions(out, process, at_least: int) -> list[int]:
    """Poll the run's manifest until ``at_least`` prediction partitions are written."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            written = json.loads((out / "manifest.json").read_text())["completed_partitions"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            written = []
        if len(written) >= at_least:
            return written
        time.sleep(0.02)
    raise TimeoutError("prediction did not start")


def test_running_scheduler_gives_the_local_clusters_results(local_run, country, tmp_path,
                                                            dask_scheduler_with_workers):
    cluster = dask_scheduler_with_workers(n_workers=2)
    done = cli("run", write_job(tmp_path, country.labels, country.features), "--out", tmp_path / "remote",
                    "--scheduler", cluster.address)
    assert done.returncode == 0, done.stderr
    local, remote = _predictions(local_run[0]), _predictions(tmp_path / "remote")
    assert (local["cell_id"] == remote["cell_id"]).all()
    np.testing.assert_allclose(remote["probability"], local["probability"], rtol=0, atol=1e-9)
    assert _metrics(tmp_path / "remote") == _metrics(local_run[0])
    for done_run in (done, local_run[1]):  # the fit's progress, on a remote cluster and a local one
        assert "fit: solve folds: [####################] 5/5" in done_run.stderr
    assert all(p.poll() is None for p in [cluster.scheduler, *cluster.workers])  # left running


def test_worker_killed_during_prediction(country, tmp_path, dask_scheduler_with_workers):
    cluster = dask_scheduler_with_workers(n_workers=2)
    out = tmp_path / "out"
    job = write_job(tmp_path, country.labels, _small_batches(country, tmp_path))  # read in place
    run = _start(job, out, "--scheduler", cluster.address)
    written = _wait_for_written_partitions(out, run, at_least=2)
    os.kill(cluster.workers[0].pid, signal.SIGKILL)
    n_partitions = json.loads((out / "manifest.json").read_text())["n_partitions"]
    assert len(written) < n_partitions  # the worker died mid-prediction
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert cluster.workers[0].wait() == -signal.SIGKILL
    predictions = _predictions(out)
    assert len(predictions) == country.n_cells and predictions["cell_id"].is_unique
    assert sorted(os.listdir(out / "predictions")) == [f"part-{i:05d}.parquet" for i in range(n_partitions)]


@pytest.mark.parametrize("store", ["never", "always"])
def test_killed_run_resumes_without_recomputing_written_partitions(local_run, country, tmp_path, store, client):
    out = tmp_path / "out"
    if store == "always":
        job = _job(tmp_path, country, store="always", **SMALL_PARTITIONS)
    else:
        job = write_job(tmp_path, country.labels, _small_batches(country, tmp_path),
                        features_settings={"store": "never"})
    run = _start(job, out)
    _wait_for_written_partitions(out, run, at_least=3)
    os.killpg(run.pid, signal.SIGKILL)  # the run and its local cluster, as a crash would
    run.wait()
    written = json.loads((out / "manifest.json").read_text())["completed_partitions"]
    stamps = {i: os.stat(out / "predictions" / f"part-{i:05d}.parquet").st_mtime_ns for i in written}

    again = cli("run", job, "--out", out)
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed_partitions"] == len(written) > 0
    assert f"resuming: {len(written)} of {manifest['n_partitions']} prediction partitions already written" \
        in again.stderr
    assert manifest["completed_partitions"] == list(range(manifest["n_partitions"]))
    for i, stamp in stamps.items():
        assert os.stat(out / "predictions" / f"part-{i:05d}.parquet").st_mtime_ns == stamp
    uninterrupted = _predictions(local_run[0])
    resumed = _predictions(out)
    assert (resumed["cell_id"] == uninterrupted["cell_id"]).all()
    np.testing.assert_allclose(resumed["probability"], uninterrupted["probability"], rtol=0, atol=1e-9)
    # The report is drawn from the predictions, resumed or not.
    for name in ("probability.tif", "hotspots.geojson", "feature_importance.csv", "map.html", "report.html"):
        assert (out / name).stat().st_size > 0, name
    pd.testing.assert_frame_equal(pd.read_csv(out / "hotspots.csv"), pd.read_csv(local_run[0] / "hotspots.csv"),
                                  rtol=1e-6)

    if store == "always":
        return  # what follows does not depend on where the features are read from
    # A changed setting must not reuse the written partitions (in this process: the
    # command line's resuming is tested above).
    settings = yaml.safe_load(job.read_text())
    settings["model"] = {"alphas": [1.0, 100.0]}
    settings["output"] = str(out)
    asm_dask.run(asm_dask.load_job(settings, base=job.parent), client)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_partitions"] == 0
    assert all(os.stat(out / "predictions" / f"part-{i:05d}.parquet").st_mtime_ns != s for i, s in stamps.items())
    assert set(_metrics(out)["cv_auc"]) == {"1.0", "100.0"}


def test_same_results_on_one_worker_and_run_after_run(local_run, country, tmp_path):
    cluster_file = tmp_path / "one.yaml"
    cluster_file.write_text("kind: local\nn_workers: 1\nthreads_per_worker: 1\n")
    done = cli("run", write_job(tmp_path, country.labels, country.features), "--out", tmp_path / "one",
                    "--cluster", cluster_file)
    assert done.returncode == 0, done.stderr
    assert _metrics(tmp_path / "one") == _metrics(local_run[0])
    pd.testing.assert_frame_equal(_predictions(tmp_path / "one"), _predictions(local_run[0]))
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["cluster"]["n_workers"] == 1
    for key in ("run_key", "inputs", "settings", "versions", "completed_partitions"):
        assert key in manifest
