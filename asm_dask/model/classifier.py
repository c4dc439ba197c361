"""Calibrate stage: a fitted score and its calibration to a probability, as one estimator.

:class:`CalibratedClassifier` is what predicts every cell and what ``model.json`` saves:
an estimator's score (ridge's decision function, any linear model's, a tree ensemble's
positive-class probability) mapped to P(ASM) by a calibration fitted on the training
rows' *out-of-fold* scores, never on the test rows (see :mod:`asm_dask.model.calibration`).

A linear model's score is ``x @ coef_ + intercept_`` in raw feature units (any scaler
folded in): the prediction stage sums it over groups of columns, and any cell's
probability can be reproduced from ``model.json`` without asm_dask. Another estimator
keeps its fitted self in ``estimator_`` (saved with skops).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted, validate_data

from ..records.fingerprint import digest
from .binary import BinaryClassifier
from .calibration import Calibrator, fit_calibrator
from .estimators import LINEAR, estimator_name, fold_linear, raw_scores
from .numerics import linear_scores
from .ridge import RidgeGridClassifier


class CalibratedClassifier(BinaryClassifier):
    """A binary classifier whose score is calibrated, out of fold, into a probability.

    A scikit-learn estimator: it goes into a ``Pipeline``, ``cross_val_score`` or
    ``clone`` like any other.

    Parameters
    ----------
    estimator : estimator, default None
        The estimator whose score is calibrated; ``None`` is a
        :class:`~asm_dask.model.ridge.RidgeGridClassifier` with this ``cv``. A linear
        model scores by its decision function, any other by its positive-class
        probability.
    method : {"isotonic", "sigmoid"}, default "isotonic"
        ``isotonic`` (the notebook's) or ``sigmoid`` (Platt scaling, monotone).
    cv : int, cross-validation splitter or iterable of (train, validation) index arrays, default 5
        The folds whose out-of-fold scores the calibration is fitted on, as
        ``GridSearchCV`` takes them. A ``RidgeGridClassifier`` gives its own out-of-fold
        scores, from its own ``cv``.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    estimator_ : estimator
        The estimator fitted on every row. A linear model loaded from ``model.json``
        has none: its weights are the whole model.
    calibrator_ : Calibrator
        The monotone map from score to probability.
    coef_ : ndarray of shape (n_features,)
        Linear models only: weights in the raw features' units.
    intercept_ : float
        Linear models only.
    best_params_ : dict
        The estimator's parameters chosen by a search (ridge: ``alpha``).
    fingerprint_ : str
        A short digest of what the model predicts: its weights and calibration, or for
        an estimator that is not linear, its scores of its training rows and its
        calibration (a fitted estimator's bytes are not stable across processes).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        The feature columns, in order, when known (fitted on a DataFrame, or in a run).
    """

    def __init__(self, estimator: Any = None, method: str = "isotonic", cv: Any = 5):
        self.estimator = estimator
        self.method = method
        self.cv = cv

    def fit(self, X: Any, y: Any, groups: Any = None) -> CalibratedClassifier:
        """Fit the estimator on every row and the calibration on out-of-fold scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Two classes; the larger label (``classes_[1]``) is the positive one.
        groups : array-like of shape (n_samples,), optional
            Group of each row, for a ``cv`` splitter that keeps groups together.

        Returns
        -------
        CalibratedClassifier
            This estimator, fitted.
        """
        X, y = validate_data(self, X, y)
        y01 = self._binary_targets(y)
        if self.estimator is None or isinstance(self.estimator, RidgeGridClassifier):
            base = RidgeGridClassifier(cv=self.cv) if self.estimator is None else clone(self.estimator)
            base.fit(X, y01, groups)
            out_of_fold = base.oof_decision_
        else:
            name = estimator_name(self.estimator)
            out_of_fold = np.empty(len(y01))
            for train, valid in check_cv(self.cv, y01, classifier=True).split(X, y01, groups):
                out_of_fold[valid] = raw_scores(name, clone(self.estimator).fit(X[train], y01[train]), X[valid])
            base = clone(self.estimator).fit(X, y01)
        self._set_fitted(base, out_of_fold, y01, X, {})
        return self

    @classmethod
    def from_fitted(cls, estimator: Any, out_of_fold: np.ndarray, y: np.ndarray, method: str = "isotonic", *,
                    X: np.ndarray, cv: Any = 5, best_params: dict[str, Any] | None = None,
                    feature_names: Sequence[str] | None = None) -> CalibratedClassifier:
        """A fitted model from an estimator already fitted on every training row and its
        out-of-fold scores, as a run makes it: it searched the estimators itself, on its
        own folds (``cv``).

        ``y`` holds 0 and 1; ``X`` is the training rows (they fingerprint a model that is
        not linear).
        """
        model = cls(estimator=clone(estimator), method=method, cv=cv)
        model.classes_ = np.array([0, 1])
        model._set_fitted(estimator, out_of_fold, np.asarray(y), X, best_params or {})
        if feature_names is not None:
            model.feature_names_in_ = np.asarray(feature_names, dtype=object)
        return model

    @classmethod
    def from_parts(cls, estimator: Any, calibrator: Calibrator, *, feature_names: Sequence[str],
                   best_params: dict[str, Any], weights: tuple[np.ndarray, float] | None = None,
                   fitted: Any = None, scores_digest: str | None = None) -> CalibratedClassifier:
        """A fitted model from what ``model.json`` (and ``model.skops``) hold: the unfitted
        ``estimator`` it came from, its calibration, and either a linear model's
        ``weights`` (coefficients, intercept) or the ``fitted`` estimator with the digest
        of its scores of its training rows."""
        model = cls(estimator=estimator, method=calibrator.method)
        model.classes_ = np.array([0, 1])
        model.calibrator_ = calibrator
        model.best_params_ = dict(best_params)
        model.n_features_in_ = len(feature_names)
        model.feature_names_in_ = np.asarray(feature_names, dtype=object)
        if weights is not None:
            model.coef_, model.intercept_ = np.asarray(weights[0], dtype=np.float64), float(weights[1])
            model.fingerprint_ = model_fingerprint(calibrator, weights=(model.coef_, model.intercept_))
        else:
            model.estimator_, model.scores_digest_ = fitted, scores_digest
            model.fingerprint_ = model_fingerprint(calibrator, scores_digest=scores_digest)
        return model

    def _set_fitted(self, estimator: Any, out_of_fold: np.ndarray, y01: np.ndarray, X: np.ndarray,
                    best_params: dict[str, Any]) -> None:
        self.estimator_ = estimator
        self.calibrator_ = fit_calibrator(out_of_fold, y01, self.method)
        name = estimator_name(estimator)
        self.best_params_ = {"alpha": float(estimator.best_alpha_)} if name == "ridge" else {}
        self.best_params_.update(best_params)
        if name in LINEAR:
            self.coef_, self.intercept_ = (np.asarray(estimator.coef_, dtype=np.float64), float(estimator.intercept_)) \
                if name == "ridge" else fold_linear(estimator)
            self.fingerprint_ = model_fingerprint(self.calibrator_, weights=(self.coef_, self.intercept_))
        else:
            scores = raw_scores(name, estimator, X)
            self.scores_digest_ = hashlib.sha256(np.ascontiguousarray(scores).tobytes()).hexdigest()
            self.fingerprint_ = model_fingerprint(self.calibrator_, scores_digest=self.scores_digest_)

    @property
    def linear(self) -> bool:
        """Whether the score is ``x @ coef_ + intercept_``."""
        return hasattr(self, "coef_")

    @property
    def name(self) -> str | None:
        """The estimator's name in a job file (``ridge``, ``random_forest``...)."""
        return estimator_name(self.estimator if self.estimator is not None else RidgeGridClassifier())

    def raw_score(self, X: Any) -> np.ndarray:
        """The estimator's score, before calibration: what the calibration maps to a
        probability, and what the predictions' ``score`` column holds. (It is not a
        ``decision_function``: its sign need not agree with :meth:`predict`.)

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "calibrator_")
        return self.score_matrix(validate_data(self, X, reset=False))

    def score_matrix(self, X: np.ndarray) -> np.ndarray:
        """:meth:`raw_score` of a float matrix whose columns are the model's features in
        order, unchecked: what a run calls on rows it read itself."""
        if self.linear:
            return linear_scores(X, self.coef_, self.intercept_)
        return raw_scores(estimator_name(self.estimator_), self.estimator_, X)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """P(``classes_[1]``) for scores of :meth:`raw_score` (or their sum over groups of
        columns, as the prediction stage adds a linear score)."""
        return self.calibrator_(scores)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated probabilities of each class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Column 1 is P(``classes_[1]``), P(ASM) in a run.
        """
        positive = self.calibrate(self.raw_score(X))
        return np.column_stack([1 - positive, positive])

    def predict(self, X: Any) -> np.ndarray:
        """``classes_[1]`` where the calibrated probability is over 0.5 (the more probable class).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        positive = self.predict_proba(X)[:, 1] > 0.5
        return self.classes_[positive.astype(int)]


def model_fingerprint(calibrator: Calibrator, *, weights: tuple[np.ndarray, float] | None = None,
                      scores_digest: str | None = None) -> str:
    """A short digest of what a model predicts: its calibration and its linear weights, or
    the digest of its scores of its training rows (``model.json`` records it)."""
    parts = [calibrator.method.encode()]
    arrays: list[np.ndarray] = []
    if weights is not None:
        arrays += [weights[0], np.array([weights[1]])]
    else:
        parts.append(scores_digest.encode())
    arrays += [np.atleast_1d(np.asarray(v, dtype=np.float64)) for _, v in sorted(calibrator.params.items())]
    return digest(*parts, *(np.ascontiguousarray(array, dtype=np.float64).tobytes() for array in arrays))
