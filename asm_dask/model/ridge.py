"""Fit stage: a ridge classifier whose penalty is chosen by cross-validated ROC AUC.

It gives what scikit-learn's ``GridSearchCV(RidgeClassifier(), {"alpha": alphas},
scoring="roc_auc", cv=folds)`` gives on the same folds and alphas, but solves each fold
once for every alpha (:mod:`asm_dask.model.ridge_cv`), so a wide grid costs about what
the notebook's four alphas cost.

``alphas="auto"`` searches a logarithmic grid of six decades, four points each, from the
decade of the features' total variance up (the mean eigenvalue of the kernel, which sets
the scale at which a penalty bites), and extends it a decade at a time while the best
alpha sits at either end. Small alphas cost the most: the folds' Lanczos runs resolve
alphas from the largest down, so a decade more below goes on from where they stopped.
The folds run as tasks on the Dask cluster of the current client, if there is one
(a notebook's ``Client()``, or the one :func:`asm_dask.run` starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import AlphaAtGridEdgeWarning, FeatureScaleWarning, warn
from .binary import BinaryClassifier
from .numerics import current_client, linear_scores, one_blas_thread
from .ridge_cv import RidgeProblem, TrainingRows, both_classes

#: the auto grid: decades below and above the decade of the features' total variance,
#: points per decade. Best alphas seen lie from 0.001 to 800 times the total variance,
#: most from 0.05 to 15; each decade below costs the folds more Lanczos steps than all
#: above it (Sierra Leone: 60 steps from the total variance's decade, 230 from two
#: below), so the grid grows downwards only when its best alpha is its smallest.
AUTO_DECADES_BELOW, AUTO_DECADES_ABOVE, POINTS_PER_DECADE = 0, 6, 4
#: decades the auto grid may grow beyond its first six, in either direction together
MAX_EXTENSIONS = 8
#: decades the auto grid looks below a flat curve that reaches its smallest alpha: the
#: penalty may be too strong there for every alpha of the grid (a feature of large
#: variance and none of the signal sets the total variance), so that the curve only
#: starts to rise lower down, where the grid of two decades lower used to start
PLATEAU_DECADES_BELOW = 2
#: a feature whose spread over the training rows is this many times the typical
#: feature's outweighs every other in ridge's penalty: whatever alpha, the others' weights
#: shrink to nothing and the model is that one feature
DOMINANT_SCALE_RATIO = 1e6


class RidgeGridClassifier(BinaryClassifier):
    """Ridge classifier whose penalty is chosen by cross-validated ROC AUC.

    A scikit-learn estimator for binary labels: it goes into a ``Pipeline``,
    ``cross_val_score`` or ``clone`` like any other.

    Parameters
    ----------
    alphas : "auto" or sequence of float, default "auto"
        ``"auto"``: a wide logarithmic grid, extended until the best alpha is interior
        (up to ``MAX_EXTENSIONS`` decades). A sequence is searched exactly as given.
    cv : int, cross-validation splitter or iterable of (train, validation) index arrays, default 5
        How the rows are split to choose alpha, as ``GridSearchCV`` takes it: an int is
        that many stratified folds; a splitter that uses groups (``GroupKFold``) takes
        them from :meth:`fit`.
    standardize : bool or "auto", default False
        Divide each feature by its standard deviation over the training rows (features
        that do not vary are left as they are). The same scale serves every fold.
        ``"auto"`` searches both ways on the same folds and keeps the one with the higher
        best mean CV AUC (raw features on a tie).
    extra_cv : int, cross-validation splitter or iterable of (train, validation) index arrays, optional
        Taken as ``cv`` is. Folds of another grouping (spatial blocks, where ``cv`` keeps cells together) on
        which the chosen penalty and the larger ones, from two decades below it, are
        scored once alpha is chosen: they choose nothing, and show whether that grouping
        would want more penalty. Scored in the same fit, they reuse its kernel.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels, sorted; ``classes_[1]``, the larger, is the positive one (ASM, with
        labels 0 and 1; with text labels, the later in sort order).
    alphas_ : ndarray
        The alphas searched, in the order searched (ascending for ``"auto"``); on a tie
        the first wins.
    cv_auc_ : ndarray of shape (n_alphas, n_folds)
        Validation ROC AUC of every alpha on every fold; NaN for a fold whose validation
        rows hold one class (left out of the mean, with a warning).
    best_alpha_ : float
        The alpha with the highest mean validation ROC AUC (the first, on ties).
    standardize_ : bool
        Whether the features were standardized: ``standardize``, or what ``"auto"`` chose.
    cv_auc_by_scaling_ : dict
        The best mean CV AUC of each way searched (``raw``, ``standardized``).
    alpha_at_grid_edge_ : bool
        Whether the best alpha is the smallest or largest one searched (also when other
        alphas tie with it: the penalty then changes nothing there).
    n_grid_extensions_ : int
        Decades the auto grid was extended by.
    extra_cv_alphas_, extra_cv_auc_ : ndarray
        With ``extra_cv``: the alphas scored on its folds, and the validation ROC AUC of
        each (rows) on each of its folds (columns), NaN where a fold holds one class.
    oof_decision_ : ndarray of shape (n_samples,)
        Out-of-fold decision scores under ``best_alpha_``: each row scored by the model
        of the fold that held it out.
    dominant_features_ : ndarray of int
        Columns spread over :data:`DOMINANT_SCALE_RATIO` times wider than the typical
        one (none when standardized): ridge sees only them.
    coef_ : ndarray of shape (n_features,)
        Weights, in the units of the raw features, of the model refitted on all rows.
    intercept_ : float
    solver_ : {"dual", "primal"}
    scale_ : ndarray of shape (n_features,) or None
        The standard deviations the features were divided by.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had column names (a DataFrame).

    Notes
    -----
    The folds run as tasks on the cluster of the current ``distributed`` client, or in
    this process if there is none. BLAS runs on one thread inside every task
    (:func:`asm_dask.model.numerics.single_threaded`), so that the model is the same bit
    for bit on any cluster; the calling process gets its BLAS threads back afterwards.
    """

    def __init__(self, alphas: str | Sequence[float] = "auto", cv: Any = 5, standardize: bool | str = False,
                 extra_cv: Any = None):
        self.alphas = alphas
        self.cv = cv
        self.standardize = standardize
        self.extra_cv = extra_cv

    def fit(self, X: Any, y: Any, groups: Any = None) -> RidgeGridClassifier:
        """Choose alpha on the folds of ``cv`` by ROC AUC, and refit on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Two classes; the larger label (``classes_[1]``) is the positive one.
        groups : array-like of shape (n_samples,), optional
            Group of each row, for a ``cv`` splitter that keeps groups together.

        Returns
        -------
        RidgeGridClassifier
            This estimator, fitted.
        """
        # BLAS on one thread here too (the centring, the refit's product): the same bits
        # whatever this machine's core count.
        with one_blas_thread():
            return self._fit(X, y, groups)

    def _fit(self, X: Any, y: Any, groups: Any) -> RidgeGridClassifier:
        X, y = validate_data(self, X, y, y_numeric=False)
        y01 = self._binary_targets(y)
        given = _check_alphas(self.alphas)
        if self.standardize not in (True, False, "auto"):
            raise ValueError(f"standardize must be true, false or 'auto'; got {self.standardize!r}")
        folds = list(check_cv(self.cv, y01, classifier=True).split(X, y01, groups))
        scored = _scored_folds(folds, y01)
        client = current_client()
        ways = (False, True) if self.standardize == "auto" else (bool(self.standardize),)
        rows = TrainingRows(X)
        searches = {way: _search(problem, folds, scored, given)
                    for way, problem in zip(ways, RidgeProblem.each_scaling(rows, y01, ways, client))}
        self.cv_auc_by_scaling_ = {"standardized" if way else "raw": float(found.mean_auc[found.best])
                                   for way, found in searches.items()}
        self.standardize_ = max(ways, key=lambda way: searches[way].mean_auc[searches[way].best])
        found = searches[self.standardize_]
        searches.clear()  # the other way's kernel is freed before the refit
        problem = found.problem
        grid, cv_auc, best, mean_auc, paths = found.grid, found.cv_auc, found.best, found.mean_auc, found.paths
        self.n_grid_extensions_ = found.n_extensions

        self.alphas_ = grid
        self.cv_auc_ = cv_auc
        self.best_alpha_ = float(grid[best])
        # An end of the grid is an edge even where other alphas tie with it (a plateau
        # reaching the end): the penalty searched there changes nothing, which a reader
        # must know as much as a curve still rising.
        end = None if len(grid) < 2 else "smallest" if grid[best] == grid.min() else \
            "largest" if grid[best] == grid.max() else None
        self.alpha_at_grid_edge_ = end is not None
        if end is not None:
            ties = int((mean_auc == mean_auc[best]).sum()) - 1
            how = f" and ties {ties} other(s): the CV AUC does not change there" if ties else \
                "; a wider grid may find a better one"
            warn(f"the best ridge alpha, {self.best_alpha_:g}, is the {end} one searched "
                          f"({grid.min():g} to {grid.max():g}){how}", AlphaAtGridEdgeWarning)
        self.dominant_features_ = np.array([], dtype=int) if self.standardize_ else _dominant(problem.spread)
        if len(self.dominant_features_):
            warn(f"feature(s) at column(s) {self.dominant_features_[:5].tolist()} spread over "
                          f"{DOMINANT_SCALE_RATIO:g} times wider than the typical feature: ridge's penalty "
                          "shrinks every other feature to nothing; standardize the features, or check those "
                          "columns", FeatureScaleWarning)
        self.oof_decision_ = problem.out_of_fold(folds, paths, self.best_alpha_)
        if self.extra_cv is not None:
            extra = list(check_cv(self.extra_cv, y01, classifier=True).split(X, y01, groups))
            self.extra_cv_alphas_ = grid[grid >= self.best_alpha_ / 100]
            self.extra_cv_auc_ = problem.fold_auc(extra, problem.solve(extra, self.extra_cv_alphas_),
                                                  self.extra_cv_alphas_)
        coef = problem.refit(self.best_alpha_)
        self.scale_ = problem.scale
        self.coef_ = coef / self.scale_ if self.scale_ is not None else coef
        self.intercept_ = float(problem.target.mean() - problem.mean @ self.coef_)
        self.solver_ = problem.solver
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distance to the hyperplane; positive means ``classes_[1]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False)
        return linear_scores(X, self.coef_, self.intercept_)

    def predict(self, X: Any) -> np.ndarray:
        """The class of each row: ``classes_[1]`` where the decision function is positive.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]


