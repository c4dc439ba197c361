"""Fit stage, beyond ridge: the other estimators, compared on the same folds.

Ridge is fitted by :class:`asm_dask.model.ridge.RidgeGridClassifier`, exactly and fast. Every
other estimator of ``model.estimators`` is tuned here by dask-ml's ``GridSearchCV`` on
the job's Dask cluster, on exactly the folds ridge's penalty is chosen on and scored by
ROC AUC, so that the mean CV AUCs compare like with like. At its best parameters each
estimator is then fitted once more per fold, as tasks, for its out-of-fold scores: the
training rows the calibration is fitted on, each scored by a model that did not see it
(never the test rows). dask-ml refits the best parameters on every training row; that
model is the one that predicts, if it is selected.

The selected estimator has the highest mean CV AUC (the first in ``model.estimators``
on a tie), unless ``model.select`` names one.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client

from ..errors import InputError
from ..runtime.progress import wait_with_progress
from .classifier import CalibratedClassifier
from .estimators import LINEAR, make_estimator, params_at_grid_edge, raw_scores, search_grid, user_params
from .evaluation import roc_auc
from .ridge import RidgeGridClassifier

log = logging.getLogger(__name__)

Folds = Sequence[tuple[np.ndarray, np.ndarray]]
#: training rows of each class a setting is first fitted on, to check that it can be
FIT_CHECK_ROWS_PER_CLASS = 10


@dataclass(frozen=True)
class Candidate:
    """One estimator, tuned on the folds.

    ``fitted`` is refitted on every training row at ``best_params`` (for ridge, the
    :class:`RidgeGridClassifier`); ``oof_scores`` are the training rows' out-of-fold
    scores at those parameters; ``grid`` lists every point searched with its mean and
    standard deviation of CV AUC.
    """

    name: str
    best_params: dict[str, Any]
    cv_auc_by_fold: np.ndarray
    grid: list[dict[str, Any]]
    oof_scores: np.ndarray
    fit_seconds: float
    fitted: Any

    @property
    def cv_auc(self) -> float:
        return float(self.cv_auc_by_fold.mean())


def ridge_candidate(ridge: RidgeGridClassifier, fit_seconds: float) -> Candidate:
    """The fitted ridge as a candidate (its grid is the penalty path)."""
    best = int(np.flatnonzero(ridge.alphas_ == ridge.best_alpha_)[0])
    grid = [{"params": {"alpha": float(a)}, "cv_auc": float(m), "cv_auc_sd": float(s)}
            for a, m, s in zip(ridge.alphas_, ridge.cv_auc_.mean(axis=1), ridge.cv_auc_.std(axis=1))]
    return Candidate("ridge", {"alpha": float(ridge.best_alpha_)}, ridge.cv_auc_[best].copy(), grid,
                     ridge.oof_decision_, fit_seconds, ridge)


def search(name: str, grid: dict[str, Sequence[Any]] | None, X: np.ndarray, y: np.ndarray, folds: Folds,
           seed: int, client: Client) -> Candidate:
    """Tune ``name`` over ``grid`` (``None``: its built-in grid) with dask-ml on ``folds``."""
    from dask_ml.model_selection import GridSearchCV

    start = time.perf_counter()
    grid = search_grid(name, None if grid is None else {k: list(v) for k, v in grid.items()})
    n_points = int(np.prod([len(v) for v in grid.values()]))
    check_settings_fit(name, grid, X, y, seed)
    log.info("fit: %s, %d setting(s) x %d folds on the cluster", name, n_points, len(folds))
    # error_score=nan: dask-ml resubmits a fit that raised, forever; a fit that fails
    # scores NaN instead, and is reported below.
    searched = GridSearchCV(make_estimator(name, seed), grid, cv=[(t, v) for t, v in folds],
                            scoring="roc_auc", refit=True, scheduler=client, error_score=np.nan)
    with warnings.catch_warnings():
        # dask-ml puts the training rows (tens of MB) into the graph it sends, once per
        # search and once for the refit; distributed warns of any graph that large.
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        searched.fit(X, y)
    results = searched.cv_results_
    failed = [user_params(p) for p, m in zip(results["params"], results["mean_test_score"]) if np.isnan(m)]
    if failed:
        raise InputError(f"model.estimators.{name}: scikit-learn could not fit {len(failed)} of the "
                         f"{n_points} settings on the training rows, e.g. {failed[0]}; remove them from the grid")
    best = int(searched.best_index_)
    by_fold = np.array([results[f"split{f}_test_score"][best] for f in range(len(folds))], dtype=np.float64)
    points = [{"params": user_params(p), "cv_auc": float(m), "cv_auc_sd": float(s)}
              for p, m, s in zip(results["params"], results["mean_test_score"], results["std_test_score"])]
    oof = out_of_fold_scores(name, searched.best_estimator_, X, y, folds, client)
    return Candidate(name, user_params(searched.best_params_), by_fold, points, oof,
                     time.perf_counter() - start, searched.best_estimator_)


def check_settings_fit(name: str, grid: dict[str, list[Any]], X: np.ndarray, y: np.ndarray, seed: int) -> None:
    """Fit every setting of ``grid`` once on a few training rows of each class, so that
    settings scikit-learn refuses only when fitting (``bootstrap: false`` with
    ``max_samples``, an ``l1`` penalty with a solver that has none) are one line naming
    them, before the search: a few milliseconds a setting."""
    from sklearn.base import clone
    from sklearn.model_selection import ParameterGrid

    rows = np.concatenate([np.flatnonzero(y == label)[:FIT_CHECK_ROWS_PER_CLASS] for label in (0, 1)])
    estimator = make_estimator(name, seed)
    for params in ParameterGrid(grid):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence on a handful of rows says nothing
                clone(estimator).set_params(**params).fit(X[rows], y[rows])
        except (ValueError, TypeError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"model.estimators.{name}: scikit-learn cannot fit the setting "
                             f"{user_params(params)}: {message}") from None


def out_of_fold_scores(name: str, estimator: Any, X: np.ndarray, y: np.ndarray, folds: Folds,
                       client: Client) -> np.ndarray:
    """Every row's score from a clone of ``estimator`` fitted on the other folds, a task per fold."""
    # Keys of their own (hash=False): a key named by content may be one dask-ml's search
    # used, and released as that search ended, under these tasks.
    [X_shared, y_shared] = client.scatter([X, y], broadcast=True, hash=False)
    futures = [client.submit(_fold_scores, name, estimator, X_shared, y_shared, train, valid, pure=False)
               for train, valid in folds]
    scores = np.empty(len(y))
    for (_, valid), fold in zip(folds, wait_with_progress(client, futures, f"fit: {name} out of fold")):
        scores[valid] = fold
    return scores


