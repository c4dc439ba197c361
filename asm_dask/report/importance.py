"""Which features the model leans on: coefficients, standardised, and permutation importance.

A raw ridge coefficient depends on its feature's scale; multiplied by the feature's
standard deviation over the training rows it says how far one typical step of that
feature moves the score. Permutation importance asks the test set directly: shuffle one
feature's values across the test rows and see how much the ROC AUC drops.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

#: shuffles of each feature; the drop reported is their mean, with its spread
PERMUTATION_REPEATS = 5
#: features drawn on maps in the report, the best ranked
N_FEATURE_MAPS = 4
#: features scored at once: bounds the (test rows x features) matrix of permuted scores
FEATURE_BATCH = 512


def feature_importance(feature_names: list[str] | tuple[str, ...], coef: np.ndarray,
                       X_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                       seed: int) -> pd.DataFrame:
    """Every feature, ranked by the drop in test ROC AUC when it is permuted.

    Returns
    -------
    pandas.DataFrame
        ``rank``, ``feature``, ``coefficient``, ``train_sd``, ``standardized_coefficient``,
        ``permutation_auc_drop`` (mean over :data:`PERMUTATION_REPEATS` seeded shuffles)
        and ``permutation_auc_drop_sd``. Ties are ranked by the absolute standardised
        coefficient.
    """
    coef = np.asarray(coef, dtype=np.float64)
    sd = X_train.std(axis=0, dtype=np.float64)
    drops = permutation_auc_drops(coef, X_test, y_test, seed)
    table = pd.DataFrame({"feature": list(feature_names), "coefficient": coef, "train_sd": sd,
                          "standardized_coefficient": coef * sd,
                          "permutation_auc_drop": drops.mean(axis=0),
                          "permutation_auc_drop_sd": drops.std(axis=0)})
    table["_magnitude"] = table["standardized_coefficient"].abs()
    table = table.sort_values(["permutation_auc_drop", "_magnitude"], ascending=False, kind="stable")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table.drop(columns="_magnitude").reset_index(drop=True)


def permutation_auc_drops(coef: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                          seed: int) -> np.ndarray:
    """(repeats x features) drops in ROC AUC of the linear score ``X_test @ coef``.

    A linear score changes by ``coef[j] * (x_perm - x)`` when feature ``j`` is permuted,
    so every feature is scored from the one base score, without refitting or re-scoring.
    """
    y = np.asarray(y_test).astype(bool)
    base = np.asarray(X_test, dtype=np.float64) @ coef
    base_auc = _auc_rows(base[None, :], y)[0]
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(y)) for _ in range(PERMUTATION_REPEATS)]
    # The rows are ranked in the order of their base scores: permuting one feature moves
    # most scores a little, so each feature's scores come nearly sorted, which a stable
    # sort (timsort) ranks in near-linear time. An AUC does not depend on the rows' order.
    ranked = np.argsort(base, kind="stable")
    n_features = X_test.shape[1]
    drops = np.empty((PERMUTATION_REPEATS, n_features))

    def score(repeat: int, start: int) -> None:
        columns = slice(start, start + FEATURE_BATCH)
        block = np.asarray(X_test[:, columns], dtype=np.float64)
        # a feature per row: each sort reads contiguous memory
        scores = base[ranked] + (block[orders[repeat][ranked]].T - block[ranked].T) * coef[columns, None]
        drops[repeat, columns] = base_auc - _auc_rows(scores, y[ranked])

    # Sorting, most of the work, releases the GIL: the batches run side by side.
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(lambda task: score(*task), [(repeat, start) for repeat in range(PERMUTATION_REPEATS)
                                                  for start in range(0, n_features, FEATURE_BATCH)]))
    return drops


def _auc_rows(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``scores`` (ties count one half), from the average rank of
    the positives: in each row sorted, a run of equal scores shares the mean of its ranks."""
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(len(scores), np.nan)
    order = np.argsort(scores, axis=1, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=1)
    n = scores.shape[1]
    position = np.arange(n)[None, :]
    differs = ordered[:, 1:] != ordered[:, :-1]
    edge = np.ones((len(scores), 1), bool)
    # The first and one past the last position of each position's run of equal scores.
    first = np.maximum.accumulate(np.where(np.hstack([edge, differs]), position, 0), axis=1)
    ends = np.hstack([differs, edge])
    past = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1] + 1
    ranks = (first + 1 + past) / 2
    return ((ranks * y[order]).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
