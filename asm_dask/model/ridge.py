"""Fit stage: a ridge classifier whose penalty is chosen by cross-validated ROC AUC.

It gives what scikit-learn's ``GridSearchCV(RidgeClassifier(), {"alpha": alphas},
scoring="roc_auc", cv=folds)`` gives on the same folds and alphas, but solves each fold
once for every alpha (:mod:`asm_dask.model.penalty_path`), so a wide grid costs about what the
notebook's four alphas cost. With fewer training rows than features it works with the
kernel ``Z Z'`` (dual); with more, with the Gram matrix ``Z'Z`` (primal): memory grows
with ``min(rows, features)^2``. ``Z`` is the training features, centred (and scaled, with
``standardize``) once over all training rows; every fold then centres its own part.

``alphas="auto"`` searches a logarithmic grid of eight decades, four points each, placed
by the features' total variance (the mean eigenvalue of the kernel, which sets the scale
at which a penalty bites), and extends it a decade at a time while the best alpha sits at
either end. The folds run as tasks on the Dask cluster. Targets are -1/+1 as in
``RidgeClassifier``; the intercept is fitted by centring.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from distributed import Client
from threadpoolctl import threadpool_limits

from ..runtime.progress import wait_with_progress
from .evaluation import roc_auc
from .penalty_path import PenaltyPath, penalty_path

#: the auto grid: decades below and above the features' total variance, points per decade.
#: Best alphas seen sit near the total variance; small ones cost the most Lanczos steps.
AUTO_DECADES_BELOW, AUTO_DECADES_ABOVE, POINTS_PER_DECADE = 2, 6, 4
#: decades the auto grid may grow beyond its first eight, in either direction together
MAX_EXTENSIONS = 6
#: once the grid grows downwards, the folds are solved again for this many decades below
#: it too, so that the next extensions need no new solve (small alphas cost the most steps)
_HEADROOM_DECADES = 2

Folds = Sequence[tuple[np.ndarray, np.ndarray]]
T = TypeVar("T")


#: a feature whose spread over the training rows is this many times the typical
#: feature's outweighs every other in ridge's penalty: whatever alpha, the others' weights
#: shrink to nothing and the model is that one feature
DOMINANT_SCALE_RATIO = 1e6


class AlphaAtGridEdgeWarning(UserWarning):
    """The best penalty is the smallest or largest one searched."""


class FeatureScaleWarning(UserWarning):
    """Some features spread so much wider than the rest that ridge sees only them."""


class RidgeGridClassifier:
    """Ridge classifier whose penalty is chosen by cross-validated ROC AUC.

    Parameters
    ----------
    alphas : "auto" or sequence of float
        ``"auto"``: a wide logarithmic grid, extended until the best alpha is interior
        (up to ``MAX_EXTENSIONS`` decades). A sequence is searched exactly as given.
    cv : int
        Number of stratified folds when ``fit`` is given no folds.
    standardize : bool
        Divide each feature by its standard deviation over the training rows (features
        that do not vary are left as they are). The same scale serves every fold.
    client : distributed.Client, optional
        Runs the folds and the refit as tasks on this cluster; without one they run in
        this process.

    Attributes
    ----------
    alphas_ : ndarray
        The alphas searched, in the order searched (ascending for ``"auto"``); on a tie
        the first wins.
    cv_auc_ : ndarray of shape (n_alphas, n_folds)
        Validation ROC AUC of every alpha on every fold.
    best_alpha_ : float
        The alpha with the highest mean validation ROC AUC (the first, on ties).
    alpha_at_grid_edge_ : bool
        Whether the smallest or largest alpha searched scores better than every other
        (an end tied with interior alphas is a plateau, not an edge).
    n_grid_extensions_ : int
        Decades the auto grid was extended by.
    oof_decision_ : ndarray of shape (n_samples,)
        Out-of-fold decision scores under ``best_alpha_``: each row scored by the model
        of the fold that held it out.
    coef_ : ndarray of shape (n_features,)
        Weights, in the units of the raw features, of the model refitted on all rows.
    intercept_ : float
    solver_ : {"dual", "primal"}
    scale_ : ndarray of shape (n_features,) or None
        The standard deviations the features were divided by.
    """

    def __init__(self, alphas: str | Sequence[float] = "auto", cv: int = 5,
                 standardize: bool = False, client: Client | None = None):
        self.alphas = alphas
        self.cv = cv
        self.standardize = standardize
        self.client = client

    def fit(self, X: np.ndarray, y: np.ndarray, folds: Folds | None = None) -> RidgeGridClassifier:
        """Choose alpha on ``folds`` and refit on all rows.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Binary labels, 0 and 1.
        folds : list of (train_indices, validation_indices), optional
            Defaults to ``StratifiedKFold(cv)``, as ``GridSearchCV(cv=int)`` uses.
        """
        X, y = _check_data(X, y)
        given = _check_alphas(self.alphas)
        if folds is None:
            from sklearn.model_selection import StratifiedKFold

            folds = list(StratifiedKFold(n_splits=self.cv).split(X, y))
        self._problem = _RidgeProblem(X, y, self.standardize, self.client)
        grid = given if given is not None else auto_grid(self._problem.total_variance)
        self.n_grid_extensions_ = 0
        solved = grid
        paths = self._problem.solve(folds, solved)
        while True:
            cv_auc = self._problem.fold_auc(folds, paths, grid)
            # The first best in search order, as GridSearchCV picks: on the ascending auto
            # grid, ties go to the weakest penalty. (The strongest would be the simplest
            # model, but on a curve flat up to huge penalties it shrinks the scores until
            # the folds' intercepts dominate the pooled out-of-fold scores, and the
            # calibration fitted on them collapses to one value.)
            mean_auc = cv_auc.mean(axis=1)
            best = int(np.argmax(mean_auc))
            edge = _edge(grid, mean_auc, best)
            if given is not None or edge is None or self.n_grid_extensions_ >= MAX_EXTENSIONS:
                break
            grid = _extend(grid, downwards=edge == "smallest")
            self.n_grid_extensions_ += 1
            if not np.isin(grid, solved).all():
                solved = _with_headroom(grid)
                paths = self._problem.solve(folds, solved)

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
            warnings.warn(f"the best ridge alpha, {self.best_alpha_:g}, is the {end} one searched "
                          f"({grid.min():g} to {grid.max():g}){how}", AlphaAtGridEdgeWarning, stacklevel=2)
        self.dominant_features_ = np.array([], dtype=int) if self.standardize else \
            _dominant(self._problem.spread)
        if len(self.dominant_features_):
            warnings.warn(f"feature(s) at column(s) {self.dominant_features_[:5].tolist()} spread over "
                          f"{DOMINANT_SCALE_RATIO:g} times wider than the typical feature: ridge's penalty "
                          "shrinks every other feature to nothing; standardize the features, or check those "
                          "columns", FeatureScaleWarning, stacklevel=2)
        self.oof_decision_ = self._problem.out_of_fold(folds, paths, self.best_alpha_)
        coef = self._problem.refit(self.best_alpha_)
        self.scale_ = self._problem.scale
        self.coef_ = coef / self.scale_ if self.scale_ is not None else coef
        self.intercept_ = float(self._problem.target.mean() - self._problem.mean @ self.coef_)
        self.solver_ = self._problem.solver
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

    def cross_validated_auc(self, folds: Folds, alphas: Sequence[float]) -> np.ndarray:
        """ROC AUC of ``alphas`` on other folds of the fitted rows.

        Returns an array of shape ``(n_alphas, n_folds)``. Used to score the chosen model
        on spatially blocked folds when cells chose it, and the other way round. Small
        alphas cost the most, so pass only those worth seeing.
        """
        alphas = np.asarray(alphas, dtype=np.float64)
        return self._problem.fold_auc(folds, self._problem.solve(folds, alphas), alphas)

    def release(self) -> None:
        """Free the training data kept (on the cluster too) for :meth:`cross_validated_auc`."""
        self._problem = None

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Signed distance to the hyperplane; positive means class 1."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have {self.n_features_in_} features; got shape {X.shape}")
        return linear_scores(X, self.coef_, self.intercept_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


def auto_grid(total_variance: float) -> np.ndarray:
    """Eight decades around the features' total variance, four points per decade.

    Values are rounded to three significant digits (1, 1.78, 3.16, 5.62, 10, ...), so
    that they read well in reports, in ascending order (the search order).
    """
    centre = int(np.floor(np.log10(max(total_variance, 1e-300))))
    exponents = np.arange((centre - AUTO_DECADES_BELOW) * POINTS_PER_DECADE,
                          (centre + AUTO_DECADES_ABOVE) * POINTS_PER_DECADE + 1) / POINTS_PER_DECADE
    return _round(10.0 ** exponents)


def linear_scores(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """``X @ coef + intercept``, equal rows giving equal scores to the last bit.

    BLAS treats the rows at the tail of a matrix with other code than the rest, so two
    equal rows can score a rounding error apart, which breaks ROC AUC ties at random.
    einsum sums every row in the same order.
    """
    return np.einsum("ij,j->i", np.asarray(X, dtype=np.float64), coef) + intercept


def gram(Z: np.ndarray, block: int = 512) -> np.ndarray:
    """``Z @ Z.T`` with every core, the same to the last bit whatever their number.

    Multithreaded BLAS may split a product differently with another thread count (a test
    showed it), so the result is cut into fixed square blocks instead, each one
    single-threaded BLAS call on a thread of a pool (BLAS releases the GIL). Only blocks
    on and above the diagonal are computed; the rest are their mirror images.
    """
    n = len(Z)
    K = np.empty((n, n))
    starts = range(0, n, block)

    def fill(i: int, j: int) -> None:
        np.matmul(Z[i:i + block], Z[j:j + block].T, out=K[i:i + block, j:j + block])
        if i != j:
            K[j:j + block, i:i + block] = K[i:i + block, j:j + block].T

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(lambda ij: single_threaded(fill, *ij), [(i, j) for i in starts for j in starts if j >= i]))
    return K


def single_threaded(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)``, with BLAS and LAPACK on one thread in this process.

    Multithreaded BLAS may split a sum differently with another thread count, which
    changes the last bits of a result. With one thread everywhere, the job's results
    are the same bit for bit on any cluster, run after run; parallelism comes from
    Dask's tasks instead. The limit stays for the life of the process: restoring it
    when one task ends would change it under a task still running in another thread.
    """
    global _blas_limited
    if not _blas_limited:
        threadpool_limits(limits=1)
        _blas_limited = True
    return func(*args, **kwargs)


