"""Ridge's cross-validation: the training rows prepared once, every fold solved for every
penalty (:mod:`asm_dask.model.penalty_path`), as tasks on the cluster.

With fewer training rows than features the folds work with the kernel ``Z Z'`` (dual);
with more, with the Gram matrix ``Z'Z`` (primal): memory grows with
``min(rows, features)^2``. ``Z`` is the training features, centred (and scaled, with
``standardize``) once over all training rows; every fold then centres its own part.
Targets are -1/+1 as in ``RidgeClassifier``; the intercept is fitted by centring.

Every fold's kernel is a part of the kernel of all training rows, so the dual folds run
in one task, their Lanczos steps in lockstep: one pass over that kernel serves every
fold's step, where a fold's own kernel would be read once per fold and step (the steps
are bound by reading memory, not by arithmetic): 2.4 times faster at Sierra Leone scale.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .evaluation import roc_auc
from .numerics import gram, run_tasks, share, times_symmetric
from .penalty_path import PenaltyPath, System, penalty_path, penalty_paths

if TYPE_CHECKING:
    from distributed import Client

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


#: distinct training rows turned into float64 at a time by :class:`TrainingRows`
ROW_BLOCK = 512


class TrainingRows:
    """The training rows' distinct feature rows, with their mean and spread over all rows:
    prepared once for every way of scaling them that a search tries.

    Labels sharing a cell share a feature row. Each distinct row is scored once and its
    score copied to its duplicates, so that they tie exactly as in scikit-learn; rounding
    noise would otherwise break the ties at random and shift the ROC AUC.
    """

    def __init__(self, X: np.ndarray):
        self.n = len(X)
        self.row_ids, self.first = _distinct_rows(X)
        self.X = X  # read through ``first``, a block at a time: no copy of the distinct rows
        self.n_distinct = len(self.first)
        self.counts = np.bincount(self.row_ids).astype(np.float64)
        # Duplicates count: the moments are over all rows.
        self.mean = self._weighted_sum(lambda block: block) / self.n
        self.spread = np.sqrt(self._weighted_sum(lambda block: np.square(block - self.mean)) / self.n)
        # A constant feature centres to rounding noise (its mean is a bit off), which
        # scaling would blow up to +-1: it is zeroed instead, as it carries nothing.
        self.constant = self.spread <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(self.mean), 1e-300)
        #: what standardising divides each feature by: its spread (1 for a constant one)
        self.scale = np.where(self.constant, 1.0, self.spread)

    def centred(self) -> np.ndarray:
        """The distinct rows in float64, centred, a block of rows on each core: the first
        touch of a fresh matrix is a good part of the cost."""
        Z = np.empty((self.n_distinct, self.X.shape[1]))

        def fill(rows: slice) -> None:
            Z[rows] = self.X[self.first[rows]]
            self._centre_in_place(Z[rows], None)

        with ThreadPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(fill, self._row_blocks()))
        return Z

    def transposed_times(self, weights: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
        """The centred rows, divided by ``scale`` unless it is None, transposed, times
        ``weights``: a block of rows at a time, never the whole float64 copy."""
        total = np.zeros(self.X.shape[1])
        for rows, block in self._blocks():
            total += self._centre_in_place(block, scale).T @ weights[rows]
        return total

    def _centre_in_place(self, Z: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
        Z -= self.mean
        Z[:, self.constant] = 0.0
        if scale is not None:
            Z /= scale
        return Z

    def _weighted_sum(self, of_block: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``counts @ of_block(rows)`` over the distinct rows in float64, a block at a time."""
        total = np.zeros(self.X.shape[1])
        for rows, block in self._blocks():
            total += self.counts[rows] @ of_block(block)
        return total

    def _blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """The distinct rows, ``ROW_BLOCK`` at a time, in float64: a few MB, not a copy of all."""
        for rows in self._row_blocks():
            yield rows, self.X[self.first[rows]].astype(np.float64)

    def _row_blocks(self) -> list[slice]:
        return [slice(start, start + ROW_BLOCK) for start in range(0, self.n_distinct, ROW_BLOCK)]


