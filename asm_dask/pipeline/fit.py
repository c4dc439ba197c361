"""The fit stage of a run, wired: split -> fit -> calibrate -> validate, on the labelled rows.

The labelled cells' features are split into training and test rows by group (cells, or
blocks of cells), ridge and any other estimators of ``model.estimators`` are tuned on
the same folds of the training rows, each is calibrated on its out-of-fold scores, and
the selected one is held to the test rows. :func:`fit_labelled_cells` returns all of it
as a :class:`FittedModel`; nothing here writes a file.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import Job
from ..config.problems import listed
from ..errors import InputError, warn
from ..model.classifier import CalibratedClassifier
from ..model.evaluation import HeldOutMetrics, held_out_metrics, roc_auc
from ..model.ridge import DOMINANT_SCALE_RATIO, AlphaAtGridEdgeWarning, FeatureScaleWarning, RidgeGridClassifier
from ..model.search import Candidate, calibrated_model, comparison, ridge_candidate, search, select
from ..model.split import cv_folds, train_test_split_groups
from ..report.importance import feature_importance
from ..runtime.memory import release_freed_memory
from ..runtime.progress import stage
from ..spatial.blocks import block_groups
from .metrics import EstimatorComparison

log = logging.getLogger(__name__)

#: fewer test blocks than this, and the bootstrap resamples cells instead
MIN_BOOTSTRAP_BLOCKS = 10
#: fewer test labels of either class than this, and the run warns that its AUC says little
MIN_TEST_LABELS_PER_CLASS = 10
#: pooled out-of-fold scores ranking worse than each fold's by more than this: a warning
POOLED_AUC_SHORTFALL = 0.05
#: blocks for the blocked CV are halved until they make the folds, but not below this (degrees)
MIN_BLOCK_SIZE = 0.05


@dataclass(frozen=True)
class CrossValidation:
    """Ridge's ROC AUC on folds of one grouping: ``cell`` (rows of a cell stay together)
    or ``block`` (rows of a square block of cells do)."""

    grouping: str
    alphas: np.ndarray
    #: (n_alphas, n_folds)
    auc: np.ndarray
    best_alpha: float
    #: the blocks' side in degrees (for ``block``)
    block_size: float | None = None

    @property
    def name(self) -> str:
        """As metrics.json names it: ``cell`` or ``blocked``."""
        return "blocked" if self.grouping == "block" else "cell"

    @property
    def at_best(self) -> np.ndarray:
        """Every fold's AUC at the chosen alpha."""
        return self.auc[int(np.flatnonzero(self.alphas == self.best_alpha)[0])]

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Alphas, mean AUC and its sd over folds: the CV curve a figure draws."""
        return self.alphas, self.auc.mean(axis=1), self.auc.std(axis=1)


@dataclass(frozen=True)
class FittedModel:
    """What the fit stage made of the labelled rows."""

    train: np.ndarray
    test: np.ndarray
    n_train_groups: int
    n_test_groups: int
    ridge: RidgeGridClassifier
    candidates: list[Candidate]
    selected: Candidate
    selected_by: str
    #: every candidate, calibrated: name -> model
    models: dict[str, CalibratedClassifier]
    #: ridge's CV on the grouping that chose alpha, and where it could be made, the other
    cross_validation: dict[str, CrossValidation]
    #: grouping -> why its CV could not be made
    unavailable: dict[str, str]
    test_scores: np.ndarray
    test_probability: np.ndarray
    tested: HeldOutMetrics
    #: the calibration set's pooled out-of-fold AUC
    oof_auc: float
    comparison: dict[str, EstimatorComparison]
    #: the model whose linear weights rank the features: the selected one, or ridge
    explained: CalibratedClassifier
    importance: pd.DataFrame
    caveats: list[str] = field(default_factory=list)

    @property
    def model(self) -> CalibratedClassifier:
        """The selected model: it predicts every cell."""
        return self.models[self.selected.name]


def fit_labelled_cells(X: np.ndarray, y: np.ndarray, groups: np.ndarray, rows: pd.DataFrame,
                       feature_names: tuple[str, ...], job: Job, timings: dict[str, float], client: Any) -> FittedModel:
    """Split, fit, calibrate and validate on the labelled cells' features ``X`` (labels
    ``y``, split ``groups``, and their ``rows``: cell ids and centroids); the stages'
    times go into ``timings``, and the caveats are warned of (:class:`AsmDaskWarning`)."""
    with stage(timings, "fit"):
        train, test = train_test_split_groups(y, groups, job.split, job.labels.path)
        folds = cv_folds(y[train], groups[train], job.model.cv_folds, job.labels.path, job.split.seed)
        other = "block" if job.split.group_by == "cell" else "cell"
        try:
            other_folds, block_size = _other_folds(other, y[train], rows.iloc[train], job)
        except InputError as exc:
            other_folds, unavailable = None, {other: str(exc)}
        else:
            unavailable = {}
        started = time.perf_counter()
        ridge = RidgeGridClassifier(alphas=job.model.alphas, cv=folds, standardize=job.model.standardize,
                                    extra_cv=other_folds)
        with warnings.catch_warnings():
            # said below, on one line, with the features' names
            warnings.simplefilter("ignore", AlphaAtGridEdgeWarning)
            warnings.simplefilter("ignore", FeatureScaleWarning)
            ridge.fit(X[train], y[train])
        candidates = [ridge_candidate(ridge, time.perf_counter() - started)]
        cross_validation = _cross_validation(ridge, job, None if other_folds is None else block_size)
        candidates += [search(name, grid, X[train], y[train], folds, job.split.seed, client)
                       for name, grid in job.model.estimators.items() if name != "ridge"]
        selected, selected_by = select(candidates, job.model.select)
    with stage(timings, "calibrate"):
        models = {c.name: calibrated_model(c, y[train], job.model.calibration, X[train], folds, feature_names)
                  for c in candidates}
        model = models[selected.name]
        test_scores = model.score_matrix(X[test])
        test_probability = model.calibrate(test_scores)
    with stage(timings, "validate"):
        unit, resampled = _bootstrap_groups(rows.iloc[test], job.split.block_size)
        sample_type = rows["sample_type"].to_numpy()[test] if "sample_type" in rows else None
        tested = held_out_metrics(y[test], test_scores, test_probability, resampled, unit, job.split.seed,
                                  sample_type)
        oof_auc = roc_auc(y[train], selected.oof_scores)
        blocked = {c.name: c.cv_auc for c in candidates} if job.split.group_by == "block" else {}
        if "block" in cross_validation:
            blocked["ridge"] = float(cross_validation["block"].at_best.mean())
        compared = {name: EstimatorComparison.from_dict(entry) for name, entry in
                    comparison(candidates, models, X[test], y[test], blocked).items()}
        # Importance is read from linear weights: the selected model's, or ridge's.
        explained = model if model.linear else models["ridge"]
        importance = feature_importance(feature_names, explained.coef_, X[train], X[test], y[test], job.split.seed)
    fitted = FittedModel(train=train, test=test, n_train_groups=int(len(np.unique(groups[train]))),
                         n_test_groups=int(len(np.unique(groups[test]))), ridge=ridge, candidates=candidates,
                         selected=selected, selected_by=selected_by, models=models,
                         cross_validation=cross_validation, unavailable=unavailable, test_scores=test_scores,
                         test_probability=test_probability, tested=tested, oof_auc=oof_auc, comparison=compared,
                         explained=explained, importance=importance)
    for caveat in caveats(fitted, job, feature_names):
        fitted.caveats.append(caveat)
        warn(caveat)
    release_freed_memory()  # the kernels' and folds' memory, before the prediction
    return fitted


def _cross_validation(ridge: RidgeGridClassifier, job: Job,
                      other_block_size: float | None) -> dict[str, CrossValidation]:
    """The search's CV AUC, and the chosen model's on folds of the other grouping.

    Alpha is chosen on folds of ``split.group_by`` (cells, or blocks); the other grouping
    (``extra_cv``) scores the grid from two decades below the chosen alpha upwards (small
    alphas cost the most to solve), so that a reader sees both side by side, and whether
    the other grouping would want more penalty. When cells choose alpha and blocks of
    ``split.block_size`` are too few for the folds (a small country), the blocks are
    halved until they are enough, down to ``MIN_BLOCK_SIZE`` (:func:`_other_folds`); what
    could not be made is reported, not fatal.
    """
    chosen, other = job.split.group_by, "block" if job.split.group_by == "cell" else "cell"
    found = {chosen: CrossValidation(chosen, ridge.alphas_, ridge.cv_auc_, ridge.best_alpha_,
                                     job.split.block_size if chosen == "block" else None)}
    if other_block_size is not None:
        found[other] = CrossValidation(other, ridge.extra_cv_alphas_, ridge.extra_cv_auc_, ridge.best_alpha_,
                                       other_block_size if other == "block" else None)
    return found


def _other_folds(grouping: str, y: np.ndarray, rows: pd.DataFrame,
                 job: Job) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Folds of the grouping that did not choose alpha, and the block size they used."""
    def folds(groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return cv_folds(y, groups, job.model.cv_folds, job.labels.path, job.split.seed)

    if grouping == "cell":
        return folds(rows["cell_id"].to_numpy()), job.split.block_size
    lat, lon = rows["cell_lat"].to_numpy(), rows["cell_lon"].to_numpy()
    size = job.split.block_size
    while True:
        try:
            return folds(block_groups(lat, lon, size)), size
        except InputError:
            if size / 2 < MIN_BLOCK_SIZE:
                raise
            size /= 2


def _bootstrap_groups(test_rows: pd.DataFrame, block_size: float) -> tuple[str, np.ndarray]:
    """What the bootstrap of the test AUC resamples: blocks of nearby cells, whose labels
    are not independent of each other, or whole cells where the test set spans too few
    blocks for a bootstrap to mean anything."""
    blocks = block_groups(test_rows["cell_lat"].to_numpy(), test_rows["cell_lon"].to_numpy(), block_size)
    if len(np.unique(blocks)) >= MIN_BOOTSTRAP_BLOCKS:
        return "block", blocks
    return "cell", test_rows["cell_id"].to_numpy()


def caveats(fitted: FittedModel, job: Job, feature_names: tuple[str, ...]) -> list[str]:
    """What a reader of the numbers must know first."""
    ridge, found = fitted.ridge, []
    if len(ridge.dominant_features_):
        names = [feature_names[i] for i in ridge.dominant_features_]
        found.append(f"feature(s) {listed(names, 3)} spread over {DOMINANT_SCALE_RATIO:g} times wider than the typical "
                     "feature over the training labels: ridge's penalty then shrinks every other feature to "
                     "nothing; set model.standardize: true, or check those columns of the features file")
    if ridge.alpha_at_grid_edge_:
        mean = ridge.cv_auc_.mean(axis=1)
        ties = int((mean == mean.max()).sum()) - 1
        if ties:
            how = f"ties {ties} other(s): the CV AUC does not change there; check the labels and the features"
        elif job.model.alphas != "auto":
            how = "beats every other: model.alphas: auto searches a wider grid"
        else:
            how = (f"beats every other, even after {ridge.n_grid_extensions_} decades of extension; check the "
                   "labels and the features")
        found.append(f"the best alpha, {ridge.best_alpha_:g}, is at the edge of the alphas searched "
                     f"({ridge.alphas_.min():g} to {ridge.alphas_.max():g}) and {how}")
    for name, entry in fitted.comparison.items():
        for param in entry.params_at_grid_edge:
            found.append(f"{name}'s best {param}, {entry.best_params[param]:g}, is at the edge of the "
                         f"values searched: give model.estimators.{name} a grid beyond it")
    blocked = fitted.cross_validation.get("block")
    if blocked is not None and blocked.block_size != job.split.block_size:
        found.append(f"blocks of split.block_size={job.split.block_size:g} degrees were too few for "
                     f"{job.model.cv_folds} blocked folds; the blocked CV used blocks of {blocked.block_size:g} "
                     "degrees")
    for grouping, name in (("block", "blocked"), ("cell", "cell")):
        if grouping in fitted.unavailable:
            found.append(f"no {name} cross-validation: {fitted.unavailable[grouping]}")
    fewest = min(fitted.tested.n_test_asm, fitted.tested.n_test_not_asm)
    if fewest < MIN_TEST_LABELS_PER_CLASS:
        found.append(f"the test set holds only {fewest} label(s) of one class: its ROC AUC and interval "
                     "say little; more labels, or a larger split.test_size, are needed")
    selected = fitted.selected
    pooled, per_fold = fitted.oof_auc, selected.cv_auc
    if pooled < per_fold - POOLED_AUC_SHORTFALL:
        at = f"alpha {ridge.best_alpha_:g}" if selected.name == "ridge" else f"{selected.name} {selected.best_params}"
        remedy = "model.alphas" if selected.name == "ridge" else "parameters in its model.estimators grid"
        found.append(f"pooled, the out-of-fold scores the calibration is fitted on rank the training "
                     f"labels with AUC {pooled:.3f}, against {per_fold:.3f} within each fold: the folds' "
                     f"models disagree in offset or scale (at {at}), and the "
                     f"calibrated map loses order; try other {remedy}")
    if np.ptp(fitted.test_probability) == 0:
        found.append(f"the calibrated probability is {fitted.test_probability[0]:.3g} for every test label: "
                     "the map holds one value")
    return found
