"""Ridge's cross-validation: the training rows prepared once, every fold solved for every
penalty (:mod:`asm_dask.model.penalty_path`), as tasks on the cluster.

With fewer training rows than features the folds work with the kernel ``Z Z'`` (dual);
with more, with the Gram matrix ``Z'Z`` (primal): memory grows with
``min(rows, features)^2``. ``Z`` is the training features, centred (and scaled, with
``standardize``) once over all training rows; every fold then centres its own part.
Targets are -1/+1 as in ``RidgeClassifier``; the intercept is fitted by centring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .evaluation import roc_auc
from .numerics import gram, one_blas_thread, run_tasks, share
from .penalty_path import PenaltyPath, penalty_path

if TYPE_CHECKING:
    from distributed import Client

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


def cross_validated_auc(X: np.ndarray, y: np.ndarray, folds: Folds, alphas: Sequence[float],
                        standardize: bool = False, client: Client | None = None) -> np.ndarray:
    """ROC AUC of ridge with each of ``alphas`` (rows) on each of ``folds`` (columns).

    ``y`` holds 0 and 1. Used to score a fitted ridge's penalties on folds of another
    grouping (spatial blocks, when cells chose the penalty). Small alphas cost the most,
    so pass only those worth seeing.
    """
    with one_blas_thread():
        problem = RidgeProblem(X, y, standardize, client)
        alphas = np.asarray(alphas, dtype=np.float64)
        return problem.fold_auc(folds, problem.solve(folds, alphas), alphas)


class RidgeProblem:
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
        self.data = share(client, data)

    def solve(self, folds: Folds, alphas: np.ndarray) -> list[PenaltyPath]:
        """Penalty paths of every fold, solved for ``alphas`` (and any larger alpha)."""
        fold_task = _dual_fold_path if self.solver == "dual" else _primal_fold_path
        return run_tasks(self.client, [(fold_task, train, valid, alphas) for train, valid in folds],
                    self.data, "fit: solve folds")

    def refit(self, alpha: float) -> np.ndarray:
        """Weights of the model fitted on all rows with ``alpha`` (scaled units)."""
        if self.solver == "primal":
            [coef] = run_tasks(self.client, [(_primal_refit, alpha)], self.data, "fit: refit on all rows")
            return coef
        [dual] = run_tasks(self.client, [(_dual_refit, alpha)], self.data, "fit: refit on all rows")
        # A distinct row's dual coefficient is the sum of its duplicates'.
        return self.Z.T @ np.bincount(self.row_ids, weights=dual, minlength=len(self.Z))

    def fold_auc(self, folds: Folds, paths: list[PenaltyPath], alphas: np.ndarray) -> np.ndarray:
        """ROC AUC of every alpha (rows) on every fold (columns); NaN for a fold whose
        validation rows hold one class, where there is no ROC curve."""
        return np.column_stack([roc_auc(self.y[valid], self._valid_scores(valid, path, alphas))
                                if both_classes(self.y[valid]) else np.full(len(alphas), np.nan)
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


def both_classes(y: np.ndarray) -> bool:
    """Whether ``y`` (0 and 1) holds both classes: what a ROC AUC needs."""
    return bool(y.any() and not y.all())


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


def _distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the index of its distinct row; and each distinct row's first row.

    Rows are compared by a digest of their bytes: sorting 4000-wide rows is slow.
    """
    X = np.ascontiguousarray(X)
    digests = np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in X])
    _, first, row_ids = np.unique(digests, return_index=True, return_inverse=True)
    return row_ids.ravel(), first
