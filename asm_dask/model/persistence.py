"""Saved models: a fitted, calibrated model written to a folder and read back.

Every model is described by ``model.json``: the estimator's name and parameters, the
feature names in order, the cell size, the calibration and the package versions it was
fitted with. A linear model (ridge, logistic regression, linear SVM) is whole in that
file, readable: its coefficients and intercept in raw feature units, so that any cell's
probability can be reproduced without asm_dask. Any other estimator is written beside
it as ``model.skops``, by skops, never pickle: loading a pickle runs whatever code the
file names, and a model file may come from someone else. skops loads only the types it
is told to trust; this module trusts scikit-learn's own tree types, the ones its
estimators hold, and refuses a file holding anything else. ``model.json`` records the
SHA-256 of ``model.skops``, so that a file swapped or damaged since is refused too.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import version
from typing import Any

import numpy as np

from .. import storage
from ..errors import InputError
from .calibration import Calibrator
from .classifier import CalibratedClassifier
from .estimators import unfitted

MODEL_FILE = "model.json"
ESTIMATOR_FILE = "model.skops"
#: ``model.json``'s layout; a reader refuses a format it does not know
FORMAT_VERSION = 1
#: the packages a saved model's numbers depend on
MODEL_PACKAGES = ("asm_dask", "numpy", "scikit-learn", "skops")
#: types beyond skops' defaults that the estimators of :mod:`asm_dask.model.estimators` hold
TRUSTED_TYPES = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfBinomialLoss",
)

def save_model(model: CalibratedClassifier, folder: str | os.PathLike, cell_size: float | None = None) -> None:
    """Write ``model`` into ``folder``: ``model.json``, and ``model.skops`` if it is not linear.

    ``cell_size`` is the side, in degrees, of the grid cells the features describe.
    Each file appears atomically; a ``model.skops`` of an earlier model is removed when
    the model is linear, so that the folder never holds two models.
    """
    if model.name is None or not hasattr(model, "feature_names_in_"):
        raise ValueError("model.json saves a model of asm_dask's estimators (ridge, logistic_regression, "
                         "linear_svm, random_forest, hist_gradient_boosting) fitted on named features (a DataFrame); "
                         f"got {type(model.estimator).__name__}")
    storage.make_folder(folder)
    skops_path = storage.join(folder, ESTIMATOR_FILE)
    names = [str(name) for name in model.feature_names_in_]
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "estimator": model.name, "params": model.best_params_,
        "n_features": len(names), "feature_names": names,
        "cell_size": cell_size, "calibration": model.calibrator_.as_dict(),
        "versions": {name: version(name) for name in MODEL_PACKAGES}}
    if model.linear:
        # a pipeline's scaler is folded into the weights: only ridge may be unscaled
        # the fitted ridge says how ``auto`` chose; a model read from model.json, as it was saved
        ridge = getattr(model, "estimator_", None) or model.estimator
        standardize = bool(getattr(ridge, "standardize_", ridge.standardize)) if model.name == "ridge" else True
        data.update(kind="linear", coef=model.coef_.tolist(), intercept=model.intercept_,
                    alpha=model.best_params_.get("alpha"), standardize=standardize)
        storage.remove(skops_path)
    else:
        import skops.io

        payload = skops.io.dumps(model.estimator_)
        storage.write_bytes(skops_path, payload)
        data.update(kind="skops", estimator_file=ESTIMATOR_FILE,
                    estimator_sha256=hashlib.sha256(payload).hexdigest(), fingerprint=model.scores_digest_)
    storage.write_text(storage.join(folder, MODEL_FILE), json.dumps(data))


def load_model(folder: str | os.PathLike, cell_size: float | None = None) -> CalibratedClassifier:
    """The model saved in ``folder`` by :func:`save_model`.

    Raises :class:`InputError` (one line naming the file) if ``model.json`` is missing or
    not a model, says cells of another size than ``cell_size`` (when given), or if
    ``model.skops`` is missing, differs from what ``model.json`` recorded, or holds a type
    that is not trusted.
    """
    path = storage.join(folder, MODEL_FILE)
    try:
        data = json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        raise InputError(f"{path}: no saved model (expected {MODEL_FILE} of an asm-dask run)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the model ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise InputError(f"{path}: not a model of this asm_dask (format_version {FORMAT_VERSION} expected)")
    try:
        _check_description(data)
        calibrator = Calibrator.from_dict(data["calibration"])
        name, params = data.get("estimator", "ridge"), data.get("params", {})
        parts = {"calibrator": calibrator, "feature_names": data["feature_names"], "best_params": params}
        if data.get("kind", "linear") == "linear":
            model = CalibratedClassifier.from_parts(
                unfitted(name, params, bool(data.get("standardize", False))),
                weights=(np.asarray(data["coef"], dtype=np.float64), float(data["intercept"])), **parts)
        else:
            from sklearn.base import clone

            fitted = _load_estimator(storage.join(folder, data["estimator_file"]), data["estimator_sha256"])
            model = CalibratedClassifier.from_parts(clone(fitted), fitted=fitted, scores_digest=data["fingerprint"],
                                                    **parts)
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a complete model (missing or wrong {exc})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not a model: {str(exc).strip().splitlines()[0]}") from None
    saved = data.get("cell_size")
    if cell_size is not None and saved is not None and saved != cell_size:
        raise InputError(f"{path}: says cells of {saved:g} degrees; the run read cells of {cell_size:g} "
                         "(manifest.json)")
    return model


def _check_description(data: dict[str, Any]) -> None:
    """What ``model.json`` says of its model holds together; a ``ValueError`` saying what
    does not. (The numbers that make the predictions are checked against the run's
    manifest, by their hash.)"""
    from ..config import ESTIMATOR_NAMES
    from .estimators import LINEAR

    names = data["feature_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError("feature_names must be a non-empty list of names")
    if data.get("n_features", len(names)) != len(names):
        raise ValueError(f"n_features is {data.get('n_features')!r} but {len(names)} feature_names are listed")
    estimator = data.get("estimator", "ridge")
    if estimator not in ESTIMATOR_NAMES:
        raise ValueError(f"estimator {estimator!r} is not one of {', '.join(ESTIMATOR_NAMES)}")
    if (data.get("kind", "linear") == "linear") != (estimator in LINEAR):
        raise ValueError(f"estimator {estimator!r} is {'' if estimator in LINEAR else 'not '}linear but kind is "
                         f"{data.get('kind', 'linear')!r}")
    size = data.get("cell_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size < 90):
        raise ValueError(f"cell_size must be a positive number of degrees, not {size!r}")
    if data.get("kind", "linear") == "linear" and len(data["coef"]) != len(names):
        raise ValueError(f"{len(data['coef'])} coefficients for {len(names)} features")


def _load_estimator(path: str, sha256: str) -> Any:
    import skops.io

    try:
        payload = storage.read_bytes(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the saved estimator ({exc.strerror or exc})") from None
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise InputError(f"{path}: is not the estimator {MODEL_FILE} was saved with (its SHA-256 differs)")
    untrusted = skops.io.get_untrusted_types(data=payload)
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise InputError(f"{path}: holds types asm_dask does not trust, refused unread: {', '.join(refused)}")
    return skops.io.loads(payload, trusted=untrusted)
