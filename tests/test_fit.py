"""Split, fit and calibrate stages against scikit-learn's in-memory reference."""

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV, cross_val_predict

from asm_dask.calibrate import CalibratedModel, fit_isotonic
from asm_dask.config import SplitConfig
from asm_dask.errors import InputError
from asm_dask.ridge import RidgeGridClassifier
from asm_dask.split import cv_folds, split_groups, train_test_split_groups

ALPHAS = [0.01, 0.1, 1.0, 10.0]


def _problem(n=300, k=500, seed=0):
    """Few rows, many positive features with a large common mean, like MOSAIKS."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, k)) * 2 + 3).astype(np.float32)
    y = ((X - X.mean(0)) @ rng.normal(size=k) + rng.normal(size=n) * 4 > 0).astype(int)
    groups = rng.integers(0, n // 2, n)  # about two rows per cell
    return X, y, groups


@pytest.mark.parametrize("use_cluster", [False, True])
def test_ridge_grid_equals_sklearn_grid_search(client, use_cluster):
    X, y, groups = _problem()
    folds = cv_folds(y, groups, 5, "labels.csv")
    ours = RidgeGridClassifier(ALPHAS, client=client if use_cluster else None).fit(X, y, folds)
    X64 = X.astype(np.float64)
    reference = GridSearchCV(RidgeClassifier(), {"alpha": ALPHAS}, cv=folds, scoring="roc_auc").fit(X64, y)
    assert ours.best_alpha_ == reference.best_params_["alpha"]
    np.testing.assert_allclose(ours.cv_auc_.mean(axis=1), reference.cv_results_["mean_test_score"], atol=1e-6)
    for f in range(5):
        np.testing.assert_allclose(ours.cv_auc_[:, f], reference.cv_results_[f"split{f}_test_score"], atol=1e-6)
    X_new = np.random.default_rng(9).random((40, X.shape[1])) * 2 + 3
    np.testing.assert_allclose(ours.decision_function(X_new), reference.decision_function(X_new), atol=1e-6)
    oof = cross_val_predict(RidgeClassifier(alpha=ours.best_alpha_), X64, y, cv=folds, method="decision_function")
    np.testing.assert_allclose(ours.oof_decision_, oof, atol=1e-6)


def test_a_different_best_alpha_is_found_too():
    # Strong signal: the smallest penalty wins, unlike the noisy problem above.
    X, _, _ = _problem(n=200, k=50, seed=1)
    y = (X[:, 0] > np.median(X[:, 0])).astype(int)
    ours = RidgeGridClassifier(ALPHAS, cv=5).fit(X, y)
    reference = GridSearchCV(RidgeClassifier(), {"alpha": ALPHAS}, cv=5, scoring="roc_auc").fit(X.astype(float), y)
    assert ours.best_alpha_ == reference.best_params_["alpha"]
    np.testing.assert_allclose(ours.cv_auc_.mean(axis=1), reference.cv_results_["mean_test_score"], atol=1e-6)


def test_calibrated_model_reproduces_isotonic_regression_and_round_trips(tmp_path):
    X, y, groups = _problem(seed=2)
    ridge = RidgeGridClassifier(ALPHAS).fit(X, y, cv_folds(y, groups, 5, "l"))
    isotonic = fit_isotonic(ridge.oof_decision_, y)
    reference = IsotonicRegression(out_of_bounds="clip").fit(ridge.oof_decision_, y)
    model = CalibratedModel.from_fitted([f"f{j}" for j in range(X.shape[1])], ridge, isotonic)
    scores = model.decision_function(X) * 3  # beyond the fitted range too: clipped
    np.testing.assert_allclose(model.calibrate(scores), reference.predict(scores), atol=1e-12)
    model.save(tmp_path / "model.json")
    loaded = CalibratedModel.load(tmp_path / "model.json")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_rows_sharing_a_group_never_straddle_the_splits():
    X, y, groups = _problem(n=400)
    train, test = train_test_split_groups(y, groups, SplitConfig(), "l")
    assert not set(groups[train]) & set(groups[test])
    assert abs(len(test) / len(y) - 0.2) < 0.08
    again = train_test_split_groups(y, groups, SplitConfig(), "l")
    assert (again[0] == train).all()  # seeded
    folds = cv_folds(y[train], groups[train], 5, "l")
    for fit_rows, valid_rows in folds:
        assert not set(groups[train][fit_rows]) & set(groups[train][valid_rows])
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(train)))


def test_block_groups_put_nearby_cells_together():
    lat = np.array([8.001, 8.499, 8.501, 9.2])
    lon = np.array([-11.9, -11.6, -11.9, -11.9])
    groups = split_groups(np.arange(4), lat, lon, SplitConfig(group_by="block", block_size=0.5))
    assert groups[0] == groups[1] and len(set(groups)) == 3


def test_too_few_labels_for_the_folds():
    y = np.array([0, 1, 0, 1, 1, 0])
    with pytest.raises(InputError, match="fewer than model.cv_folds=5"):
        cv_folds(y, np.array([1, 1, 2, 2, 3, 3]), 5, "labels.csv")


@pytest.mark.parametrize("X, y, message", [
    (np.ones((4, 2)), np.array([0, 0, 0, 0]), "both classes"),
    (np.full((4, 2), np.nan), np.array([0, 1, 0, 1]), "NaN"),
    (np.ones(4), np.array([0, 1, 0, 1]), "2-D"),
])
def test_ridge_validates_its_inputs(X, y, message):
    with pytest.raises(ValueError, match=message):
        RidgeGridClassifier().fit(X, y)
