"""Calibrate stage: decision scores to probabilities, isotonic or sigmoid.

The calibrator is fitted on the training rows' out-of-fold decision scores, never on the
test rows (the notebook fitted it on the test set and then measured it there).

- ``isotonic`` (the notebook's): a monotone step function, clipped outside the scores
  seen. Flexible; its steps tie neighbouring scores, which can lower the ROC AUC a little.
- ``sigmoid`` (Platt scaling): ``1 / (1 + exp(a * score + b))``, fitted by log loss with
  Platt's smoothed targets, as scikit-learn's ``CalibratedClassifierCV(method="sigmoid")``,
  but with ``a <= 0``: probability never falls as the score rises (scikit-learn's may, on
  scores that rank backwards), so the ROC AUC is unchanged unless the curve is flat. Two
  parameters, so it needs fewer labels.

Every estimator is calibrated from the score it ranks by, out of fold: a linear model's
decision function (ridge, logistic regression, linear SVM; the SVM has no probability),
a tree ensemble's positive-class probability. That probability is not calibrated
either: a random forest's is a fraction of votes of trees grown on bootstrap samples,
pulled towards the middle (it seldom reaches 0 or 1 even where every label agrees), and
gradient boosting's, fitted by log loss on a few thousand labels, is over-confident
once the trees fit the training rows. Calibrating it out of fold, as ridge's score is,
makes a probability of 0.5 mean the same thing whichever model drew the map.

An estimator and its calibrator together are a
:class:`~asm_dask.model.classifier.CalibratedClassifier`, which
:mod:`asm_dask.model.persistence` saves and loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import CALIBRATION_METHODS


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from decision score to P(ASM).

    ``isotonic``: interpolation through (``x``, ``y``), constant beyond its ends.
    ``sigmoid``: ``1 / (1 + exp(a * score + b))`` with ``(a, b) = params``.
    """

    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(scores, self.params["x"], self.params["y"])
        from scipy.special import expit

        return expit(-(self.params["a"] * scores + self.params["b"]))

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, **{k: np.asarray(v).tolist() for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        params = {k: (np.asarray(v, dtype=np.float64) if isinstance(v, list) else float(v))
                  for k, v in data.items() if k != "method"}
        return cls(data["method"], params)


def fit_calibrator(scores: np.ndarray, y: np.ndarray, method: str = "isotonic") -> Calibrator:
    """Fit the calibration ``method`` to (out-of-fold) ``scores`` and labels ``y``."""
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression  # here: workers that only predict need not import it

        isotonic = IsotonicRegression(out_of_bounds="clip").fit(scores, y)
        return Calibrator("isotonic", {"x": np.asarray(isotonic.X_thresholds_, dtype=np.float64),
                                       "y": np.asarray(isotonic.y_thresholds_, dtype=np.float64)})
    if method == "sigmoid":
        a, b = _platt(np.asarray(scores, dtype=np.float64), np.asarray(y))
        return Calibrator("sigmoid", {"a": a, "b": b})
    raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}; got {method!r}")


def _platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt's sigmoid fit: log loss against smoothed targets, as scikit-learn fits it."""
    from scipy.optimize import minimize
    from scipy.special import expit

    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * scores + params[1]
        p = expit(-z)
        # log(1 + exp(z)) computed stably
        value = np.sum(np.logaddexp(0, z) - (1 - target) * z)
        residual = target - p
        return float(value), np.array([residual @ scores, residual.sum()])

    start = np.array([0.0, np.log((n_neg + 1) / (n_pos + 1))])
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(None, 0.0), (None, None)])
    return float(result.x[0]), float(result.x[1])
