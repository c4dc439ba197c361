"""``asm-dask predict``: a finished run's model applied to a second country's features."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from builders import cli, write_job

import asm_dask
from asm_dask.errors import InputError

N_FEATURES = 40
FEATURIZATION = 7  # both countries are seen through the same features


@pytest.fixture(scope="module")
def trained(tmp_path_factory, client):
    """A run on one synthetic country: (its output folder, the country)."""
    from asm_dask.demo import make_country

    folder = tmp_path_factory.mktemp("trained")
    country = make_country(folder / "data", n_cells=1500, n_features=N_FEATURES, n_labels=700, seed=21,
                           featurization_seed=FEATURIZATION)
    asm_dask.run({"labels": str(country.labels), "features": str(country.features), "output": str(folder / "run")},
                 client)
    return folder / "run", country


@pytest.fixture(scope="module")
def second_country(tmp_path_factory):
    """Another place, the same featurization, in many small Feather batches."""
    from asm_dask.demo import make_country

    return make_country(tmp_path_factory.mktemp("second"), n_cells=1200, n_features=N_FEATURES, seed=22,
                        featurization_seed=FEATURIZATION, rows_per_batch=100)


def _predictions(out) -> pd.DataFrame:
    frame = pd.read_parquet(out / "predictions", columns=["cell_id", "lat", "lon", "score", "probability"])
    return frame.sort_values("cell_id").reset_index(drop=True)


def test_predict_applies_the_runs_model_to_every_cell_of_another_country(trained, second_country, tmp_path):
    from asm_dask.model.persistence import load_model
    from asm_dask.read.grid import cell_ids, parse_image_ids

    run_dir, _ = trained
    out = tmp_path / "applied"
    done = cli("predict", run_dir, second_country.features, "--out", out)
    assert done.returncode == 0, done.stderr
    assert f"{second_country.n_cells:,} cells predicted with the model of {run_dir}" in done.stdout

    # Every cell, scored exactly as the saved model scores it.
    predicted = _predictions(out)
    table = feather.read_table(second_country.features)
    lat, lon = parse_image_ids(table.column("image_id"), "features")
    X = table.select([f"feature_{j}" for j in range(N_FEATURES)]).to_pandas()
    direct = pd.DataFrame({"cell_id": cell_ids(lat, lon, 0.01),
                           "probability": load_model(run_dir).predict_proba(X)[:, 1]})
    direct = direct.sort_values("cell_id").reset_index(drop=True)
    assert (predicted["cell_id"] == direct["cell_id"]).all() and len(predicted) == second_country.n_cells
    np.testing.assert_allclose(predicted["probability"], direct["probability"], rtol=0, atol=1e-9)

    # Held to the truth of the second country: its map ranks that country's labels almost
    # as well as their true probability does, and follows the true map.
    from asm_dask.demo import score_map_against_truth

    truth = score_map_against_truth(out, second_country)
    print(truth)
    assert truth["n_labels"] > 100 and truth["auc_gap"] < 0.05
    assert truth["cell_probability_correlation"] > 0.8

    for name in ("probability.tif", "map.html", "hotspots.geojson", "hotspots.csv", "figures/probability_map.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_cells"] == second_country.n_cells and metrics["n_cells_dropped_nonfinite"] == 0
    card = json.loads((out / "model_card.json").read_text())
    trained_manifest = json.loads((run_dir / "manifest.json").read_text())
    assert card["model"]["model_hash"] == trained_manifest["model_hash"]
    assert card["model"]["from_run"] == str(run_dir)
    assert card["trained_on"]["features_fingerprint"] == trained_manifest["inputs"]["features_fingerprint"]
    assert card["training_metrics"]["test_auc_calibrated"] == \
        json.loads((run_dir / "metrics.json").read_text())["test_auc_calibrated"]
    assert card["applied_to"]["features"] == str(second_country.features)
    assert card["applied_to"]["n_cells"] == second_country.n_cells
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["command"] == "predict"
    assert len(manifest["completed_partitions"]) == manifest["n_partitions"] > 10


def test_features_that_are_not_the_models_stop_before_any_work(trained, tmp_path):
    from asm_dask.demo import make_country

    run_dir, _ = trained
    fewer = make_country(tmp_path / "fewer", n_cells=200, n_features=30, seed=5)
    done = cli("predict", run_dir, fewer.features, "--out", tmp_path / "a")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"asm-dask: error: {fewer.features}: the model expects {N_FEATURES} features "
        f"feature_0..feature_{N_FEATURES - 1}; the file has 30 (feature_0..feature_29): missing feature_30, "
        f"feature_31, feature_32, feature_33, feature_34 and {N_FEATURES - 35} more")
    assert not (tmp_path / "a").exists()

    # the other kinds of mismatch, in this process (the command line's wording is above)
    renamed = tmp_path / "renamed.feather"
    table = feather.read_table(make_country(tmp_path / "b", n_cells=200, n_features=N_FEATURES, seed=5).features)
    feather.write_feather(table.rename_columns([n.replace("feature_", "X_") for n in table.column_names]), renamed)
    with pytest.raises(InputError) as refused:
        asm_dask.predict(run_dir, renamed, out=tmp_path / "b_out")
    assert str(refused.value) == (
        f"{renamed}: the model expects features feature_0..feature_{N_FEATURES - 1}; the file "
        f"has X_0..X_{N_FEATURES - 1} (feature 1 is 'X_0', expected 'feature_0')")
    assert not (tmp_path / "b_out").exists()

    finer = make_country(tmp_path / "finer", n_cells=400, n_features=N_FEATURES, seed=5, cell_size=0.005)
    with pytest.raises(InputError) as refused:
        asm_dask.predict(run_dir, finer.features, out=tmp_path / "c")
    assert str(refused.value) == (
        f"{finer.features}: cell centroids are 0.005 degrees apart (the latitudes 8.3975 and 8.4025 of rows 391 and "
        "378); the model was trained on cells of 0.01 degrees")
    assert not (tmp_path / "c").exists()


def test_predict_needs_a_finished_run(trained, second_country, tmp_path):
    run_dir, country = trained
    done = cli("predict", tmp_path, second_country.features, "--out", tmp_path / "x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == \
        f"asm-dask: error: {tmp_path}: no asm-dask run here (no readable manifest.json)"
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (unfinished / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    with pytest.raises(InputError, match=r"the run is not finished \(status 'running'\)"):
        asm_dask.predict(unfinished, second_country.features, out=tmp_path / "y")
    assert not (tmp_path / "y").exists()
    done = cli("predict", run_dir, second_country.features, "--hotspot-threshold", "2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == \
        "asm-dask: error: --hotspot-threshold: expected a probability in (0, 1], got 2"


def test_a_killed_prediction_resumes(trained, second_country, tmp_path):
    run_dir, _ = trained
    out = tmp_path / "resumed"
    command = [sys.executable, "-m", "asm_dask.cli", "predict", str(run_dir), str(second_country.features),
               "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 300
    written: list[int] = []
    while len(written) < 3:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        try:
            written = json.loads((out / "manifest.json").read_text())["completed_partitions"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    kept = manifest["completed_partitions"]
    assert manifest["status"] == "running" and len(kept) < manifest["n_partitions"]
    stamps = {i: os.stat(out / "predictions" / f"part-{i:05d}.parquet").st_mtime_ns for i in kept}

    again = cli("predict", run_dir, second_country.features, "--out", out)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {len(kept)} of {manifest['n_partitions']} prediction partitions already written" \
        in again.stderr
    assert {i: os.stat(out / "predictions" / f"part-{i:05d}.parquet").st_mtime_ns for i in kept} == stamps
    fresh = cli("predict", run_dir, second_country.features, "--out", tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    pd.testing.assert_frame_equal(_predictions(out), _predictions(tmp_path / "fresh"))


def test_a_saved_tree_ensemble_predicts_another_country(trained, second_country, tmp_path, client):
    """A model saved with skops (not linear) is applied as the linear one is, through the
    Python API: the prediction is a Run too, and its model the run's."""
    import asm_dask
    from asm_dask.read.grid import cell_ids, parse_image_ids

    _, country = trained
    run = asm_dask.run({"labels": str(country.labels), "features": str(country.features),
                        "output": str(tmp_path / "forest"),
                        "model": {"estimators": {"ridge": None, "random_forest": {"n_estimators": [20],
                                                                                 "min_samples_leaf": [5]}},
                                  "select": "random_forest"}}, client)
    assert run.files.model_skops is not None and run.model.name == "random_forest"
    applied = asm_dask.predict(run, second_country.features, out=tmp_path / "applied", client=client)
    assert applied.kind == "predict" and applied.model_card["model"]["estimator"] == "random_forest"
    assert applied.metrics.n_cells == second_country.n_cells
    table = feather.read_table(second_country.features)
    lat, lon = parse_image_ids(table.column("image_id"), "features")
    X = table.select([f"feature_{j}" for j in range(N_FEATURES)]).to_pandas()
    direct = pd.DataFrame({"cell_id": cell_ids(lat, lon, 0.01),
                           "probability": applied.model.predict_proba(X)[:, 1]})
    direct = direct.sort_values("cell_id").reset_index(drop=True)
    predicted = _predictions(tmp_path / "applied")
    assert (predicted["cell_id"] == direct["cell_id"]).all()
    np.testing.assert_allclose(predicted["probability"], direct["probability"], rtol=0, atol=1e-12)
    card = json.loads((tmp_path / "applied" / "model_card.json").read_text())
    assert card["model"]["estimator"] == "random_forest"
    assert card["model"]["params"] == {"min_samples_leaf": 5, "n_estimators": 20}
    assert card["training_metrics"]["selected_estimator"] == "random_forest"


