"""Split, fit and calibrate stages against scikit-learn's in-memory reference."""

import contextlib
import os
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import _sigmoid_calibration
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_predict

from asm_dask.config import SplitConfig
from asm_dask.errors import InputError
from asm_dask.model import ridge as ridge_module
from asm_dask.model.calibration import fit_calibrator
from asm_dask.model.classifier import CalibratedClassifier
from asm_dask.model.penalty_path import penalty_path
from asm_dask.model.persistence import load_model, save_model
from asm_dask.model.ridge import AlphaAtGridEdgeWarning, FeatureScaleWarning, RidgeGridClassifier
from asm_dask.model.split import cv_folds, split_groups, train_test_split_groups
from asm_dask.runtime.memory import release_freed_memory
from asm_dask.spatial.blocks import block_groups

ALPHAS = [0.01, 0.1, 1.0, 10.0]


def _problem(n=300, k=500, seed=0, scale=1.0):
    """Few rows, many positive features with a large common mean, like MOSAIKS."""
    rng = np.random.default_rng(seed)
    X = ((rng.random((n, k)) * 2 + 3) * scale).astype(np.float32)
    y = ((X - X.mean(0)) @ rng.normal(size=k) + rng.normal(size=n) * 4 * scale > 0).astype(int)
    groups = rng.integers(0, n // 2, n)  # about two rows per cell
    return X, y, groups


def _peaked_problem(n=300, k=400, seed=0):
    """Strong nuisance directions and a weak signal: the CV AUC peaks well inside the grid
    (large penalties follow the nuisance, small ones overfit the noise)."""
    rng = np.random.default_rng(seed)
    nuisance, signal = rng.normal(size=(n, 6)), rng.normal(size=n)
    X = (5 + 4 * nuisance @ rng.normal(size=(6, k)) + 0.5 * np.outer(signal, rng.normal(size=k))
         + rng.normal(size=(n, k)))
    y = (signal + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X.astype(np.float32), y, rng.integers(0, n // 2, n)


def _assert_equals_sklearn(ours, X, y, folds, standardize=False):
    """The chosen alpha, every fold's AUC, new rows' scores and out-of-fold scores, to 1e-6."""
    X64 = X.astype(np.float64)
    if standardize:  # scaled once over all rows, as asm_dask scales over all training rows
        X64 = X64 / X64.std(axis=0)
    reference = GridSearchCV(RidgeClassifier(), {"alpha": list(ours.alphas_)}, cv=folds,
                             scoring="roc_auc").fit(X64, y)
    assert ours.best_alpha_ == reference.best_params_["alpha"]
    for f in range(len(folds)):
        np.testing.assert_allclose(ours.cv_auc_[:, f], reference.cv_results_[f"split{f}_test_score"], atol=1e-6)
    X_new = np.random.default_rng(9).random((40, X.shape[1])) * X.std() + X.mean()
    new = X_new / X.astype(np.float64).std(axis=0) if standardize else X_new
    np.testing.assert_allclose(ours.decision_function(X_new), reference.decision_function(new), atol=1e-6)
    oof = cross_val_predict(RidgeClassifier(alpha=ours.best_alpha_), X64, y, cv=folds, method="decision_function")
    np.testing.assert_allclose(ours.oof_decision_, oof, atol=1e-6)


@pytest.mark.parametrize("use_cluster", [False, True])
@pytest.mark.parametrize("n, k, solver", [(300, 500, "dual"), (600, 60, "primal")])
def test_given_alphas_equal_sklearn_grid_search(client, use_cluster, n, k, solver):
    X, y, groups = _problem(n, k)
    folds = cv_folds(y, groups, 5, "labels.csv", seed=0)
    with warnings.catch_warnings():  # the notebook's list may well end too soon here
        warnings.simplefilter("ignore", AlphaAtGridEdgeWarning)
        with client.as_current() if use_cluster else contextlib.nullcontext():
            ours = RidgeGridClassifier(ALPHAS, cv=folds).fit(X, y)
    assert ours.solver_ == solver
    assert list(ours.alphas_) == ALPHAS  # searched exactly as given, in order
    _assert_equals_sklearn(ours, X, y, folds)


def _no_warning():
    @contextlib.contextmanager
    def raising():
        with warnings.catch_warnings():
            warnings.simplefilter("error", AlphaAtGridEdgeWarning)
            yield

    return raising()


@pytest.mark.parametrize("n, k", [(300, 500), (700, 80)])
def test_auto_search_is_wide_interior_and_equals_sklearn(client, monkeypatch, n, k):
    """On worker processes, with a first grid that starts above the best alpha: the folds'
    runs go on in the workers from where they stopped (dual and primal)."""
    X, y, groups = _problem(n, k, seed=4)
    folds = cv_folds(y, groups, 5, "labels.csv", seed=0)
    monkeypatch.setattr(ridge_module, "AUTO_DECADES_BELOW", -1)
    with client.as_current():
        ours = RidgeGridClassifier("auto", cv=folds).fit(X, y)
    assert ours.solver_ == ("dual" if n < k else "primal") and ours.n_grid_extensions_ >= 1
    grid = ours.alphas_
    assert np.log10(grid.max() / grid.min()) >= 6
    assert len(grid) >= 3 * np.log10(grid.max() / grid.min())  # several points per decade
    assert (np.diff(grid) > 0).all()
    assert not ours.alpha_at_grid_edge_ and grid.min() < ours.best_alpha_ < grid.max()
    _assert_equals_sklearn(ours, X, y, folds)


def test_auto_grid_follows_the_scale_of_the_features():
    """Features 10 times larger want penalties 100 times larger: same fits, same AUCs."""
    X, y, groups = _problem(seed=5)
    folds = cv_folds(y, groups, 5, "l", seed=0)
    small = RidgeGridClassifier("auto", cv=folds).fit(X, y)
    large = RidgeGridClassifier("auto", cv=folds).fit(X * 10, y)
    np.testing.assert_allclose(large.alphas_, small.alphas_ * 100, rtol=1e-12)
    assert large.best_alpha_ == pytest.approx(small.best_alpha_ * 100)
    np.testing.assert_allclose(large.cv_auc_, small.cv_auc_, atol=1e-9)


def test_auto_grid_extends_until_the_best_alpha_is_interior(monkeypatch):
    X, y, groups = _peaked_problem()
    folds = cv_folds(y, groups, 5, "l", seed=0)
    default = RidgeGridClassifier("auto", cv=folds).fit(X, y)
    # A grid wide enough to hold the best alpha from the start: the reference.
    monkeypatch.setattr(ridge_module, "AUTO_DECADES_BELOW", 4)
    first = RidgeGridClassifier("auto", cv=folds).fit(X, y)
    best_exponent = np.log10(first.best_alpha_)
    assert first.n_grid_extensions_ == 0  # the first grid starts AUTO_DECADES_BELOW the total variance's decade
    assert default.best_alpha_ == first.best_alpha_ and not default.alpha_at_grid_edge_
    shared = np.isin(first.alphas_, default.alphas_)
    np.testing.assert_allclose(default.cv_auc_, first.cv_auc_[shared], rtol=0, atol=1e-12)
    centre = np.round(np.log10(first.alphas_.min())) + ridge_module.AUTO_DECADES_BELOW
    # A first grid that ends two decades below the best alpha: the search must climb.
    monkeypatch.setattr(ridge_module, "AUTO_DECADES_ABOVE", int(np.floor(best_exponent - centre)) - 2)
    monkeypatch.setattr(ridge_module, "AUTO_DECADES_BELOW", 1 - ridge_module.AUTO_DECADES_ABOVE)
    climbed = RidgeGridClassifier("auto", cv=folds).fit(X, y)
    assert climbed.n_grid_extensions_ >= 2
    assert not climbed.alpha_at_grid_edge_
    assert climbed.best_alpha_ == first.best_alpha_
    _assert_equals_sklearn(climbed, X, y, folds)
    # ...and one that starts two decades above it: the search must come down.
    monkeypatch.setattr(ridge_module, "AUTO_DECADES_BELOW", int(centre - np.ceil(best_exponent)) - 2)
    monkeypatch.setattr(ridge_module, "AUTO_DECADES_ABOVE", 1 - ridge_module.AUTO_DECADES_BELOW)
    descended = RidgeGridClassifier("auto", cv=folds).fit(X, y)
    assert descended.n_grid_extensions_ >= 2 and not descended.alpha_at_grid_edge_
    assert descended.best_alpha_ == first.best_alpha_


def test_a_flat_cv_curve_is_looked_below_then_its_end_is_flagged():
    """One feature: every alpha ranks the rows alike, so every CV AUC ties. The grid
    looks PLATEAU_DECADES_BELOW decades below the flat curve and finds it flat there too;
    the tie goes to the weakest penalty, at which the folds' scores keep their scale (the
    strongest shrinks them to the intercepts). That alpha is the grid's end, which is
    flagged, saying that the CV AUC does not change there."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 1))
    y = (x[:, 0] + rng.normal(size=300) > 0).astype(int)
    folds = cv_folds(y, np.arange(300), 5, "l", seed=0)
    with pytest.warns(AlphaAtGridEdgeWarning, match=r"smallest one searched \(.*\) and ties 32 other"):
        ours = RidgeGridClassifier("auto", cv=folds).fit(x, y)
    assert np.ptp(ours.cv_auc_.mean(axis=1)) == 0
    assert ours.n_grid_extensions_ == ridge_module.PLATEAU_DECADES_BELOW and ours.alpha_at_grid_edge_
    assert ours.best_alpha_ == ours.alphas_.min()
    _assert_equals_sklearn(ours, x, y, folds)
    assert roc_auc_score(y, ours.oof_decision_) > 0.8  # pooled, they still rank


@pytest.mark.parametrize("n, k, eps", [(500, 30, 1e-3), (100, 300, 1e-2)])
def test_a_curve_flat_over_the_first_grid_is_followed_down_to_its_slope(n, k, eps):
    """A feature of large variance and no signal sets the total variance; the signal lies
    in directions a million times weaker. Every alpha of the first grid shrinks them to
    nothing, so its CV AUCs tie at chance: below that plateau the curve rises, and the
    search must find it, as scikit-learn does, not stop at chance (dual and primal)."""
    rng = np.random.default_rng(0)
    X = 10 * rng.normal(size=(n, 1)) + eps * rng.normal(size=(n, k))
    signal = rng.normal(size=n)
    X[:, 0] += eps * signal
    X[:, 1] -= eps * signal
    y = (signal > 0).astype(int)
    folds = cv_folds(y, np.arange(n), 5, "l", seed=0)
    ours = RidgeGridClassifier("auto", cv=folds).fit(X, y)
    first = ridge_module.auto_grid(X.var(axis=0).sum())
    assert ours.best_alpha_ < first.min() / 1e3 and not ours.alpha_at_grid_edge_
    assert ours.cv_auc_.mean(axis=1).max() > 0.75  # the plateau ranks at chance (0.42 to 0.52)
    _assert_equals_sklearn(ours, X, y, folds)


def test_cell_folds_are_shuffled_not_bands_of_latitude():
    rng = np.random.default_rng(4)
    cells = np.sort(rng.choice(100_000, 1000, replace=False))  # ids follow the grid, south to north
    y = rng.integers(0, 2, 1000)
    for _, valid in cv_folds(y, cells, 5, "l", seed=1991):
        assert np.ptp(cells[valid]) > 0.9 * np.ptp(cells)  # each fold spans the whole country
    again = cv_folds(y, cells, 5, "l", seed=1991)
    assert all((a[1] == b[1]).all() for a, b in zip(again, cv_folds(y, cells, 5, "l", seed=1991)))


def test_a_best_alpha_at_the_edge_of_a_given_list_is_flagged():
    X, y, groups = _peaked_problem(seed=1)  # best near 1780: the notebook's list stops at 10
    with pytest.warns(AlphaAtGridEdgeWarning, match="largest one searched"):
        ours = RidgeGridClassifier(ALPHAS, cv=cv_folds(y, groups, 5, "l", seed=0)).fit(X, y)
    assert ours.alpha_at_grid_edge_ and ours.best_alpha_ == 10.0


def test_standardized_features_equal_sklearn_on_scaled_features():
    X, y, groups = _problem(seed=8)
    X[:, :50] *= 30  # features on different scales: standardising changes the fit
    folds = cv_folds(y, groups, 5, "l", seed=0)
    ours = RidgeGridClassifier("auto", standardize=True, cv=folds).fit(X, y)
    assert ours.scale_ is not None
    _assert_equals_sklearn(ours, X, y, folds, standardize=True)


def test_the_kernel_is_the_same_to_the_last_bit_on_one_thread_or_many(monkeypatch):
    from asm_dask.model.numerics import gram

    Z = np.random.default_rng(0).normal(size=(1100, 900))
    many = gram(Z)
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    np.testing.assert_array_equal(gram(Z), many)
    np.testing.assert_array_equal(many, many.T)
    np.testing.assert_allclose(many, Z @ Z.T, rtol=1e-12, atol=1e-9)


def test_penalty_path_is_exact_also_where_lanczos_stops_short():
    """Alphas that the Lanczos run does not resolve within its steps are solved by Cholesky."""
    rng = np.random.default_rng(0)
    M = rng.normal(size=(120, 80)) * np.logspace(0, -3, 80)  # eigenvalues over 6 decades
    A = M @ M.T
    b, rows = rng.normal(size=120), rng.normal(size=(7, 120))
    alphas = np.logspace(-4, 2, 13)
    path = penalty_path(A.copy(), b, rows, 0.5, alphas, max_steps=15)
    assert path.steps == 15 and path.exact  # some alphas solved exactly, not by Lanczos
    expected = np.array([rows @ np.linalg.solve(A + a * np.eye(120), b) + 0.5 for a in alphas])
    np.testing.assert_allclose(path.scores(alphas), expected, rtol=1e-8, atol=1e-8)
    full = penalty_path(A.copy(), b, rows, 0.5, alphas)
    assert not full.exact or full.steps < 120
    np.testing.assert_allclose(full.scores(alphas), expected, rtol=1e-7, atol=1e-7)


def test_folds_stay_exact_when_lanczos_stops_short_of_the_grid(monkeypatch):
    """Every alpha of the grid that a capped Lanczos run leaves unresolved is solved
    directly, not scored from where the run stopped."""
    from asm_dask.model import penalty_path as module

    rng = np.random.default_rng(5)
    X = (rng.normal(size=(120, 300)) * np.logspace(0, -4, 300)).astype(np.float64)
    y = (X[:, :5].sum(axis=1) + 0.01 * rng.normal(size=120) > 0).astype(int)
    folds = cv_folds(y, np.arange(120), 5, "l", seed=0)
    monkeypatch.setattr(module, "MAX_STEPS", 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlphaAtGridEdgeWarning)
        ours = RidgeGridClassifier([1e-4, 1e-3, 1e-2, 0.1], cv=folds).fit(X, y)
    _assert_equals_sklearn(ours, X, y, folds)


@pytest.mark.parametrize("n, k", [(300, 500), (700, 80)])
@pytest.mark.parametrize("seed, share, factor, winner", [(0, 0.5, 0.2, False), (6, 0.04, 40, True)])
def test_standardize_auto_is_each_way_searched_alone(n, k, seed, share, factor, winner):
    """Both ways come from one conversion of the rows (the standardised rows are the raw
    ones divided in place): each must be what a search of that way alone finds, dual and
    primal, and the model kept must be the winner's, raw or standardised."""
    X, y, groups = _problem(n, k, seed=seed)
    X[:, : int(share * k)] *= factor  # features on other scales: the two ways differ
    folds = cv_folds(y, groups, 5, "l", seed=0)
    both = RidgeGridClassifier("auto", cv=folds, standardize="auto").fit(X, y)
    assert both.standardize_ == winner
    alone = {way: RidgeGridClassifier("auto", cv=folds, standardize=way).fit(X, y) for way in (False, True)}
    for way, name in ((False, "raw"), (True, "standardized")):
        assert both.cv_auc_by_scaling_[name] == alone[way].cv_auc_.mean(axis=1).max()
    kept = alone[both.standardize_]
    assert both.solver_ == kept.solver_ == ("dual" if n < k else "primal")
    np.testing.assert_array_equal(both.cv_auc_, kept.cv_auc_)
    np.testing.assert_array_equal(both.coef_, kept.coef_)


def test_a_constant_feature_gets_no_weight_when_standardised():
    X, y, groups = _problem(n=37, k=60, seed=9)
    X[:, 0] = 0.5118216247002567  # its mean computes a bit off: centring leaves rounding noise
    folds = cv_folds(y, groups, 5, "l", seed=0)
    ours = RidgeGridClassifier("auto", standardize=True, cv=folds).fit(X, y)
    assert ours.coef_[0] == 0
    reference = GridSearchCV(RidgeClassifier(), {"alpha": list(ours.alphas_)}, cv=folds, scoring="roc_auc")
    scaled = X.astype(np.float64)
    scaled[:, 1:] /= scaled[:, 1:].std(axis=0)
    reference.fit(scaled, y)
    shifted = X.copy()
    shifted[:, 0] += 0.1
    np.testing.assert_allclose(ours.decision_function(shifted), ours.decision_function(X), atol=1e-12)
    assert ours.best_alpha_ == reference.best_params_["alpha"]


def test_a_tie_at_the_end_of_the_grid_is_an_edge_and_one_alpha_is_none():
    x = np.random.default_rng(3).normal(size=(200, 1))
    y = (x[:, 0] > 0).astype(int)
    folds = cv_folds(y, np.arange(200), 5, "l", seed=0)
    with pytest.warns(AlphaAtGridEdgeWarning, match="largest one searched .* and ties 1 other"):
        tied = RidgeGridClassifier([10.0, 0.1], cv=folds).fit(x, y)
    with _no_warning():
        single = RidgeGridClassifier([1.0], cv=folds).fit(x, y)
    assert tied.alpha_at_grid_edge_ and tied.best_alpha_ == 10.0  # the first given
    assert not single.alpha_at_grid_edge_


def test_a_resumed_penalty_path_is_the_one_run_for_the_smaller_alphas():
    """A downward extension of the grid goes on with the runs of the first solve: it must
    stop at the same step and give the same bits as one run for all the alphas."""
    rng = np.random.default_rng(2)
    M = rng.normal(size=(150, 90)) * np.logspace(0, -2, 90)
    A = M @ M.T
    b, rows = rng.normal(size=150), rng.normal(size=(6, 150))
    large, all_alphas = np.logspace(0, 3, 7), np.logspace(-3, 3, 13)
    first = penalty_path(A, b, rows, 0.0, large)
    resumed = penalty_path(A, b, rows, 0.0, all_alphas, resume=first)
    direct = penalty_path(A, b, rows, 0.0, all_alphas)
    assert first.steps < resumed.steps == direct.steps
    np.testing.assert_array_equal(resumed.scores(all_alphas), direct.scores(all_alphas))
    expected = np.array([rows @ np.linalg.solve(A + a * np.eye(150), b) for a in all_alphas])
    np.testing.assert_allclose(resumed.scores(all_alphas), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(first.scores(large), expected[6:], rtol=1e-8, atol=1e-10)  # still the first path's
    again = penalty_path(A, b, rows, 0.0, large, resume=first)  # nothing smaller asked: no step
    assert again.steps == resumed.steps


def test_a_penalty_path_sent_at_an_odd_byte_resumes_to_the_same_bits():
    """A path goes to a worker process to be resumed, and comes back, inside a message whose
    arrays may start at any byte: there NumPy would multiply with loops of its own instead
    of BLAS, adding in another order. Unpickled, its arrays are aligned again."""
    import pickle

    rng = np.random.default_rng(2)
    M = rng.normal(size=(150, 90)) * np.logspace(0, -2, 90)
    A = M @ M.T
    b, rows = rng.normal(size=150), rng.normal(size=(6, 150))
    large, all_alphas = np.logspace(0, 3, 7), np.logspace(-3, 3, 13)
    buffers = []
    message = pickle.dumps(penalty_path(A, b, rows, 0.0, large), protocol=5, buffer_callback=buffers.append)
    at_odd_bytes = [memoryview(bytearray(1) + buffer.raw())[1:] for buffer in buffers]
    sent = pickle.loads(message, buffers=at_odd_bytes)
    assert all(array.flags.aligned for array in (sent.basis, sent.weights, sent.theta, sent.lanczos.Q,
                                                 sent.lanczos.diagonal, sent.lanczos.beta))
    resumed = penalty_path(A, b, rows, 0.0, all_alphas, resume=sent)
    np.testing.assert_array_equal(resumed.scores(all_alphas), penalty_path(A, b, rows, 0.0, all_alphas).scores(all_alphas))


def test_penalty_path_of_a_zero_right_hand_side_is_zero():
    path = penalty_path(np.eye(4), np.zeros(4), np.ones((2, 4)), 0.25, np.array([1.0, 10.0]))
    np.testing.assert_array_equal(path.scores([1.0, 10.0]), np.full((2, 2), 0.25))


def test_calibrated_model_reproduces_isotonic_regression_and_round_trips(tmp_path):
    X, y, groups = _problem(seed=2)
    ridge = RidgeGridClassifier("auto", cv=cv_folds(y, groups, 5, "l", seed=0)).fit(X, y)
    reference = IsotonicRegression(out_of_bounds="clip").fit(ridge.oof_decision_, y)
    model = CalibratedClassifier.from_fitted(ridge, ridge.oof_decision_, y, "isotonic", X=X,
                                             feature_names=[f"f{j}" for j in range(X.shape[1])])
    scores = model.score_matrix(X) * 3  # beyond the fitted range too: clipped
    np.testing.assert_allclose(model.calibrate(scores), reference.predict(scores), atol=1e-12)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    rows = pd.DataFrame(X, columns=model.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))


def test_sigmoid_calibration_equals_platt_scaling_of_sklearn(tmp_path):
    X, y, groups = _problem(seed=3)
    ridge = RidgeGridClassifier("auto", cv=cv_folds(y, groups, 5, "l", seed=0)).fit(X, y)
    calibrator = fit_calibrator(ridge.oof_decision_, y, "sigmoid")
    a, b = _sigmoid_calibration(ridge.oof_decision_, y)
    assert calibrator.params["a"] == pytest.approx(a, rel=1e-4)
    assert calibrator.params["b"] == pytest.approx(b, rel=1e-4, abs=1e-6)
    model = CalibratedClassifier.from_fitted(ridge, ridge.oof_decision_, y, "sigmoid", X=X,
                                             feature_names=[f"f{j}" for j in range(X.shape[1])])
    assert model.calibrator_ == calibrator
    rows = pd.DataFrame(X, columns=model.feature_names_in_)
    probability = model.predict_proba(rows)[:, 1]
    assert ((0 < probability) & (probability < 1)).all()
    save_model(model, tmp_path)
    np.testing.assert_array_equal(load_model(tmp_path).predict_proba(rows)[:, 1], probability)


def test_rows_sharing_a_group_never_straddle_the_splits():
    X, y, groups = _problem(n=400)
    train, test = train_test_split_groups(y, groups, SplitConfig(), "l")
    assert not set(groups[train]) & set(groups[test])
    assert abs(len(test) / len(y) - 0.2) < 0.08
    again = train_test_split_groups(y, groups, SplitConfig(), "l")
    assert (again[0] == train).all()  # seeded
    folds = cv_folds(y[train], groups[train], 5, "l", seed=0)
    for fit_rows, valid_rows in folds:
        assert not set(groups[train][fit_rows]) & set(groups[train][valid_rows])
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(train)))


def test_blocked_folds_never_share_a_block_and_hold_both_classes():
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(7, 10, 3000), rng.uniform(-13, -10, 3000)
    # Positives cluster in a few places, so that few blocks hold a positive majority.
    y = (rng.random(3000) < np.where((lat > 9.2) & (lon < -12), 0.7, 0.12)).astype(int)
    blocks = block_groups(lat, lon, 0.5)
    folds = cv_folds(y, blocks, 5, "labels.csv", seed=0)
    for fit_rows, valid_rows in folds:
        assert not set(blocks[fit_rows]) & set(blocks[valid_rows])
        assert set(y[valid_rows]) == {0, 1}
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(3000))
    with pytest.raises(InputError, match="cells/blocks"):
        cv_folds(y, block_groups(lat, lon, 2.0), 5, "labels.csv", seed=0)  # four blocks only