_blas_limited = False


class _RidgeProblem:
    """The training rows prepared once: centred (scaled), deduplicated, on the cluster."""

    def __init__(self, X: np.ndarray, y: np.ndarray, standardize: bool, client: Client | None):
        self.client = client
        self.y = y
        self.target = np.where(y == 1, 1.0, -1.0)
        # Labels sharing a cell share a feature row. Each distinct row is scored once and
        # its score copied to its duplicates, so that they tie exactly as in scikit-learn;
        # rounding noise would otherwise break the ties at random and shift the ROC AUC.
        self.row_ids, first = _distinct_rows(X)
        # One float64 copy, of the distinct rows only, centred and scaled in place: fresh
        # memory costs page faults, about as much as the arithmetic here.
        Z = X[first].astype(np.float64)
        counts = np.bincount(self.row_ids).astype(np.float64)
        self.mean = counts @ Z / len(y)  # the mean over all rows, duplicates included
        Z -= self.mean
        self.spread = spread = np.sqrt(counts @ (Z * Z) / len(y))
        # A constant feature centres to rounding noise (its mean is a bit off), which
        # scaling would blow up to +-1: it is zeroed instead, as it carries nothing.
        constant = spread <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(self.mean), 1e-300)
        Z[:, constant] = 0.0
        self.scale = None
        if standardize:
            self.scale = np.where(constant, 1.0, spread)
            Z /= self.scale
        # Mean squared norm of the centred rows: the kernel's mean eigenvalue.
        self.total_variance = float(counts @ np.einsum("ij,ij->i", Z, Z) / len(y))
        self.solver = "dual" if len(y) <= X.shape[1] else "primal"
        self.Z = Z
        if self.solver == "dual":
            # The kernel of the distinct rows, in this process: for thousands of labels
            # well under a second, less than shipping the rows to workers and the blocks
            # back. Tasks index it through row_ids.
            data = {"K": gram(Z), "target": self.target, "row_ids": self.row_ids}
        else:
            data = {"Z": Z, "target": self.target, "row_ids": self.row_ids}
        self.data = _share(client, data)

    def solve(self, folds: Folds, alphas: np.ndarray) -> list[PenaltyPath]:
        """Penalty paths of every fold, solved for ``alphas`` (and any larger alpha)."""
        fold_task = _dual_fold_path if self.solver == "dual" else _primal_fold_path
        return _run(self.client, [(fold_task, train, valid, alphas) for train, valid in folds],
                    self.data, "fit: solve folds")

    def refit(self, alpha: float) -> np.ndarray:
        """Weights of the model fitted on all rows with ``alpha`` (scaled units)."""
        if self.solver == "primal":
            [coef] = _run(self.client, [(_primal_refit, alpha)], self.data, "fit: refit on all rows")
            return coef
        [dual] = _run(self.client, [(_dual_refit, alpha)], self.data, "fit: refit on all rows")
        # A distinct row's dual coefficient is the sum of its duplicates'.
        return self.Z.T @ np.bincount(self.row_ids, weights=dual, minlength=len(self.Z))

    def fold_auc(self, folds: Folds, paths: list[PenaltyPath], alphas: np.ndarray) -> np.ndarray:
        """ROC AUC of every alpha (rows) on every fold (columns)."""
        return np.column_stack([roc_auc(self.y[valid], self._valid_scores(valid, path, alphas))
                                for (_, valid), path in zip(folds, paths)])

    def out_of_fold(self, folds: Folds, paths: list[PenaltyPath], alpha: float) -> np.ndarray:
        scores = np.empty(len(self.y))
        for (_, valid), path in zip(folds, paths):
            scores[valid] = self._valid_scores(valid, path, np.array([alpha]))[0]
        return scores

    def _valid_scores(self, valid: np.ndarray, path: PenaltyPath, alphas: np.ndarray) -> np.ndarray:
        """Scores of the validation rows, one row per alpha, duplicates copied."""
        _, copies = _distinct_validation(self.row_ids, valid)
        return path.scores(alphas)[:, copies]


