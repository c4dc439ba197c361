"""The estimators a job can compare, their built-in grids, and how each one scores.

``ridge`` is :class:`asm_dask.model.ridge.RidgeGridClassifier` (its grid is ``model.alphas``);
every other name is a scikit-learn estimator whose grid dask-ml searches (see
:mod:`asm_dask.model.search`). The built-in grids are small on purpose: each point costs a
fit per fold, and at Sierra Leone scale (about 5,000 training rows x 4000 features) a
forest fit takes tens of seconds.

MOSAIKS features are non-negative and unscaled (values in the thousands), so the linear
models other than ridge standardise them first, in a pipeline: their penalties (``C``)
act on standardised weights, and a solver on raw features converges slowly. The trees
need no scaling. Every estimator that draws random numbers gets ``random_state`` from
``split.seed``, so a run is repeatable.

Grids are written as a user writes them, by the estimator's own parameter names (``C``,
``min_samples_leaf``); :func:`search_grid` prefixes them for the pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ESTIMATOR_NAMES, Job
from ..config.problems import problem
from ..errors import InputError

#: estimators whose score is ``x @ coef + intercept`` once any scaler is folded in
LINEAR = ("ridge", "logistic_regression", "linear_svm")
#: the step of a scaled pipeline that holds the estimator
MODEL_STEP = "model"

#: built-in grids, parameter -> values searched; ridge's grid is ``model.alphas``
BUILT_IN_GRIDS: dict[str, dict[str, list[Any]]] = {
    # C is the inverse penalty on standardised weights: thousands of correlated features
    # and a few thousand labels want strong penalties (on the synthetic Sierra Leone of
    # benchmarks/estimators.py the best C sat at the smallest of 1e-4..0.1, and of 1e-5..0.01).
    "logistic_regression": {"C": [0.000001, 0.00001, 0.0001, 0.001]},
    "linear_svm": {"C": [0.0000001, 0.000001, 0.00001, 0.0001]},
    # Leaves of one label overfit the vote; five smooth it. sqrt(4000) = 63 features
    # are tried at each split.
    "random_forest": {"min_samples_leaf": [1, 5]},
    # Leaves of 15 (not scikit-learn's 31): on the same country 15 scored better at both
    # rates, and a grid over leaves doubles the cost, the highest of all (benchmarks/README.md).
    "hist_gradient_boosting": {"learning_rate": [0.05, 0.1]},
}


def make_estimator(name: str, seed: int) -> Any:
    """A fresh, unfitted scikit-learn estimator ``name`` (not ``ridge``), seeded by ``seed``."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    inner = _inner_estimator(name, seed)
    if name in LINEAR:
        return Pipeline([("scale", StandardScaler()), (MODEL_STEP, inner)])
    return inner


def estimator_name(estimator: Any) -> str | None:
    """The name a job file gives ``estimator`` (a :class:`~asm_dask.model.ridge.RidgeGridClassifier`,
    or what :func:`make_estimator` makes, fitted or not); ``None`` for any other."""
    from .ridge import RidgeGridClassifier

    if isinstance(estimator, RidgeGridClassifier):
        return "ridge"
    steps = getattr(estimator, "named_steps", {})
    inner = steps[MODEL_STEP] if MODEL_STEP in steps else estimator
    return next((name for name in ESTIMATOR_NAMES[1:] if type(inner) is type(_inner_estimator(name, 0))), None)


def unfitted(name: str, params: dict[str, Any], standardize: bool = False) -> Any:
    """An unfitted estimator ``name`` with the parameters a search chose (as a grid names
    them): what a saved model records of the estimator it was fitted from."""
    from .ridge import RidgeGridClassifier

    if name == "ridge":
        return RidgeGridClassifier(alphas=(params["alpha"],), standardize=standardize)
    estimator = make_estimator(name, seed=0)
    known = estimator.get_params()
    # What a model file says of parameters another estimator has is not applied: its
    # weights, not this description, are the model.
    prefixed = {key: values[0] for key, values in search_grid(name, {k: [v] for k, v in params.items()}).items()
                if key in known}
    return estimator.set_params(**prefixed)