def test_block_groups_put_nearby_cells_together():
    lat = np.array([8.001, 8.499, 8.501, 9.2])
    lon = np.array([-11.9, -11.6, -11.9, -11.9])
    groups = split_groups(np.arange(4), lat, lon, SplitConfig(group_by="block", block_size=0.5))
    assert groups[0] == groups[1] and len(set(groups)) == 3


def test_too_few_labels_for_the_folds():
    y = np.array([0, 1, 0, 1, 1, 0])
    with pytest.raises(InputError, match="fewer than model.cv_folds=5"):
        cv_folds(y, np.array([1, 1, 2, 2, 3, 3]), 5, "labels.csv", seed=0)


@pytest.mark.parametrize("X, y, alphas, message", [
    (np.ones((4, 2)), np.array([0, 0, 0, 0]), "auto", "one class only"),
    (np.full((4, 2), np.nan), np.array([0, 1, 0, 1]), "auto", "NaN"),
    (np.ones(4), np.array([0, 1, 0, 1]), "auto", "2D array"),
    (np.ones((4, 2)), np.array([0, 1, 0, 1]), "wide", "'auto' or a list"),
    (np.ones((4, 2)), np.array([0, 1, 0, 1]), [1.0, -2.0], "positive numbers"),
    (np.ones((4, 2)), np.array([0, 1, 0, 1]), [1.0, 1.0, 10.0], "repeat"),
])
def test_ridge_validates_its_inputs(X, y, alphas, message):
    with pytest.raises(ValueError, match=message):
        RidgeGridClassifier(alphas).fit(X, y)


