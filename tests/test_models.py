"""Estimators beyond ridge: compared on the same folds, calibrated out of fold, saved and loaded."""

import json
from dataclasses import replace

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from builders import cli, write_job
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_predict

from asm_dask.config import job_from_dict
from asm_dask.errors import InputError
from asm_dask.model.classifier import CalibratedClassifier
from asm_dask.model.estimators import ESTIMATOR_NAMES, make_estimator, params_at_grid_edge, search_grid
from asm_dask.model.evaluation import roc_auc
from asm_dask.model.persistence import ESTIMATOR_FILE, MODEL_FILE, load_model, save_model
from asm_dask.model.ridge import RidgeGridClassifier
from asm_dask.model.search import Candidate, calibrated_model, search, select
from asm_dask.model.split import cv_folds
from asm_dask.read.grid import cell_ids

SEED = 1991
#: small grids, so that the tests stay fast; the mapping form of model.estimators
SMALL_GRIDS = {"ridge": None, "logistic_regression": {"C": [0.01, 1.0]},
               "random_forest": {"n_estimators": [30], "min_samples_leaf": [1, 5]},
               "hist_gradient_boosting": {"max_iter": [20], "learning_rate": [0.1]},
               "linear_svm": {"C": [0.001]}}


def _problem(n=240, k=30, seed=0):
    """Non-negative, unscaled features with a signal in a few of them, MOSAIKS-like."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, k)) * 1000 + 2000).astype(np.float32)
    y = ((X[:, :3].sum(axis=1) - 7500) / 300 + rng.normal(size=n) > 0).astype(int)
    return X, y, cv_folds(y, np.arange(n), 5, "labels.csv", seed=0)


def test_dask_ml_search_equals_scikit_learn_grid_search_on_the_same_folds(client):
    X, y, folds = _problem()
    grid = {"min_samples_leaf": [1, 5, 20], "n_estimators": [25]}
    ours = search("random_forest", grid, X, y, folds, SEED, client)
    reference = GridSearchCV(make_estimator("random_forest", SEED), search_grid("random_forest", grid), cv=folds,
                             scoring="roc_auc").fit(X, y)
    best = reference.best_index_
    assert ours.best_params == reference.best_params_
    assert ours.cv_auc == pytest.approx(reference.best_score_, abs=1e-12)
    np.testing.assert_allclose(ours.cv_auc_by_fold, [reference.cv_results_[f"split{f}_test_score"][best]
                                                     for f in range(5)], atol=1e-12)
    np.testing.assert_allclose([p["cv_auc"] for p in ours.grid], reference.cv_results_["mean_test_score"],
                               atol=1e-12)
    assert [p["params"] for p in ours.grid] == reference.cv_results_["params"]
    # Out of fold, at the best parameters, on the same folds: each row scored by a model
    # that did not see it, as scikit-learn's cross_val_predict scores it.
    oof = cross_val_predict(clone(reference.best_estimator_), X, y, cv=folds, method="predict_proba")[:, 1]
    np.testing.assert_array_equal(ours.oof_scores, oof)
    for f, (_, valid) in enumerate(folds):
        assert roc_auc(y[valid], ours.oof_scores[valid]) == pytest.approx(ours.cv_auc_by_fold[f], abs=1e-12)
    np.testing.assert_array_equal(ours.fitted.predict_proba(X), reference.best_estimator_.predict_proba(X))


@pytest.mark.parametrize("name", [n for n in ESTIMATOR_NAMES if n != "ridge"])
def test_every_estimator_round_trips_through_its_saved_files(client, tmp_path, name):
    X, y, folds = _problem(seed=1)
    candidate = search(name, SMALL_GRIDS[name], X, y, folds, SEED, client)
    names = [f"feature_{j}" for j in range(X.shape[1])]
    model = calibrated_model(candidate, y, "isotonic", X, folds, names)
    X_new = X[::-1] * 1.01
    if name in ("logistic_regression", "linear_svm"):
        # The scaler is folded into raw-unit weights: the same scores as the pipeline
        # (which scales float32 rows in float32, hence float64 rows here).
        assert model.linear and model.name == name
        np.testing.assert_allclose(model.score_matrix(X_new),
                                   candidate.fitted.decision_function(X_new.astype(np.float64)), rtol=1e-9, atol=1e-9)
    else:
        assert not model.linear and model.name == name
        np.testing.assert_array_equal(model.score_matrix(X_new), candidate.fitted.predict_proba(X_new)[:, 1])
    save_model(model, tmp_path, cell_size=0.01)
    saved = json.loads((tmp_path / MODEL_FILE).read_text())
    assert saved["estimator"] == name and saved["cell_size"] == 0.01 and saved["n_features"] == X.shape[1]
    assert saved["params"] == candidate.best_params and "scikit-learn" in saved["versions"]
    assert (tmp_path / ESTIMATOR_FILE).exists() == (saved["kind"] == "skops")
    loaded = load_model(tmp_path)
    rows = pd.DataFrame(X_new, columns=names)
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))
    assert list(loaded.feature_names_in_) == names and loaded.name == name
    # The same fit, here or on a worker, and the saved model give the same fingerprint, so
    # that a run resumes its predictions; another fit gives another.
    assert loaded.fingerprint_ == model.fingerprint_
    refitted = replace(candidate, fitted=clone(candidate.fitted).fit(X, y))
    assert calibrated_model(refitted, y, "isotonic", X, folds, names).fingerprint_ == model.fingerprint_
    other = replace(candidate, fitted=clone(candidate.fitted).fit(X[10:], y[10:]))
    assert calibrated_model(other, y, "isotonic", X, folds, names).fingerprint_ != model.fingerprint_


class Intruder:
    """A type no saved model of asm_dask holds."""


def test_a_saved_estimator_with_an_untrusted_type_or_a_changed_file_is_refused(tmp_path):
    import hashlib

    import skops.io
    from sklearn.ensemble import RandomForestClassifier

    X, y, _ = _problem(seed=2)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    names = [f"f{j}" for j in range(X.shape[1])]
    model = CalibratedClassifier.from_fitted(forest, forest.predict_proba(X)[:, 1], y, X=X, feature_names=names)
    save_model(model, tmp_path)
    (tmp_path / ESTIMATOR_FILE).write_bytes(skops.io.dumps(RandomForestClassifier(n_estimators=3)))
    with pytest.raises(InputError, match="is not the estimator model.json was saved with"):
        load_model(tmp_path)
    payload = skops.io.dumps({"estimator": forest, "extra": Intruder()})
    (tmp_path / ESTIMATOR_FILE).write_bytes(payload)
    saved = json.loads((tmp_path / MODEL_FILE).read_text())
    saved["estimator_sha256"] = hashlib.sha256(payload).hexdigest()
    (tmp_path / MODEL_FILE).write_text(json.dumps(saved))
    with pytest.raises(InputError, match=r"does not trust, refused unread: test_models\.Intruder$"):
        load_model(tmp_path)
    # A linear model saved over it leaves no estimator file behind.
    linear = CalibratedClassifier.from_parts(RidgeGridClassifier(alphas=(1.0,)), model.calibrator_,
                                             feature_names=names, best_params={"alpha": 1.0},
                                             weights=(np.ones(X.shape[1]), 0.0))
    save_model(linear, tmp_path)
    assert not (tmp_path / ESTIMATOR_FILE).exists()
    rows = pd.DataFrame(X, columns=names)
    np.testing.assert_array_equal(load_model(tmp_path).predict_proba(rows), linear.predict_proba(rows))


def _candidate(name, by_fold):
    return Candidate(name, {}, np.asarray(by_fold, dtype=float), [], np.zeros(1), 0.0, None)


def test_the_highest_mean_cv_auc_wins_the_first_on_a_tie_unless_model_select_names_one():
    candidates = [_candidate("ridge", [0.8, 0.8]), _candidate("random_forest", [0.9, 0.7]),
                  _candidate("linear_svm", [0.85, 0.79])]
    assert select(candidates, None)[0].name == "linear_svm"
    tied = [_candidate("ridge", [0.8, 0.8]), _candidate("random_forest", [0.9, 0.7])]
    assert select(tied, None) == (tied[0], "cv_auc")
    assert select(candidates, "random_forest") == (candidates[1], "model.select")


def test_a_best_value_at_the_end_of_three_or_more_is_at_the_grid_edge():
    grid = [{"params": {"C": c, "loss": "hinge"}} for c in (0.1, 0.01, 1.0)]
    assert params_at_grid_edge({"C": 0.01, "loss": "hinge"}, grid) == ["C"]
    assert params_at_grid_edge({"C": 1.0, "loss": "hinge"}, grid) == ["C"]
    assert params_at_grid_edge({"C": 0.1, "loss": "hinge"}, grid) == []
    assert params_at_grid_edge({"C": 0.1}, [{"params": {"C": c}} for c in (0.1, 1.0)]) == []


def test_the_default_keeps_the_run_key_of_ridge_alone(country, tmp_path):
    from asm_dask.records.fingerprint import run_key

    base = {"labels": str(country.labels), "features": str(country.features), "output": str(tmp_path)}
    default = run_key(job_from_dict(base), "table")
    assert run_key(job_from_dict({**base, "model": {"estimators": ["ridge"]}}), "table") == default
    assert run_key(job_from_dict({**base, "model": {"estimators": ["ridge", "random_forest"]}}), "table") != default


def _training_rows(out, country):
    """The run's training rows, features and labels, in the run's order, and its folds."""
    features = pd.read_feather(country.features)
    coords = features["image_id"].str.replace("--", ".").str.extract(r"lat_(.*)__lon_(.*)").astype(float)
    features["cell_id"] = cell_ids(coords[0].to_numpy(), coords[1].to_numpy(), 0.01)
    rows = pd.read_csv(out / "labelled_cells.csv").merge(features, on="cell_id", how="left")
    train = rows[rows["split"] == "train"]
    X = train[[f"feature_{j}" for j in range(40)]].to_numpy(np.float32)
    y = train["label"].to_numpy()
    return X, y, cv_folds(y, train["cell_id"].to_numpy(), 5, "labels.csv", SEED), features


def test_a_run_compares_estimators_on_the_same_folds_and_the_selected_one_maps_every_cell(
        country, tmp_path, dask_scheduler_with_workers):
    cluster = dask_scheduler_with_workers(n_workers=2)
    job = write_job(tmp_path, country.labels, country.features,
                    model={"estimators": SMALL_GRIDS, "select": "random_forest"})
    done = cli("run", job, "--scheduler", cluster.address)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected_estimator"] == "random_forest" and metrics["selected_by"] == "model.select"
    compared = metrics["model_comparison"]
    assert set(compared) == set(SMALL_GRIDS)
    for name, entry in compared.items():
        assert len(entry["cv_auc_by_fold"]) == 5 and 0.5 < entry["cv_auc"] <= 1, name
        assert 0.5 < entry["test_auc"] <= 1 and entry["linear"] == (name in ("ridge", "logistic_regression",
                                                                              "linear_svm"))
    assert compared["ridge"]["best_params"] == {"alpha": metrics["best_alpha"]}
    assert compared["ridge"]["cv_auc"] == pytest.approx(metrics["cell_cv_auc"], abs=1e-12)
    assert compared["ridge"]["blocked_cv_auc"] == metrics["blocked_cv_auc"]
    assert compared["random_forest"]["test_auc"] == metrics["test_auc_calibrated"]
    assert metrics["feature_importance_of"] == "ridge"
    assert "selected estimator random_forest (named by model.select) of 5 compared" in done.stdout
    assert str(out / ESTIMATOR_FILE) in done.stdout
    assert all(compared[name]["fit_seconds"] > 0 for name in SMALL_GRIDS)

    # The same folds as ridge's: scikit-learn's search on the run's training rows and
    # folds finds the run's numbers.
    X, y, folds, features = _training_rows(out, country)
    grid = SMALL_GRIDS["random_forest"]
    reference = GridSearchCV(make_estimator("random_forest", SEED), search_grid("random_forest", grid), cv=folds,
                             scoring="roc_auc").fit(X, y)
    np.testing.assert_allclose(compared["random_forest"]["cv_auc_by_fold"],
                               [reference.cv_results_[f"split{f}_test_score"][reference.best_index_]
                                for f in range(5)], atol=1e-12)
    assert compared["random_forest"]["best_params"] == reference.best_params_

    # Only the selected model predicts: its saved files reproduce every cell's probability,
    # in the same GeoParquet schema as ridge's.
    model = load_model(out, cell_size=0.01)
    assert not model.linear and model.name == "random_forest"
    predicted = gpd.read_parquet(out / "predictions")
    assert list(predicted.columns) == ["cell_id", "lat", "lon", "score", "probability", "geometry"]
    assert len(predicted) == country.n_cells and predicted.crs == "EPSG:4326"
    predicted = predicted.set_index("cell_id")
    cells = features.set_index("cell_id").loc[predicted.index]
    X_all = cells[[f"feature_{j}" for j in range(40)]].astype(np.float32)
    np.testing.assert_array_equal(predicted["score"], model.raw_score(X_all))
    np.testing.assert_array_equal(predicted["probability"], model.predict_proba(X_all)[:, 1])
    page = (out / "report.html").read_text()
    assert 'id="model-comparison"' in page and "<b>random_forest</b> (selected)" in page


def test_without_model_select_the_highest_cv_auc_maps_every_cell(country, tmp_path):
    job = write_job(tmp_path, country.labels, country.features,
                    model={"estimators": {"ridge": None, "logistic_regression": {"C": [0.01, 1.0]}}})
    done = cli("run", job)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    compared = metrics["model_comparison"]
    best = max(["ridge", "logistic_regression"], key=lambda name: compared[name]["cv_auc"])
    assert metrics["selected_estimator"] == best and metrics["selected_by"] == "cv_auc"
    assert f"selected estimator {best} (the highest CV AUC) of 2 compared" in done.stdout
    # Linear either way: readable weights in model.json, no skops file, and the
    # column-group prediction path reproduces the saved model.
    saved = json.loads((out / MODEL_FILE).read_text())
    assert saved["kind"] == "linear" and saved["estimator"] == best and not (out / ESTIMATOR_FILE).exists()
    model = load_model(out)
    _, _, _, features = _training_rows(out, country)
    predicted = pd.read_parquet(out / "predictions", columns=["cell_id", "probability"]).set_index("cell_id")
    X_all = features.set_index("cell_id").loc[predicted.index][[f"feature_{j}" for j in range(40)]]
    np.testing.assert_allclose(predicted["probability"], model.predict_proba(X_all.astype(np.float32))[:, 1],
                               atol=1e-12)


@pytest.mark.parametrize("model, message", [
    ({"estimators": ["ridge", "svm"]}, "model.estimators.svm: expected one of ridge, logistic_regression"),
    ({"estimators": ["random_forest"]}, "model.estimators: expected ridge among the estimators"),
    ({"estimators": []}, "model.estimators: expected a non-empty list of names"),
    ({"estimators": {"ridge": None, "random_forest": {"min_samples_leaf": 3}}},
     "model.estimators.random_forest.min_samples_leaf: expected a non-empty list of distinct"),
    ({"estimators": {"ridge": None, "random_forest": {"leaves": [3]}}},
     "model.estimators.random_forest.leaves: expected a parameter of random_forest (bootstrap, "),
    ({"estimators": {"ridge": None, "linear_svm": {"C": [-1]}}},
     "model.estimators.linear_svm.C: expected values that linear_svm accepts (The 'C' parameter of "
     "LinearSVC must be a float in the range (0.0, inf). Got -1 instead.), got [-1]"),
    ({"estimators": {"ridge": {"alpha": [1]}}}, "model.estimators.ridge: expected null: ridge's penalties"),
    ({"estimators": ["ridge", "linear_svm"], "select": "random_forest"},
     "model.select: expected null or one of model.estimators (ridge, linear_svm), got 'random_forest'"),
])
def test_bad_estimators_are_one_line_before_anything_is_written(country, tmp_path, model, message):
    job = write_job(tmp_path, country.labels, country.features, model=model)
    done = cli("run", job)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"asm-dask: error: {job}: ") and message in line, line
    assert not (tmp_path / "out").exists()
    assert yaml.safe_load(job.read_text())["model"] == model


@pytest.mark.parametrize("grid, message", [
    ({"random_forest": {"bootstrap": [False], "max_samples": [0.5]}},
     "model.estimators.random_forest: scikit-learn cannot fit the setting {'bootstrap': False, "
     "'max_samples': 0.5}: `max_sample` cannot be set if `bootstrap=False`"),
    ({"logistic_regression": {"penalty": ["l1"]}},
     "model.estimators.logistic_regression: scikit-learn cannot fit the setting {'penalty': 'l1'}: "),
])
def test_settings_scikit_learn_refuses_only_when_fitting_are_one_line_and_the_run_ends(country, tmp_path,
                                                                                        grid, message):
    """dask-ml resubmits a fit that raised, forever: such settings are found first."""
    job = write_job(tmp_path, country.labels, country.features, model={"estimators": {"ridge": None, **grid}})
    done = cli("run", job, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"asm-dask: error: {message}"), lines[-1]
    assert not any("retrying" in line or "Traceback" in line or "Warning" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["asm-dask.log"]


def test_library_warnings_go_to_the_log_not_the_console(country, tmp_path):
    job = write_job(tmp_path, country.labels, country.features,
                    model={"estimators": {"ridge": None, "logistic_regression": {"max_iter": [1]}}})
    done = cli("run", job)
    assert done.returncode == 0, done.stderr
    assert "ConvergenceWarning" not in done.stderr and "warnings.warn" not in done.stderr
    assert "ConvergenceWarning" in (tmp_path / "out" / "asm-dask.log").read_text()