def test_a_prediction_never_writes_over_a_run(trained, second_country, tmp_path, client):
    run_dir, country = trained
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    done = cli("predict", run_dir, second_country.features, "--out", run_dir)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"asm-dask: error: {run_dir}: is the run folder {run_dir}")
    for out in (run_dir / "predictions", run_dir / "new"):
        with pytest.raises(InputError) as error:
            asm_dask.predict(run_dir, second_country.features, out=out)
        assert str(error.value).startswith(f"{out}: is inside the run folder {run_dir}")
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before

    other_run = tmp_path / "other_run"
    (other_run).mkdir()
    (other_run / "manifest.json").write_text((run_dir / "manifest.json").read_text())
    with pytest.raises(InputError) as error:
        asm_dask.predict(run_dir, second_country.features, out=other_run)
    assert str(error.value) == \
        f"{other_run}: holds the output of asm-dask run; choose another folder for asm-dask predict"

    applied = tmp_path / "applied"
    asm_dask.predict(run_dir, second_country.features, out=applied, client=client)
    done = cli("run", write_job(tmp_path, country.labels, country.features), "--out", applied)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"asm-dask: error: {applied}: holds the output of asm-dask predict; choose another folder for asm-dask run")
    assert json.loads((applied / "manifest.json").read_text())["command"] == "predict"