def _inner_estimator(name: str, seed: int) -> Any:
    if name == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000, random_state=seed)
    if name == "linear_svm":
        from sklearn.svm import LinearSVC

        return LinearSVC(max_iter=5000, random_state=seed)
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        # One job per fit: dask runs the fits of the grid side by side.
        return RandomForestClassifier(n_estimators=100, max_features="sqrt", n_jobs=1, random_state=seed)
    if name == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        # A fixed number of rounds: early stopping would hold out a random tenth of the
        # fold's rows, and the folds are chosen by cell.
        return HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, early_stopping=False,
                                              random_state=seed)
    raise ValueError(f"estimator must be one of {ESTIMATOR_NAMES[1:]}; got {name!r}")


def search_grid(name: str, grid: dict[str, list[Any]] | None) -> dict[str, list[Any]]:
    """``grid`` (or the built-in one) with its keys named as the estimator's pipeline wants."""
    grid = BUILT_IN_GRIDS[name] if grid is None else grid
    prefix = f"{MODEL_STEP}__" if name in LINEAR else ""
    return {prefix + param: list(values) for param, values in grid.items()}


def user_params(params: dict[str, Any]) -> dict[str, Any]:
    """Best parameters as a grid names them, without the pipeline's prefix."""
    return {key.removeprefix(f"{MODEL_STEP}__"): _plain(value) for key, value in params.items()}


def check_grids(job: Job, source: str) -> None:
    """Refuse, in one line naming the setting (``model.estimators.NAME.PARAMETER``), a grid
    value that scikit-learn's own parameter constraints refuse, before anything runs.
    ``source`` is the job file's name, as its other problems start."""
    for name, grid in job.model.estimators.items():
        found = check_grid(name, grid) if grid else None
        if found is not None:
            param, expected = found
            raise InputError(f"{source}: " + problem(f"model.estimators.{name}.{param}", expected, list(grid[param])))


def check_grid(name: str, grid: dict[str, list[Any]]) -> tuple[str, Any] | None:
    """The first parameter of ``grid`` that ``name`` does not take, or with a value it
    refuses, and what was expected instead, as ``(parameter, expected)``; ``None`` if
    the grid is sound.

    Values are checked by scikit-learn's own parameter constraints, before anything runs.
    """
    from sklearn.base import clone

    estimator = _inner_estimator(name, 0)
    known = estimator.get_params()
    for param, values in grid.items():
        if param not in known:
            return param, f"a parameter of {name} ({', '.join(sorted(known))})"
        for value in values:
            try:
                clone(estimator).set_params(**{param: value})._validate_params()
            except (TypeError, ValueError) as exc:
                message = str(exc).strip().splitlines()[0]
                return param, f"values that {name} accepts ({message})"
    return None


def params_at_grid_edge(best: dict[str, Any], grid: list[dict[str, Any]]) -> list[str]:
    """The numeric parameters whose best value is the smallest or largest of three or
    more searched: a better value may lie beyond the grid. (Of two values, the best is
    always at an end; a grid that short says nothing either way.)"""
    edges = []
    for param, value in best.items():
        values = {point["params"][param] for point in grid}
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(values) >= 3 and value in (min(numbers), max(numbers)):
            edges.append(param)
    return edges


def raw_scores(name: str | None, estimator: Any, X: np.ndarray) -> np.ndarray:
    """The score calibrated into a probability: the decision function of a linear model,
    the positive-class probability of a tree ensemble (see :mod:`asm_dask.model.calibration`);
    for an estimator of no name here, its decision function if it has one."""
    if name in LINEAR or (name is None and hasattr(estimator, "decision_function")):
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    return np.asarray(estimator.predict_proba(X)[:, 1], dtype=np.float64)


def fold_linear(estimator: Any) -> tuple[np.ndarray, float]:
    """``(coef, intercept)`` in raw feature units of a fitted linear model, or of a scaled
    linear pipeline: ``scaler`` then ``w . z + b`` is ``x @ (w / scale) + (b - mean / scale @ w)``."""
    steps = getattr(estimator, "named_steps", {})
    model = steps.get(MODEL_STEP, estimator)
    weights = np.asarray(model.coef_, dtype=np.float64).ravel()
    intercept = float(np.asarray(model.intercept_, dtype=np.float64).ravel()[0])
    if "scale" not in steps:
        return weights, intercept
    scaler = steps["scale"]
    coef = weights / scaler.scale_
    return coef, intercept - scaler.mean_ @ coef


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers, for JSON."""
    return value.item() if isinstance(value, np.generic) else value