def test_a_feature_far_wider_than_the_rest_is_warned_of_and_standardizing_silences_it():
    """A column of values near float32's limit (3e38) in every tenth row takes the whole
    kernel, and the model is that column. Ridge says which column; standardized, the
    column is one of many."""
    X, y, groups = _peaked_problem(seed=2)
    X[::10, 3] = 3e38
    folds = cv_folds(y, groups, 5, "l", seed=0)
    with pytest.warns(FeatureScaleWarning, match=r"column\(s\) \[3\]"):
        raw = RidgeGridClassifier("auto", cv=folds).fit(X, y)
    assert raw.dominant_features_.tolist() == [3]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureScaleWarning)
        scaled = RidgeGridClassifier("auto", standardize=True, cv=folds).fit(X, y)
    assert scaled.dominant_features_.size == 0
    assert scaled.cv_auc_.mean(axis=1).max() > raw.cv_auc_.mean(axis=1).max() + 0.1


def test_extra_cv_scores_the_chosen_penalty_and_above_as_a_search_on_its_folds_would():
    """The other grouping's folds, scored in the same fit on its kernel, give what a
    search on those folds alone gives, alpha by alpha and fold by fold."""
    X, y, groups = _peaked_problem(seed=4)
    folds = cv_folds(y, groups, 5, "l", seed=0)
    other = cv_folds(y, np.arange(len(y)) // 10, 4, "l", seed=1)
    ridge = RidgeGridClassifier("auto", cv=folds, extra_cv=other).fit(X, y)
    grid = ridge.alphas_
    np.testing.assert_array_equal(ridge.extra_cv_alphas_, grid[grid >= ridge.best_alpha_ / 100])
    assert ridge.extra_cv_auc_.shape == (len(ridge.extra_cv_alphas_), 4)
    alone = RidgeGridClassifier(list(ridge.extra_cv_alphas_), cv=other).fit(X, y)
    np.testing.assert_allclose(ridge.extra_cv_auc_, alone.cv_auc_, atol=1e-12)
    assert not hasattr(RidgeGridClassifier("auto", cv=folds).fit(X, y), "extra_cv_auc_")
    # taken as cv is: a number of stratified folds
    assert RidgeGridClassifier("auto", cv=folds, extra_cv=3).fit(X, y).extra_cv_auc_.shape[1] == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_memory_freed_between_stages_goes_back_to_the_system():
    """Blocks under glibc's mmap threshold stay in its heap once freed (a fit frees
    hundreds of MB of them); released, the process's resident memory falls."""
    def resident_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    freed = np.ones(4_000_000)
    del freed  # a 32 MB block freed: glibc now serves blocks up to that size from its heap
    blocks = [np.ones(100_000) for _ in range(3000)]  # 800 kB each, 2.4 GB of heap
    pinned = np.ones(100_000)  # above them: the heap cannot shrink from its top
    held = resident_mb()
    del blocks
    kept = resident_mb()
    release_freed_memory()
    assert kept > held - 100  # glibc kept them
    assert resident_mb() < kept - 2000
    del pinned
