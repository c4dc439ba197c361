"""Fit stage: a ridge classifier tuned over alphas by cross-validated ROC AUC.

It gives what scikit-learn's ``GridSearchCV(RidgeClassifier(), {"alpha": alphas},
scoring="roc_auc", cv=folds)`` gives on the same folds, but computes the training
kernel ``Z Z'`` (``Z`` = training features minus their mean) once, as the MOSAIKS paper
does, instead of once per fit. Every fold's centred kernel is a sub-block of it, shifted
by terms that are themselves sums of the kernel, and every (fold, alpha) fit is then a
Cholesky solve of the fold's size. Those solves run as tasks on the Dask cluster.

Targets are -1/+1 as in ``RidgeClassifier``; an intercept is fitted by centring.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from distributed import Client
from scipy import linalg
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

# Row blocks of the kernel product; small enough that two blocks of a 4000-feature
# training matrix fit easily in a worker, large enough to keep BLAS efficient.
KERNEL_BLOCK_ROWS = 2048


class RidgeGridClassifier:
    """Ridge classifier whose penalty is chosen by cross-validated ROC AUC.

    Parameters
    ----------
    alphas : sequence of float
        Candidate penalties, as ``RidgeClassifier(alpha=...)``.
    cv : int
        Number of stratified folds when ``fit`` is given no folds.
    client : distributed.Client, optional
        Runs the kernel blocks and the (fold, alpha) fits on this cluster; without one
        they run in this process.

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
        # Centring first keeps the kernel's entries small: sub-block centring later then
        # subtracts small numbers from small numbers, not large from large.
        Z = np.asarray(X, dtype=np.float64) - mean
        target = np.where(y == 1, 1.0, -1.0)
        # Labels sharing a cell share a feature row. Their kernel rows are copied from one
        # computed row, so their scores tie exactly, as they do in scikit-learn; rounding
        # noise would otherwise break the ties at random and shift the ROC AUC.
        unique_rows, inverse = np.unique(Z, axis=0, return_inverse=True)
        K = _kernel(unique_rows, self.client)[np.ix_(inverse.ravel(), inverse.ravel())]

        tasks = [(fold, alpha) for fold in range(len(folds)) for alpha in alphas]
        scores = _map(self.client, _fold_scores, [(folds[f][0], folds[f][1], a) for f, a in tasks],
                      shared={"K": K, "target": target, "row_ids": inverse.ravel()})
        self.cv_auc_ = np.array([roc_auc_score(y[folds[f][1]], s)
                                 for (f, _), s in zip(tasks, scores)]).reshape(len(folds), len(alphas)).T
        best = int(np.argmax(self.cv_auc_.mean(axis=1)))
        self.best_alpha_ = float(alphas[best])
        self.oof_decision_ = np.empty(len(y))
        for (f, a_index), s in zip([(f, i) for f in range(len(folds)) for i in range(len(alphas))], scores):
            if a_index == best:
                self.oof_decision_[folds[f][1]] = s

        everyone = np.arange(len(y))
        dual = _map(self.client, _dual_coef, [(everyone, self.best_alpha_)],
                    shared={"K": K, "target": target})[0]
        self.coef_ = Z.T @ dual
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


def _kernel(Z: np.ndarray, client: Client | None) -> np.ndarray:
    """``Z @ Z.T``, block by block (only the upper blocks; the kernel is symmetric)."""
    starts = list(range(0, len(Z), KERNEL_BLOCK_ROWS))
    pairs = [(i, j) for i in range(len(starts)) for j in range(i, len(starts))]
    if client is None:
        blocks = [Z[starts[i]:starts[i] + KERNEL_BLOCK_ROWS] @ Z[starts[j]:starts[j] + KERNEL_BLOCK_ROWS].T
                  for i, j in pairs]
    else:
        pieces = client.scatter([Z[s:s + KERNEL_BLOCK_ROWS] for s in starts])
        blocks = client.gather([client.submit(_block_product, pieces[i], pieces[j], pure=False)
                                for i, j in pairs])
    K = np.empty((len(Z), len(Z)))
    for (i, j), block in zip(pairs, blocks):
        rows = slice(starts[i], starts[i] + block.shape[0])
        cols = slice(starts[j], starts[j] + block.shape[1])
        K[rows, cols] = block
        K[cols, rows] = block.T
    return K


def _block_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b.T


def _map(client: Client | None, func, argument_list: list[tuple], shared: dict) -> list:
    """``func(*args, **shared)`` for each args, on the cluster if there is one.

    ``shared`` (the kernel) is sent to the workers once, not embedded in every task.
    """
    if client is None:
        return [func(*args, **shared) for args in argument_list]
    shared_futures = {name: client.scatter(value, broadcast=True) for name, value in shared.items()}
    futures = [client.submit(func, *args, **shared_futures, pure=False) for args in argument_list]
    return client.gather(futures)


def _dual_coef(rows: np.ndarray, alpha: float, K: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dual coefficients of the ridge fit on ``rows``, centred within ``rows``."""
    Kc, _, _ = _centred(K, rows)
    Kc.flat[:: len(rows) + 1] += alpha
    y = target[rows]
    return linalg.solve(Kc, y - y.mean(), assume_a="pos", overwrite_a=True)


def _fold_scores(train: np.ndarray, valid: np.ndarray, alpha: float, K: np.ndarray,
                 target: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    """Decision scores of the validation rows under the model fitted on the train rows.

    Each distinct feature row (``row_ids``) is scored once and its score copied to its
    duplicates, so that duplicates tie exactly (see :func:`linear_scores`).
    """
    _, first, copies = np.unique(row_ids[valid], return_index=True, return_inverse=True)
    valid = valid[first]
    dual = _dual_coef(train, alpha, K, target)
    _, row_mean, total_mean = _centred(K, train, need_block=False)
    cross = K[np.ix_(valid, train)]
    valid_mean = cross.mean(axis=1)
    # (x_v - mu) . (x_i - mu) for validation row v and training row i, with mu the mean of
    # the training rows, expressed through kernel entries only.
    Kc_cross = cross - valid_mean[:, None] - row_mean[None, :] + total_mean
    return (Kc_cross @ dual + target[train].mean())[copies.ravel()]


def _centred(K: np.ndarray, rows: np.ndarray, need_block: bool = True):
    block = K[np.ix_(rows, rows)]
    row_mean = block.mean(axis=1)
    total_mean = row_mean.mean()
    if not need_block:
        return None, row_mean, total_mean
    return block - row_mean[:, None] - row_mean[None, :] + total_mean, row_mean, total_mean