class RidgeProblem:
    """The training rows prepared once for one way of scaling: centred (scaled),
    deduplicated, on the cluster.

    ``Z``: the distinct rows, centred and divided by ``scale`` (``None``: raw). With
    ``reused``, the caller changes ``Z`` once the problem is made: a primal problem, which
    keeps its rows, keeps a copy.
    """

    def __init__(self, rows: TrainingRows, y: np.ndarray, Z: np.ndarray, scale: np.ndarray | None,
                 client: Client | None, reused: bool = False):
        self.client = client
        self.rows = rows
        self.y = y
        self.target = np.where(y == 1, 1.0, -1.0)
        self.row_ids = rows.row_ids
        self.mean, self.spread = rows.mean, rows.spread
        self.scale = scale
        # Mean squared norm of the centred rows: the kernel's mean eigenvalue.
        self.total_variance = float(rows.counts @ np.einsum("ij,ij->i", Z, Z) / len(y))
        self.solver = "dual" if len(y) <= Z.shape[1] else "primal"
        if self.solver == "dual":
            # The kernel of the distinct rows, in this process: for thousands of labels
            # well under a second, less than shipping the rows to workers and the blocks
            # back. Tasks index it through row_ids. The rows are not kept: the refit
            # goes through them again, a block at a time.
            data = {"K": gram(Z), "target": self.target, "row_ids": self.row_ids}
        else:
            data = {"Z": Z.copy() if reused else Z, "target": self.target, "row_ids": self.row_ids}
        self.data = share(client, data)

    @classmethod
    def each_scaling(cls, rows: TrainingRows, y: np.ndarray, ways: Sequence[bool],
                     client: Client | None) -> Iterator[RidgeProblem]:
        """A problem for each way of scaling in ``ways`` (``False``: raw, ``True``:
        standardised), in turn, from one conversion of the rows to float64: the
        standardised rows are the raw ones divided in place once the raw problem is made."""
        Z = rows.centred()
        for i, standardize in enumerate(ways):
            scale = rows.scale if standardize else None
            if scale is not None:
                Z /= scale
            yield cls(rows, y, Z, scale, client, reused=i < len(ways) - 1)

    def solve(self, folds: Folds, alphas: np.ndarray, resume: list[PenaltyPath] | None = None) -> list[PenaltyPath]:
        """Penalty paths of every fold, solved for ``alphas`` (and any larger alpha);
        ``resume``: these folds' paths for larger alphas, whose Lanczos runs go on."""
        if resume is not None and self.client is not None:
            # The runs' bases (MBs a fold) go to the workers as data, not inside the graph.
            resume = self.client.scatter(list(resume), hash=False)
        if self.solver == "dual":
            [paths] = run_tasks(self.client, [(_dual_fold_paths, list(folds), alphas, resume)], self.data,
                                "fit: solve folds")
            return paths
        return run_tasks(self.client, [(_primal_fold_path, train, valid, alphas, path)
                                       for (train, valid), path in zip(folds, resume or [None] * len(folds))],
                         self.data, "fit: solve folds")

    def refit(self, alpha: float) -> np.ndarray:
        """Weights of the model fitted on all rows with ``alpha`` (scaled units)."""
        if self.solver == "primal":
            [coef] = run_tasks(self.client, [(_primal_refit, alpha)], self.data, "fit: refit on all rows")
            return coef
        [dual] = run_tasks(self.client, [(_dual_refit, alpha)], self.data, "fit: refit on all rows")
        # A distinct row's dual coefficient is the sum of its duplicates'.
        return self.rows.transposed_times(np.bincount(self.row_ids, weights=dual, minlength=self.rows.n_distinct),
                                          self.scale)

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


