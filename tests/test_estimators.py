"""asm_dask's estimators are scikit-learn estimators: its own checks, Pipeline, cross_val_score."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from asm_dask import CalibratedClassifier, RidgeGridClassifier

#: checks of scikit-learn's that these estimators fail on purpose, and why: none. Of the 56
#: checks, scikit-learn itself skips one, check_array_api_input, unless SCIPY_ARRAY_API is
#: set: these estimators take NumPy arrays and DataFrames, not other array libraries. Being
#: binary (ASM or not), they say so in their tags, and refuse multiclass targets with the
#: message scikit-learn's checks expect.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@pytest.mark.parametrize("estimator", [RidgeGridClassifier(alphas=[0.1, 1.0, 10.0], cv=3),
                                       RidgeGridClassifier(),
                                       CalibratedClassifier(),
                                       CalibratedClassifier(LogisticRegression(), method="sigmoid", cv=3)],
                         ids=["ridge-given-alphas", "ridge-defaults", "calibrated-defaults", "calibrated-logistic"])
def test_scikit_learn_estimator_checks(estimator):
    results = check_estimator(estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_skip=None)
    assert {r["check_name"] for r in results if r["status"] == "skipped"} <= {"check_array_api_input"}
    assert sum(r["status"] == "passed" for r in results) >= 55


def _problem(n=300, k=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)) + 3
    y = (X[:, :4].sum(axis=1) - 12 + rng.normal(size=n) > 0).astype(int)
    return X, y


def test_the_estimators_work_in_a_pipeline_and_cross_val_score():
    X, y = _problem()
    for estimator in (RidgeGridClassifier(cv=4), CalibratedClassifier(cv=4)):
        scores = cross_val_score(make_pipeline(StandardScaler(), estimator), X, y, cv=3, scoring="roc_auc")
        assert scores.shape == (3,) and scores.min() > 0.8


def test_calibrated_probabilities_have_two_columns_and_string_classes_work():
    X, y = _problem(seed=1)
    labels = np.where(y == 1, "asm", "none")
    model = CalibratedClassifier(cv=4).fit(X, labels)
    assert list(model.classes_) == ["asm", "none"]
    probability = model.predict_proba(X)
    assert probability.shape == (len(X), 2)
    np.testing.assert_allclose(probability.sum(axis=1), 1.0)
    # classes_[1] is "none": its column is the probability of "none"
    assert model.predict(X)[np.argmax(probability[:, 1])] == "none"
    assert set(model.predict(X)) <= {"asm", "none"}


def test_ridge_takes_cv_as_grid_search_does_and_equals_it():
    """An int, a splitter that uses groups, or a list of splits: the same folds give the
    same alpha and CV AUCs as GridSearchCV(RidgeClassifier())."""
    X, y = _problem(n=240, k=60, seed=2)
    groups = np.repeat(np.arange(80), 3)
    alphas = [0.1, 1.0, 10.0, 100.0]
    for cv in (5, GroupKFold(n_splits=4), list(StratifiedKFold(4).split(X, y))):
        ours = RidgeGridClassifier(alphas=alphas, cv=cv).fit(X, y, groups)
        reference = GridSearchCV(RidgeClassifier(), {"alpha": alphas}, cv=cv, scoring="roc_auc").fit(X, y, groups=groups)
        assert ours.best_alpha_ == reference.best_params_["alpha"]
        np.testing.assert_allclose(ours.cv_auc_.mean(axis=1), reference.cv_results_["mean_test_score"], atol=1e-6)


def test_a_fit_on_a_dataframe_keeps_the_feature_names_and_checks_them():
    X, y = _problem(seed=3)
    frame = pd.DataFrame(X, columns=[f"feature_{j}" for j in range(X.shape[1])])
    model = CalibratedClassifier(cv=3).fit(frame, y)
    assert list(model.feature_names_in_) == list(frame.columns)
    with pytest.raises(ValueError, match="feature names"):
        model.predict_proba(frame[frame.columns[::-1]])


def test_clone_gives_an_unfitted_estimator_with_the_same_settings():
    model = CalibratedClassifier(RidgeGridClassifier(alphas=[1.0, 10.0], standardize=True), method="sigmoid", cv=3)
    copy = clone(model)
    assert copy.get_params()["estimator__standardize"] is True and copy.method == "sigmoid"
    assert not hasattr(copy, "calibrator_")


def test_the_folds_run_on_the_current_client(client):
    """The Dask client comes from the context: the one a notebook made, or a parameter's
    client made current; no client is an estimator parameter."""
    X, y = _problem(n=200, k=30, seed=4)
    alone = RidgeGridClassifier(cv=4).fit(X, y)
    with client.as_current():
        on_cluster = RidgeGridClassifier(cv=4).fit(X, y)
    np.testing.assert_array_equal(on_cluster.coef_, alone.coef_)
    np.testing.assert_array_equal(on_cluster.cv_auc_, alone.cv_auc_)
    assert "client" not in RidgeGridClassifier().get_params()


#: a fit in a process of its own, with no Dask client anywhere: what a fit on a cluster must equal
_FIT_ALONE = """
import sys
import subprocess
import sys