def test_features_without_one_complete_row_are_one_line_and_leave_only_the_log(trained, second_country,
                                                                               tmp_path):
    run_dir, _ = trained
    table = feather.read_table(second_country.features)
    broken = tmp_path / "nan_column.feather"
    column = table.column_names.index("feature_5")
    feather.write_feather(table.set_column(column, "feature_5", pa.nulls(len(table), pa.float32())), broken)
    done = cli("predict", run_dir, broken, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"asm-dask: error: {broken}: no cell has complete features: each of its {second_country.n_cells:,} rows "
        "holds a NaN, infinite or missing value")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["asm-dask.log"]


@pytest.mark.parametrize("edit, message", [
    (lambda m: {**m, "coef": ["a"] * len(m["coef"])}, "not a model: could not convert string to float: 'a'"),
    (lambda m: {**m, "n_features": m["n_features"] + 1}, f"not a model: n_features is {N_FEATURES + 1} but "
                                                          f"{N_FEATURES} feature_names are listed"),
    (lambda m: {**m, "estimator": "svm_magic"}, "not a model: estimator 'svm_magic' is not one of ridge, "),
    (lambda m: {**m, "estimator": "logistic_regression"}, "holds a logistic_regression model; the run selected "
                                                           "ridge (metrics.json)"),
    (lambda m: {**m, "cell_size": -1}, "not a model: cell_size must be a positive number of degrees, not -1"),
    (lambda m: {**m, "cell_size": 0.02}, "says cells of 0.02 degrees; the run read cells of 0.01 (manifest.json)"),
    (lambda m: {**m, "intercept": m["intercept"] + 1}, "not the model this run predicted with"),
])
def test_a_saved_model_edited_since_the_run_is_refused(trained, second_country, tmp_path, edit, message):
    import shutil

    run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "model.json").write_text(json.dumps(edit(json.loads((run_dir / "model.json").read_text()))))
    with pytest.raises(InputError) as refused:
        asm_dask.predict(copy, second_country.features, out=tmp_path / "out")
    assert str(refused.value).startswith(f"{copy / 'model.json'}: {message}"), refused.value
    assert not (tmp_path / "out").exists()