def _fold_scores(name: str, estimator: Any, X: np.ndarray, y: np.ndarray, train: np.ndarray,
                 valid: np.ndarray) -> np.ndarray:
    from sklearn.base import clone

    return raw_scores(name, clone(estimator).fit(X[train], y[train]), X[valid])


def select(candidates: Sequence[Candidate], forced: str | None) -> tuple[Candidate, str]:
    """The estimator that predicts, and why: ``model.select``, or the highest mean CV AUC."""
    if forced is not None:
        return next(c for c in candidates if c.name == forced), "model.select"
    return max(candidates, key=lambda c: c.cv_auc), "cv_auc"  # max keeps the first of a tie


def calibrated_model(candidate: Candidate, y_train: np.ndarray, method: str, X_train: np.ndarray,
                     folds: Folds, feature_names: Sequence[str]) -> CalibratedClassifier:
    """``candidate``'s estimator, refitted on every training row, calibrated on its
    out-of-fold scores of them (``X_train`` fingerprints a model that is not linear)."""
    return CalibratedClassifier.from_fitted(candidate.fitted, candidate.oof_scores, y_train, method, X=X_train,
                                            cv=list(folds), best_params=candidate.best_params,
                                            feature_names=feature_names)


def comparison(candidates: Sequence[Candidate], models: dict[str, Any], X_test: np.ndarray, y_test: np.ndarray,
               blocked_cv_auc: dict[str, float]) -> dict[str, dict[str, Any]]:
    """``metrics.json``'s ``model_comparison``: per estimator its CV AUC on the folds of
    the search (and on blocked folds where computed), best parameters, every grid
    point, and its held-out test AUC before and after its own calibration."""
    table = {}
    for candidate in candidates:
        model = models[candidate.name]
        scores = model.score_matrix(X_test)
        entry = {"cv_auc": candidate.cv_auc, "cv_auc_sd": float(candidate.cv_auc_by_fold.std()),
                 "cv_auc_by_fold": [float(v) for v in candidate.cv_auc_by_fold],
                 "best_params": candidate.best_params, "grid": candidate.grid,
                 "params_at_grid_edge": [] if candidate.name == "ridge" else
                 params_at_grid_edge(candidate.best_params, candidate.grid),
                 "linear": candidate.name in LINEAR,
                 "test_auc_uncalibrated": roc_auc(y_test, scores),
                 "test_auc": roc_auc(y_test, model.calibrate(scores)),
                 "fit_seconds": round(candidate.fit_seconds, 3)}
        if candidate.name in blocked_cv_auc:
            entry["blocked_cv_auc"] = blocked_cv_auc[candidate.name]
        table[candidate.name] = entry
    return table