def auto_grid(total_variance: float) -> np.ndarray:
    """Six decades up from the decade of the features' total variance, four points per decade.

    Values are rounded to three significant digits (1, 1.78, 3.16, 5.62, 10, ...), so
    that they read well in reports, in ascending order (the search order).
    """
    centre = int(np.floor(np.log10(max(total_variance, 1e-300))))
    exponents = np.arange((centre - AUTO_DECADES_BELOW) * POINTS_PER_DECADE,
                          (centre + AUTO_DECADES_ABOVE) * POINTS_PER_DECADE + 1) / POINTS_PER_DECADE
    return _round(10.0 ** exponents)


class _Search(NamedTuple):
    """One penalty search: the grid searched, every alpha's AUC on every fold, the best."""

    problem: RidgeProblem
    grid: np.ndarray
    cv_auc: np.ndarray
    mean_auc: np.ndarray
    best: int
    paths: Any
    n_extensions: int


def _search(problem: RidgeProblem, folds: list, scored: np.ndarray, given: np.ndarray | None) -> _Search:
    """Every alpha of the grid on every fold; the auto grid extended while its best alpha
    is at an end (up to :data:`MAX_EXTENSIONS` decades), and below a flat curve that
    reaches its smallest alpha (:data:`PLATEAU_DECADES_BELOW`)."""
    grid = given if given is not None else auto_grid(problem.total_variance)
    extensions = looked_below = 0
    paths = problem.solve(folds, grid)
    while True:
        cv_auc = problem.fold_auc(folds, paths, grid)
        # The first best in search order, as GridSearchCV picks: on the ascending auto
        # grid, ties go to the weakest penalty. (The strongest would be the simplest
        # model, but on a curve flat up to huge penalties it shrinks the scores until
        # the folds' intercepts dominate the pooled out-of-fold scores, and the
        # calibration fitted on them collapses to one value.)
        mean_auc = cv_auc[:, scored].mean(axis=1)
        best = int(np.argmax(mean_auc))
        edge = _edge(grid, mean_auc, best)
        if edge is None and best == 0 and looked_below < PLATEAU_DECADES_BELOW:
            edge, looked_below = "smallest", looked_below + 1
        if given is not None or edge is None or extensions >= MAX_EXTENSIONS:
            return _Search(problem, grid, cv_auc, mean_auc, best, paths, extensions)
        grid = _extend(grid, downwards=edge == "smallest")
        extensions += 1
        if edge == "smallest":  # larger alphas are resolved already: a run resolves from the top down
            paths = problem.solve(folds, grid, resume=paths)


