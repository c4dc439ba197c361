"""Fit stage: a ridge classifier tuned over alphas by cross-validated ROC AUC.

It gives what scikit-learn's ``GridSearchCV(RidgeClassifier(), {"alpha": alphas},
scoring="roc_auc", cv=folds)`` gives on the same folds, but computes the training
kernel ``Z Z'`` (``Z`` = training features minus their mean) once, as the MOSAIKS paper
does, instead of once per fit. Every fold's centred kernel is a sub-block of it, shifted
by terms that are themselves sums of the kernel, and every (fold, alpha) fit is then a
Cholesky solve of the fold's size. The folds run as tasks on the Dask cluster.

Targets are -1/+1 as in ``RidgeClassifier``; an intercept is fitted by centring.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from distributed import Client
from scipy import linalg
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits


class RidgeGridClassifier:
    """Ridge classifier whose penalty is chosen by cross-validated ROC AUC.

    Parameters
    ----------
    alphas : sequence of float
        Candidate penalties, as ``RidgeClassifier(alpha=...)``.
    cv : int
        Number of stratified folds when ``fit`` is given no folds.
    client : distributed.Client, optional
        Runs the fits of the folds and the final refit on this cluster; without one they
        run in this process.

    Attributes
    ----------
    best_alpha_ : float
        The alpha with the highest mean validation ROC AUC (the first, on ties).
    cv_auc_ : ndarray of shape (n_alphas, n_folds)
        Validation ROC AUC of every alpha on every fold.
    oof_decision_ : ndarray of shape (n_samples,)
        Out-of-fold decision scores of the training rows under ``best_alpha_``: each
        row scored by the model of the fold that held it out.
    coef_ : ndarray of shape (n_features,)
        Weights of the model refitted on all training rows with ``best_alpha_``.
    intercept_ : float
    """

    def __init__(self, alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0), cv: int = 5,
                 client: Client | None = None):
        self.alphas = alphas
        self.cv = cv
        self.client = client

    def fit(self, X: np.ndarray, y: np.ndarray,
            folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> "RidgeGridClassifier":
        """Choose alpha on ``folds`` and refit on all rows.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Binary labels, 0 and 1.
        folds : list of (train_indices, validation_indices), optional
            Defaults to ``StratifiedKFold(cv)``, as ``GridSearchCV(cv=int)`` uses.
        """
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be 2-D with one row per label; got X {X.shape}, y {y.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X holds NaN or infinite values")
        if set(np.unique(y).tolist()) != {0, 1}:
            raise ValueError(f"y must hold both classes 0 and 1; got {np.unique(y).tolist()}")
        alphas = np.asarray(self.alphas, dtype=np.float64)
        if alphas.ndim != 1 or len(alphas) == 0 or (alphas <= 0).any():
            raise ValueError(f"alphas must be a non-empty list of positive numbers; got {self.alphas}")
        if folds is None:
            folds = list(StratifiedKFold(n_splits=self.cv).split(X, y))

        mean = X.mean(axis=0, dtype=np.float64)
        target = np.where(y == 1, 1.0, -1.0)
        # Labels sharing a cell share a feature row. Each distinct row gets one kernel row,
        # copied to its duplicates, so their scores tie exactly as in scikit-learn;
        # rounding noise would otherwise break the ties at random and shift the ROC AUC.
        row_ids, first = _distinct_rows(X)
        # Centring first keeps the kernel's entries small: the fold centring later then
        # subtracts small numbers from small numbers, not large from large.
        Z = np.asarray(X[first], dtype=np.float64) - mean
        # One BLAS call in this process: for thousands of labels it takes well under a
        # second, less than shipping the rows to workers and the blocks back.
        K = single_threaded(np.matmul, Z, Z.T)[np.ix_(row_ids, row_ids)]
        shared = _share(self.client, {"K": K, "target": target, "row_ids": row_ids})

        fold_scores = _run(self.client, _fold_scores,
                           [(train, valid, alphas) for train, valid in folds], shared)
        self.cv_auc_ = np.array([[roc_auc_score(y[valid], scores[a]) for (_, valid), scores
                                  in zip(folds, fold_scores)] for a in range(len(alphas))])
        best = int(np.argmax(self.cv_auc_.mean(axis=1)))
        self.best_alpha_ = float(alphas[best])
        self.oof_decision_ = np.empty(len(y))
        for (_, valid), scores in zip(folds, fold_scores):
            self.oof_decision_[valid] = scores[best]

        [dual] = _run(self.client, _dual_coef, [(np.arange(len(y)), self.best_alpha_)], shared)
        # Z holds distinct rows; each one's weight is the sum of its duplicates' weights.
        self.coef_ = single_threaded(np.matmul, Z.T, np.bincount(row_ids, weights=dual, minlength=len(Z)))
        self.intercept_ = float(target.mean() - mean @ self.coef_)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Signed distance to the hyperplane; positive means class 1."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have {self.n_features_in_} features; got shape {X.shape}")
        return linear_scores(X, self.coef_, self.intercept_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


def linear_scores(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """``X @ coef + intercept``, equal rows giving equal scores to the last bit.

    BLAS treats the rows at the tail of a matrix with other code than the rest, so two
    equal rows can score a rounding error apart, which breaks ROC AUC ties at random.
    einsum sums every row in the same order.
    """
    return np.einsum("ij,j->i", np.asarray(X, dtype=np.float64), coef) + intercept


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


def _run(client: Client | None, func, argument_list: list[tuple], shared: dict) -> list:
    """``func(*args, **shared)`` for each args, as tasks on the cluster if there is one."""
    if client is None:
        return [single_threaded(func, *args, **shared) for args in argument_list]
    return client.gather([client.submit(single_threaded, func, *args, **shared, pure=False)
                          for args in argument_list])


def single_threaded(func, *args, **kwargs):
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


def _dual_coef(rows: np.ndarray, alpha: float, K: np.ndarray, target: np.ndarray,
               row_ids: np.ndarray) -> np.ndarray:
    """Dual coefficients of the ridge fit on ``rows``, centred within ``rows``."""
    Kc, _, _ = _centred(K, rows)
    y = target[rows]
    return _solve(Kc, y - y.mean(), alpha)


def _fold_scores(train: np.ndarray, valid: np.ndarray, alphas: np.ndarray, K: np.ndarray,
                 target: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    """Decision scores of the validation rows under the models fitted on the train rows.

    One row of scores per alpha; the fold's centred kernel is built once for all of them.
    Each distinct feature row (``row_ids``) is scored once and its score copied to its
    duplicates, so that duplicates tie exactly (see :func:`linear_scores`).
    """
    _, first, copies = np.unique(row_ids[valid], return_index=True, return_inverse=True)
    valid = valid[first]
    Kc, row_mean, total_mean = _centred(K, train)
    cross = K[np.ix_(valid, train)]
    # (x_v - mu) . (x_i - mu) for validation row v and training row i, with mu the mean of
    # the training rows, expressed through kernel entries only.
    cross -= cross.mean(axis=1)[:, None]
    cross -= row_mean[None, :]
    cross += total_mean
    y = target[train]
    scores = np.array([cross @ _solve(Kc, y - y.mean(), alpha) + y.mean() for alpha in alphas])
    return scores[:, copies.ravel()]


def _solve(Kc: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """``(Kc + alpha I)^-1 y`` by Cholesky, as scikit-learn's kernel ridge solver does.

    Like scikit-learn, alpha is added to the diagonal and taken off again afterwards,
    rather than copying the kernel.
    """
    diagonal = Kc.flat[:: len(Kc) + 1]
    Kc.flat[:: len(Kc) + 1] = diagonal + alpha
    # NumPy's Cholesky releases the GIL (SciPy's holds it), so tasks in threads overlap.
    lower = np.linalg.cholesky(Kc)
    Kc.flat[:: len(Kc) + 1] = diagonal
    # The transpose of a C-ordered lower factor is a Fortran-ordered upper one, which
    # LAPACK takes without the copy it would make of the lower factor.
    return linalg.cho_solve((lower.T, False), y, check_finite=False)


def _centred(K: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The kernel of ``rows`` centred on their mean, its row means and overall mean."""
    block = K[np.ix_(rows, rows)]
    row_mean = block.mean(axis=1)
    total_mean = row_mean.mean()
    block -= row_mean[:, None]
    block -= row_mean[None, :]
    block += total_mean
    return block, row_mean, total_mean
