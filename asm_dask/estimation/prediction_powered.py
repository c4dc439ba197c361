"""Prediction-powered inference for a mean (Angelopoulos et al. 2023; PPI++, Angelopoulos,
Duchi and Zrnic 2023): a small labelled random sample and the map's predictions for
every cell, combined into an interval that holds the truth as a classical one does and is
usually narrower, the better the predictions.

The estimate is ``mean(lam * f(all cells)) + mean(y - lam * f(sampled cells))``: the map's
mean, corrected by the sample's mean error. ``lam`` (power tuning) is chosen from the
data to make the interval narrowest, within [0, 1]: 0 ignores the map (the classical
interval), 1 is the original PPI. The interval is the one ``ppi_py.ppi_mean_ci`` returns
(ppi-python 0.2.3) for the same inputs, as the tests check; it assumes the sampled cells
are a simple random sample of the cells predicted.
"""

from __future__ import annotations

import numpy as np

from .stratified import Estimate


def prediction_powered_mean(y: np.ndarray, predicted: np.ndarray, predicted_all: np.ndarray) -> Estimate:
    """The mean of ``y`` over the population, from ``y`` and its predictions on the
    sampled units and the predictions ``predicted_all`` on every unit."""
    y, predicted, predicted_all = (np.asarray(a, dtype=float) for a in (y, predicted, predicted_all))
    n, N = len(y), len(predicted_all)
    first = predicted_all.mean() + (y - predicted).mean()
    lam = _power_tuning(y - first, predicted - first, predicted_all - first, n, N)
    value = (lam * predicted_all).mean() + (y - lam * predicted).mean()
    se = np.sqrt((lam * predicted_all).std() ** 2 / N + (y - lam * predicted).std() ** 2 / n)
    return Estimate(float(value), float(se))


def _power_tuning(residual: np.ndarray, residual_predicted: np.ndarray, residual_all: np.ndarray,
                  n: int, N: int) -> float:
    """The ``lam`` in [0, 1] that minimizes the estimate's variance (PPI++, for a mean)."""
    covariance = 2 * np.mean((residual - residual.mean()) * (residual_predicted - residual_predicted.mean()))
    variance = np.var(np.concatenate([residual_predicted, residual_all]), ddof=1)
    if variance == 0:
        return 0.0
    return float(np.clip(covariance / (2 * (1 + n / N) * variance), 0, 1))