def _dual_fold_paths(folds: Folds, alphas: np.ndarray, resume: list[PenaltyPath] | None, K: np.ndarray,
                     target: np.ndarray, row_ids: np.ndarray) -> list[PenaltyPath]:
    """Validation scores of every fold for every alpha, from the centred fold kernels.

    A fold's kernel is ``P K[r, r] P``, with ``r`` its training rows (as indices of
    distinct rows) and ``P`` the centring over them; it is never formed: its product with
    a vector is the centred vector spread onto the distinct rows, times ``K``, read back
    at ``r`` and centred.
    """
    systems, row_sets = [], []
    for train, valid in folds:
        rows = row_ids[train]
        scored, _ = _distinct_validation(row_ids, valid)
        y = target[train]
        systems.append(System(y - y.mean(), y.mean(), _cross_scores(K, rows, row_ids[scored]),
                              lambda rows=rows: _centred(K, rows)[0]))
        row_sets.append(rows)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        return penalty_paths(systems, _fold_products(K, row_sets, pool), alphas, resume=resume)


def _fold_products(K: np.ndarray, row_sets: list[np.ndarray],
                   pool: ThreadPoolExecutor) -> Callable[[list[int], list[np.ndarray]], list[np.ndarray]]:
    """``multiply`` of :func:`penalty_paths` for the centred kernels of ``row_sets``."""
    def multiply(which: list[int], vectors: list[np.ndarray]) -> list[np.ndarray]:
        spread = np.empty((len(vectors), len(K)))
        for i, (fold, vector) in enumerate(zip(which, vectors)):
            spread[i] = np.bincount(row_sets[fold], weights=vector - vector.mean(), minlength=len(K))
        products = []
        for fold, full in zip(which, times_symmetric(spread, K, pool)):
            product = full[row_sets[fold]]
            products.append(product - product.mean())
        return products
    return multiply


def _cross_scores(K: np.ndarray, rows: np.ndarray, scored: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``score`` of a fold's :class:`System`: solutions (dual coefficients of the training
    ``rows``, as columns) to the scores of the ``scored`` rows, through the kernel
    centred on the fold's training rows:
    ``(x_v - mu) . (x_i - mu) = K[v, i] - mean_j K[v, j] - mean_j K[i, j] + mean_jl K[j, l]``."""
    counts = np.bincount(rows, minlength=len(K)) / len(rows)
    row_mean = (K @ counts)[rows]
    total_mean = row_mean.mean()

    def score(solutions: np.ndarray) -> np.ndarray:
        # Called once, when the fold is solved: its rows of the kernel are not held before.
        cross = K[scored]
        cross_mean = cross @ counts
        spread = np.zeros((len(K), solutions.shape[1]))
        np.add.at(spread, rows, solutions)
        totals = solutions.sum(axis=0)
        return cross @ spread - np.outer(cross_mean - total_mean, totals) - row_mean @ solutions
    return score


def _primal_fold_path(train: np.ndarray, valid: np.ndarray, alphas: np.ndarray, resume: PenaltyPath | None,
                      Z: np.ndarray, target: np.ndarray, row_ids: np.ndarray) -> PenaltyPath:
    """Validation scores of the fold for every alpha, from the centred fold Gram matrix."""
    scored, _ = _distinct_validation(row_ids, valid)
    Zf = Z[row_ids[train]]
    centre = Zf.mean(axis=0)
    Zf -= centre
    y = target[train]
    return penalty_path(Zf.T @ Zf, Zf.T @ (y - y.mean()), Z[row_ids[scored]] - centre, y.mean(), alphas,
                        resume=resume)


def _dual_refit(alpha: float, K: np.ndarray, target: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    """Dual coefficients (one per row) of the model fitted on all rows."""
    system = System(target - target.mean(), 0.0, None, lambda: _centred(K, row_ids)[0])
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        [path] = penalty_paths([system], _fold_products(K, [row_ids], pool), np.array([alpha]))
    [x] = path.scores([alpha])
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
    """For each row, the index of its distinct row; and each distinct row's first row,
    in the order of the rows (no duplicates: every row, in order).

    Rows are compared by a digest of their bytes: sorting 4000-wide rows is slow.
    """
    X = np.ascontiguousarray(X)
    digests = np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in X])
    _, first, row_ids = np.unique(digests, return_index=True, return_inverse=True)
    order = np.argsort(first)
    renumbered = np.empty_like(order)
    renumbered[order] = np.arange(len(order))
    return renumbered[row_ids.ravel()], first[order]
