"""Validation: how good the model is on labels it never saw, and how sure we are.

ROC AUC (exactly scikit-learn's ``roc_auc_score``, ties counted half, vectorised over many
score sets), a bootstrap interval that resamples whole groups (cells or blocks: rows of
one cell share a feature vector, and nearby cells resemble each other, so resampling rows
would pretend to more independent evidence than there is), the Brier score, a
reliability table, and AUC per subset (``sample_type``: targeted samples flatter a model;
a random sample does not).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

#: bootstrap resamples behind ``test_auc_ci95``
BOOTSTRAP_RESAMPLES = 2000
#: equal-width bins of predicted probability in the reliability table
RELIABILITY_BINS = 10


def roc_auc(y: np.ndarray, scores: np.ndarray) -> np.ndarray | float:
    """ROC AUC of ``scores`` (shape ``(n,)`` or ``(n_sets, n)``) against binary ``y``.

    The Mann-Whitney statistic with average ranks for ties: equal to scikit-learn's
    ``roc_auc_score``, one score set per row.
    """
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs labels of both classes")
    ranks = average_ranks(scores)
    auc = (ranks[..., y].sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(auc) if np.ndim(auc) == 0 else auc


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1 along the last axis, ties sharing their average (as ``scipy.stats.rankdata``,
    without importing ``scipy.stats``, which takes 0.4 s in every worker that scores folds)."""
    values = np.asarray(values)
    flat = values.reshape(-1, values.shape[-1])
    ranks = np.empty(flat.shape)
    n = flat.shape[1]
    for out, row in zip(ranks, flat):
        order = np.argsort(row, kind="stable")
        ordered = row[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], n]
        out[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)
    return ranks.reshape(values.shape)


def bootstrap_auc(y: np.ndarray, scores: np.ndarray, groups: np.ndarray, seed: int,
                  resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """ROC AUC of ``resamples`` bootstrap samples that draw whole groups with replacement.

    Each sample draws as many groups as there are, uniformly with replacement; a row
    counts as often as its group was drawn. Samples that hold one class only (possible
    with few groups) are left out, so the result may be a little shorter.
    """
    y = np.asarray(y).astype(bool)
    order = np.argsort(scores, kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    # Rows with equal scores form contiguous blocks of the sorted order: a tie counts half.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    unique_groups, group_of_row = np.unique(np.asarray(groups)[order], return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(unique_groups), np.full(len(unique_groups), 1 / len(unique_groups)),
                             size=resamples).astype(np.float64)
    weights = counts[:, group_of_row.ravel()]
    positive = y[order]
    pos = np.add.reduceat(weights * positive, starts, axis=1)
    neg = np.add.reduceat(weights * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    valid = (total_pos > 0) & (total_neg > 0)
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    return wins[valid] / (total_pos[valid] * total_neg[valid])


def auc_interval(y: np.ndarray, scores: np.ndarray, groups: np.ndarray, seed: int,
                 level: float = 0.95) -> tuple[list[float], int]:
    """Percentile bootstrap interval of the ROC AUC, resampling whole groups; and how many
    resamples held both classes (only those have an AUC)."""
    samples = bootstrap_auc(y, scores, groups, seed)
    tail = (1 - level) / 2
    return [float(v) for v in np.quantile(samples, [tail, 1 - tail])], len(samples)


def brier_score(y: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared difference between the predicted probability and the 0/1 label."""
    return float(np.mean((np.asarray(probability, dtype=np.float64) - np.asarray(y)) ** 2))


def reliability_table(y: np.ndarray, probability: np.ndarray,
                      n_bins: int = RELIABILITY_BINS) -> pd.DataFrame:
    """Per bin of predicted probability: its range, count, mean prediction, observed rate.

    Bins are equal-width over [0, 1], the last closed on the right; empty bins have a
    count of 0 and no mean or rate.
    """
    probability = np.asarray(probability, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    index = np.clip(np.digitize(probability, edges[1:-1], right=False), 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, probability, n_bins) / count
        observed = np.bincount(index, y, n_bins) / count
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "n": count,
                         "mean_predicted": mean_predicted, "observed_frequency": observed})


def auc_by_subset(y: np.ndarray, scores: dict[str, np.ndarray],
                  subset: np.ndarray) -> dict[str, dict[str, Any]]:
    """ROC AUC of each score set within each value of ``subset`` (e.g. ``sample_type``).

    A subset with one class only gets ``None`` for its AUCs, with its counts.
    """
    subset = np.asarray(subset).astype(str)
    result = {}
    for value in sorted(set(subset.tolist())):
        rows = subset == value
        entry: dict[str, Any] = {"n": int(rows.sum()), "n_asm": int(np.asarray(y)[rows].sum())}
        both = 0 < entry["n_asm"] < entry["n"]
        for name, values in scores.items():
            entry[name] = roc_auc(np.asarray(y)[rows], np.asarray(values)[rows]) if both else None
        result[value] = entry
    return result


@dataclass(frozen=True)
class HeldOutMetrics:
    """Everything measured on the test labels (the names are ``metrics.json``'s keys)."""

    test_auc_uncalibrated: float
    test_auc_calibrated: float
    test_auc_ci95: list[float]
    test_auc_uncalibrated_ci95: list[float]
    test_auc_change_from_calibration: float
    n_test_asm: int
    n_test_not_asm: int
    #: what the interval resampled: unit, n_groups, resamples, resamples_with_both_classes, seed
    bootstrap: dict[str, Any]
    brier_test: float
    #: the reliability table's rows, empty bins' mean and rate as None
    reliability_test: list[dict[str, Any]]
    #: AUCs within each sample_type, when the labels say how they were sampled
    test_auc_by_sample_type: dict[str, dict[str, Any]] | None
    #: the reliability table itself, for its figure
    reliability: pd.DataFrame

    def as_dict(self) -> dict[str, Any]:
        """The measures, without the table."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "reliability"}


def held_out_metrics(y: np.ndarray, scores: np.ndarray, probability: np.ndarray, groups: np.ndarray,
                     unit: str, seed: int, sample_type: np.ndarray | None = None) -> HeldOutMetrics:
    """Everything measured on the test set.

    ``groups`` are what the bootstrap resamples (``unit``: blocks of nearby cells, or
    cells); ``sample_type`` splits the AUCs by how the labels were sampled, when known.
    """
    auc_uncalibrated, auc_calibrated = roc_auc(y, scores), roc_auc(y, probability)
    table = reliability_table(y, probability)
    interval, used = auc_interval(y, probability, groups, seed)
    interval_uncalibrated, _ = auc_interval(y, scores, groups, seed)
    by_type = None if sample_type is None else auc_by_subset(
        y, {"auc_calibrated": probability, "auc_uncalibrated": scores}, sample_type)
    return HeldOutMetrics(
        test_auc_uncalibrated=auc_uncalibrated, test_auc_calibrated=auc_calibrated, test_auc_ci95=interval,
        test_auc_uncalibrated_ci95=interval_uncalibrated,
        test_auc_change_from_calibration=auc_calibrated - auc_uncalibrated,
        n_test_asm=int(np.sum(y)), n_test_not_asm=int(len(y) - np.sum(y)),
        bootstrap={"unit": unit, "n_groups": int(len(np.unique(groups))), "resamples": BOOTSTRAP_RESAMPLES,
                   "resamples_with_both_classes": used, "seed": seed},
        brier_test=brier_score(y, probability),
        reliability_test=[{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
                          for row in table.to_dict(orient="records")],
        test_auc_by_sample_type=by_type, reliability=table)
