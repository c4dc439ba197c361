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

The fitted linear weights and the calibrator together are a :class:`CalibratedModel`;
a fitted tree ensemble and its calibrator a :class:`CalibratedEstimator`.
:mod:`asm_dask.model.persistence` saves and loads both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import CALIBRATION_METHODS
from ..records.fingerprint import FINGERPRINT_DIGITS
from .estimators import raw_scores
from .ridge import RidgeGridClassifier, linear_scores


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


@dataclass(frozen=True)
class CalibratedModel:
    """A linear decision score and its calibration to a probability.

    ``decision_function(x) = x @ coef + intercept`` in raw feature units (a scaler the
    estimator was fitted behind is folded in); ``predict_proba`` applies the calibrator
    to it. ``alpha`` is ridge's penalty (``None`` for the other linear estimators, whose
    parameters are in ``params``).
    """

    feature_names: tuple[str, ...]
    coef: np.ndarray
    intercept: float
    alpha: float | None
    calibrator: Calibrator
    standardize: bool = False
    estimator: str = "ridge"
    params: dict[str, Any] = field(default_factory=dict)
    cell_size: float | None = None

    @classmethod
    def from_fitted(cls, feature_names: Sequence[str], ridge: RidgeGridClassifier,
                    calibrator: Calibrator, cell_size: float | None = None) -> CalibratedModel:
        return cls(tuple(feature_names), np.asarray(ridge.coef_, dtype=np.float64),
                   float(ridge.intercept_), float(ridge.best_alpha_), calibrator,
                   bool(ridge.standardize), "ridge", {"alpha": float(ridge.best_alpha_)}, cell_size)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return linear_scores(X, self.coef, self.intercept)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities for decision scores."""
        return self.calibrator(scores)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(ASM) per row, shape ``(n_rows,)``."""
        return self.calibrate(self.decision_function(X))

    def parameters(self) -> list[np.ndarray]:
        """Every number the predictions depend on, for fingerprinting the model."""
        values = [self.coef, np.array([self.intercept])]
        return values + [np.atleast_1d(np.asarray(v, dtype=np.float64))
                         for _, v in sorted(self.calibrator.params.items())]


@dataclass(frozen=True)
class CalibratedEstimator:
    """A fitted scikit-learn estimator that needs whole feature rows, and its calibration.

    ``decision_function`` is the score calibrated (:func:`asm_dask.model.estimators.raw_scores`:
    the positive-class probability of a tree ensemble); ``predict_proba`` the calibrated
    probability. ``fingerprint`` identifies the fit by what it does (see
    :func:`fingerprint`): a fitted estimator's bytes are not stable (skops archives name
    their members by object ids; pickles of an estimator that crossed processes differ).
    """

    feature_names: tuple[str, ...]
    estimator: str
    fitted: Any
    params: dict[str, Any]
    calibrator: Calibrator
    fingerprint: str
    cell_size: float | None = None

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X must have {len(self.feature_names)} features; got shape {X.shape}")
        return raw_scores(self.estimator, self.fitted, X)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities for raw scores."""
        return self.calibrator(scores)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(ASM) per row, shape ``(n_rows,)``."""
        return self.calibrate(self.decision_function(X))


def fingerprint(name: str, fitted: Any, X: np.ndarray) -> str:
    """SHA-256 of ``fitted``'s raw scores of ``X`` (the training rows): the same fit
    scores them the same to the last bit, and two fits that do are one model for them."""
    return hashlib.sha256(np.ascontiguousarray(raw_scores(name, fitted, X)).tobytes()).hexdigest()


def model_hash(model: CalibratedModel | CalibratedEstimator) -> str:
    """Fingerprint of what a model predicts: its parameters, or for an estimator that is
    not linear, what it scores (:attr:`CalibratedEstimator.fingerprint`), and its calibration."""
    digest = hashlib.sha256(model.calibrator.method.encode())
    if isinstance(model, CalibratedEstimator):
        digest.update(model.fingerprint.encode())
        arrays = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for _, v in sorted(model.calibrator.params.items())]
    else:
        arrays = model.parameters()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:FINGERPRINT_DIGITS]
