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
from .calibration import CalibratedEstimator, CalibratedModel, Calibrator

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

Model = CalibratedModel | CalibratedEstimator


def save_model(model: Model, folder: str | os.PathLike) -> None:
    """Write ``model`` into ``folder``: ``model.json``, and ``model.skops`` if it is not linear.

    Each file appears atomically; a ``model.skops`` of an earlier model is removed when
    the model is linear, so that the folder never holds two models.
    """
    storage.make_folder(folder)
    skops_path = storage.join(folder, ESTIMATOR_FILE)
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "estimator": model.estimator, "params": model.params,
        "n_features": len(model.feature_names), "feature_names": list(model.feature_names),
        "cell_size": model.cell_size, "calibration": model.calibrator.as_dict(),
        "versions": {name: version(name) for name in MODEL_PACKAGES}}
    if isinstance(model, CalibratedModel):
        data.update(kind="linear", coef=model.coef.tolist(), intercept=model.intercept, alpha=model.alpha,
                    standardize=model.standardize)
        storage.remove(skops_path)
    else:
        import skops.io

        payload = skops.io.dumps(model.fitted)
        storage.write_bytes(skops_path, payload)
        data.update(kind="skops", estimator_file=ESTIMATOR_FILE,
                    estimator_sha256=hashlib.sha256(payload).hexdigest(), fingerprint=model.fingerprint)
    storage.write_text(storage.join(folder, MODEL_FILE), json.dumps(data))


def load_model(folder: str | os.PathLike) -> Model:
    """The model saved in ``folder`` by :func:`save_model`.

    Raises :class:`InputError` (one line naming the file) if ``model.json`` is missing or
    not a model, or if ``model.skops`` is missing, differs from what ``model.json``
    recorded, or holds a type that is not trusted.
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
        names = tuple(data["feature_names"])
        if data.get("kind", "linear") == "linear":
            return CalibratedModel(names, np.asarray(data["coef"], dtype=np.float64), float(data["intercept"]),
                                   data["alpha"], calibrator, bool(data.get("standardize", False)),
                                   data.get("estimator", "ridge"), data.get("params", {}), data.get("cell_size"))
        fitted = _load_estimator(storage.join(folder, data["estimator_file"]), data["estimator_sha256"])
        return CalibratedEstimator(names, data["estimator"], fitted, data["params"], calibrator,
                                   data["fingerprint"], data.get("cell_size"))
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a complete model (missing or wrong {exc})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not a model: {str(exc).strip().splitlines()[0]}") from None


def _check_description(data: dict[str, Any]) -> None:
    """What ``model.json`` says of its model holds together; a ``ValueError`` saying what
    does not. (The numbers that make the predictions are checked against the run's
    manifest, by their hash.)"""
    from .estimators import ESTIMATOR_NAMES, LINEAR

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