import numpy as np
from asm_dask import RidgeGridClassifier
problem = np.load(sys.argv[1])
model = RidgeGridClassifier(cv=4, standardize="auto", extra_cv=3).fit(problem["X"], problem["y"])
np.savez(sys.argv[2], **{name: np.asarray(getattr(model, name)) for name in sys.argv[3:]})
"""


@pytest.mark.parametrize("problem", ["many features", "grid extended downwards"])
def test_a_fit_on_worker_processes_is_the_fit_in_one_process_bit_for_bit(client, tmp_path, problem):
    """An array sent to or from a worker process arrives at any byte, where NumPy multiplies
    it with loops of its own instead of BLAS, adding in another order. Realigned, the
    kernel's folds (fewer rows than features), the Lanczos runs resumed for a grid extended
    downwards and the paths sent back give the bits of a fit in one process."""
    if problem == "many features":
        from sklearn.datasets import make_classification
        X, y = make_classification(n_samples=200, n_features=300, n_informative=10, flip_y=0.1, random_state=2)
    else:
        rng = np.random.default_rng(2)
        X = rng.normal(size=(160, 300)) + 3
        y = (X[:, :3].sum(axis=1) - 9 + 0.05 * rng.normal(size=160) > 0).astype(int)
    names = ["coef_", "intercept_", "cv_auc_", "oof_decision_", "extra_cv_auc_", "alphas_", "solver_"]
    np.savez(tmp_path / "problem.npz", X=X, y=y)
    subprocess.run([sys.executable, "-c", _FIT_ALONE, str(tmp_path / "problem.npz"), str(tmp_path / "alone.npz"),
                    *names], check=True)
    alone = np.load(tmp_path / "alone.npz")
    with client.as_current():
        on_cluster = RidgeGridClassifier(cv=4, standardize="auto", extra_cv=3).fit(X, y)
    assert str(alone["solver_"]) == "dual"
    if problem == "grid extended downwards":  # resumed: the grid starts at 100, its total variance's decade
        assert on_cluster.n_grid_extensions_ == 2 and alone["alphas_"].min() == 1.0
    for name in names:
        np.testing.assert_array_equal(np.asarray(getattr(on_cluster, name)), alone[name], err_msg=name)


def test_a_fit_in_this_process_gives_blas_its_threads_back():
    """BLAS runs on one thread inside the folds (the same bits on any cluster), but a
    notebook's own NumPy keeps its threads once the fit is done."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from asm_dask.model.numerics import single_threaded

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    X, y = _problem(n=200, k=30, seed=4)
    with threadpool_limits(limits=2, user_api="blas"):
        assert set(blas_threads()) == {2}
        assert set(single_threaded(blas_threads)) == {1}
        RidgeGridClassifier(cv=3).fit(X, y)
        assert set(blas_threads()) == {2}


def test_folds_of_one_class_are_left_out_of_the_mean_and_said():
    """Rare positives (ASM is rare) leave some validation folds without one: scikit-learn's
    search scores them NaN; so do these estimators, and choose alpha on the others."""
    from asm_dask import AsmDaskWarning

    X, y = _problem(n=300, k=20, seed=5)
    y = np.zeros_like(y)
    y[:4] = 1
    with pytest.warns(AsmDaskWarning, match=r"fold\(s\) \[4\] of 5 hold one class only"):
        model = RidgeGridClassifier(alphas=[0.1, 10.0, 1000.0]).fit(X, y)
    assert np.isnan(model.cv_auc_[:, 4]).all() and np.isfinite(model.cv_auc_[:, :4]).all()
    assert model.best_alpha_ == [0.1, 10.0, 1000.0][int(np.argmax(model.cv_auc_[:, :4].mean(axis=1)))]
    with pytest.raises(ValueError, match="no fold of cv=2 holds both classes"):
        RidgeGridClassifier(cv=[(np.arange(150, 300), np.arange(150)), (np.arange(150), np.arange(150, 300))]).fit(
            X, np.r_[np.ones(150), np.zeros(150)])