def _check_alphas(alphas: Any) -> np.ndarray | None:
    """``None`` for the auto grid, else the given alphas as floats, in order."""
    if isinstance(alphas, str):
        if alphas == "auto":
            return None
        raise ValueError(f"alphas must be 'auto' or a list of positive numbers; got {alphas!r}")
    values = np.asarray(alphas, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not (values > 0).all() or not np.isfinite(values).all():
        raise ValueError(f"alphas must be 'auto' or a non-empty list of positive numbers; got {alphas!r}")
    if len(np.unique(values)) < len(values):
        raise ValueError(f"alphas must not repeat a value; got {alphas!r}")
    return values


def _dominant(spread: np.ndarray) -> np.ndarray:
    """Columns whose spread is over :data:`DOMINANT_SCALE_RATIO` times the median spread of
    the columns that vary."""
    varying = spread[spread > 0]
    if not varying.size:
        return np.array([], dtype=int)
    return np.flatnonzero(spread > DOMINANT_SCALE_RATIO * np.median(varying))


def _scored_folds(folds: list[tuple[np.ndarray, np.ndarray]], y01: np.ndarray) -> np.ndarray:
    """Which folds can score alpha: those whose validation rows hold both classes. The
    others are left out of the mean, with a warning; none is an error."""
    scored = np.array([both_classes(y01[valid]) for _, valid in folds])
    if not scored.any():
        raise ValueError(f"no fold of cv={len(folds)} holds both classes among its validation rows "
                         f"({int(y01.sum())} of {len(y01)} rows are classes_[1]): ROC AUC cannot choose alpha; "
                         "use fewer folds")
    if not scored.all():
        warn(f"fold(s) {np.flatnonzero(~scored).tolist()} of {len(folds)} hold one class only among their "
             "validation rows: left out of the mean CV AUC (cv_auc_ is NaN there); fewer folds give each fold "
             "both classes")
    return scored


def _edge(grid: np.ndarray, mean_auc: np.ndarray, best: int) -> str | None:
    """``"smallest"`` or ``"largest"`` if the chosen alpha is that end of the grid and
    scores better than every other alpha; ``None`` if it is interior, or tied with another
    alpha (a plateau), or the only one."""
    others = np.delete(mean_auc, best)
    if not others.size or others.max() >= mean_auc[best]:
        return None
    if grid[best] == grid.min():
        return "smallest"
    return "largest" if grid[best] == grid.max() else None


def _extend(grid: np.ndarray, downwards: bool) -> np.ndarray:
    """The (ascending) grid with one more decade below its smallest or above its largest."""
    steps = np.arange(1, POINTS_PER_DECADE + 1) / POINTS_PER_DECADE
    if downwards:
        return np.concatenate([_round(grid.min() / 10.0 ** steps[::-1]), grid])
    return np.concatenate([grid, _round(grid.max() * 10.0 ** steps)])


def _round(values: np.ndarray) -> np.ndarray:
    return np.array([float(f"{v:.3g}") for v in values])