def _distinct_validation(row_ids: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The validation rows to score (one per distinct feature row) and, for each
    validation row, which of them holds its score."""
    _, first, copies = np.unique(row_ids[valid], return_index=True, return_inverse=True)
    return valid[first], copies.ravel()


def _dual_fold_path(train: np.ndarray, valid: np.ndarray, alphas: np.ndarray, K: np.ndarray,
                    target: np.ndarray, row_ids: np.ndarray) -> PenaltyPath:
    """Validation scores of the fold for every alpha, from the centred fold kernel."""
    scored, _ = _distinct_validation(row_ids, valid)
    Kc, row_mean, total_mean = _centred(K, row_ids[train])
    cross = K[np.ix_(row_ids[scored], row_ids[train])]
    # (x_v - mu) . (x_i - mu) for validation row v and training row i, with mu the mean of
    # the fold's training rows, expressed through kernel entries only.
    cross -= cross.mean(axis=1)[:, None]
    cross -= row_mean[None, :]
    cross += total_mean
    y = target[train]
    return penalty_path(Kc, y - y.mean(), cross, y.mean(), alphas)


def _primal_fold_path(train: np.ndarray, valid: np.ndarray, alphas: np.ndarray, Z: np.ndarray,
                      target: np.ndarray, row_ids: np.ndarray) -> PenaltyPath:
    """Validation scores of the fold for every alpha, from the centred fold Gram matrix."""
    scored, _ = _distinct_validation(row_ids, valid)
    Zf = Z[row_ids[train]]
    centre = Zf.mean(axis=0)
    Zf -= centre
    y = target[train]
    return penalty_path(Zf.T @ Zf, Zf.T @ (y - y.mean()), Z[row_ids[scored]] - centre, y.mean(), alphas)


def _dual_refit(alpha: float, K: np.ndarray, target: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    """Dual coefficients (one per row) of the model fitted on all rows."""
    Kc, _, _ = _centred(K, row_ids)
    [x] = penalty_path(Kc, target - target.mean(), None, 0.0, np.array([alpha])).scores([alpha])
    return x


def _primal_refit(alpha: float, Z: np.ndarray, target: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    Zf = Z[row_ids]
    Zf -= Zf.mean(axis=0)
    [coef] = penalty_path(Zf.T @ Zf, Zf.T @ (target - target.mean()), None, 0.0,
                          np.array([alpha])).scores([alpha])
    return coef


def _centred(K: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The kernel of ``rows`` (indices into ``K``, repeats allowed) centred on their mean,
    its row means and overall mean."""
    block = K[np.ix_(rows, rows)]
    row_mean = block.mean(axis=1)
    total_mean = row_mean.mean()
    block -= row_mean[:, None]
    block -= row_mean[None, :]
    block += total_mean
    return block, row_mean, total_mean


def _check_data(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be 2-D with one row per label; got X {X.shape}, y {y.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError(f"y must hold both classes 0 and 1; got {np.unique(y).tolist()}")
    return X, y


def _check_alphas(alphas) -> np.ndarray | None:
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


def _with_headroom(grid: np.ndarray) -> np.ndarray:
    """The grid and the decades below it that its first extensions would add."""
    extended = grid
    for _ in range(_HEADROOM_DECADES):
        extended = _extend(extended, downwards=True)
    return extended


def _extend(grid: np.ndarray, downwards: bool) -> np.ndarray:
    """The (ascending) grid with one more decade below its smallest or above its largest."""
    steps = np.arange(1, POINTS_PER_DECADE + 1) / POINTS_PER_DECADE
    if downwards:
        return np.concatenate([_round(grid.min() / 10.0 ** steps[::-1]), grid])
    return np.concatenate([grid, _round(grid.max() * 10.0 ** steps)])


def _round(values: np.ndarray) -> np.ndarray:
    return np.array([float(f"{v:.3g}") for v in values])


def _distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the index of its distinct row; and each distinct row's first row.

    Rows are compared by a digest of their bytes: sorting 4000-wide rows is slow.
    """
    X = np.ascontiguousarray(X)
    digests = np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in X])
    _, first, row_ids = np.unique(digests, return_index=True, return_inverse=True)
    return row_ids.ravel(), first


def _share(client: Client | None, values: dict) -> dict:
    """Send large task inputs (the kernel) to every worker once, not inside each task."""
    if client is None:
        return values
    return {name: client.scatter(value, broadcast=True) for name, value in values.items()}


def _run(client: Client | None, calls: list[tuple], shared: dict, description: str) -> list:
    """``func(*args, **shared)`` for each ``(func, *args)``, as tasks if there is a cluster."""
    if client is None:
        return [single_threaded(func, *args, **shared) for func, *args in calls]
    futures = [client.submit(single_threaded, func, *args, **shared, pure=False) for func, *args in calls]
    return wait_with_progress(client, futures, description)
