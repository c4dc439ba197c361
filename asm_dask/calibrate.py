"""Calibrate stage: isotonic regression from decision scores to probabilities.

The calibrator is fitted on the training rows' out-of-fold decision scores, never on the
test rows (the notebook fitted it on the test set and then measured it there). The
fitted ridge weights and the calibrator together are a :class:`CalibratedModel`, saved as
JSON so that any cell's probability can be reproduced without asm_dask's pipeline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

from .atomic import write_atomic
from .ridge import linear_scores


def fit_isotonic(scores: np.ndarray, y: np.ndarray) -> IsotonicRegression:
    """Monotone map from decision score to P(label == 1), clipped outside the seen scores."""
    return IsotonicRegression(out_of_bounds="clip").fit(scores, y)


@dataclass(frozen=True)
class CalibratedModel:
    """A linear decision score and its isotonic calibration.

    ``decision_function(x) = x @ coef + intercept``; ``predict_proba`` interpolates the
    isotonic curve through (``thresholds_x``, ``thresholds_y``), constant beyond its ends.
    """

    feature_names: tuple[str, ...]
    coef: np.ndarray
    intercept: float
    alpha: float
    thresholds_x: np.ndarray
    thresholds_y: np.ndarray

    @classmethod
    def from_fitted(cls, feature_names, ridge, isotonic: IsotonicRegression) -> "CalibratedModel":
        return cls(tuple(feature_names), np.asarray(ridge.coef_, dtype=np.float64),
                   float(ridge.intercept_), float(ridge.best_alpha_),
                   np.asarray(isotonic.X_thresholds_, dtype=np.float64),
                   np.asarray(isotonic.y_thresholds_, dtype=np.float64))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return linear_scores(X, self.coef, self.intercept)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities for decision scores (what ``IsotonicRegression.predict`` gives)."""
        return np.interp(scores, self.thresholds_x, self.thresholds_y)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(ASM) per row, shape ``(n_rows,)``."""
        return self.calibrate(self.decision_function(X))

    def save(self, path: str | os.PathLike) -> None:
        data = {"feature_names": list(self.feature_names), "coef": self.coef.tolist(),
                "intercept": self.intercept, "alpha": self.alpha,
                "isotonic": {"x": self.thresholds_x.tolist(), "y": self.thresholds_y.tolist()}}
        write_atomic(path, json.dumps(data))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibratedModel":
        with open(path) as f:
            data = json.load(f)
        return cls(tuple(data["feature_names"]), np.asarray(data["coef"]), data["intercept"],
                   data["alpha"], np.asarray(data["isotonic"]["x"]), np.asarray(data["isotonic"]["y"]))

