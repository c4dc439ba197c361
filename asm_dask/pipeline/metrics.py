"""What a run and a prediction measured: typed here, written to ``metrics.json`` with
these names as its keys.

Every field is a key of ``metrics.json``, in this order; a field that is ``None`` where
the docstring says "or None" is left out of the file (a blocked cross-validation that
was not run, districts that were not given), so that the file holds what was measured
and nothing else. :meth:`RunMetrics.from_dict` reads a file back, earlier runs' too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from .. import storage

T = TypeVar("T", bound="_Record")


class _Record:
    """A dataclass written as a JSON object: its fields in order, without the optional
    ones that are ``None``; nested records (and lists and mappings of them) likewise."""

    #: fields left out of the file when ``None``
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    #: fields holding records, by field name: the record type (a list or mapping of them
    #: is read element by element)
    NESTED: ClassVar[dict[str, type]] = {}

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not (f.name in self.OPTIONAL and getattr(self, f.name) is None)}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Read back what :meth:`as_dict` wrote; keys it does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = dict.fromkeys(cls.OPTIONAL)  # left out of the file: None
        for name, value in data.items():
            if name not in known:
                continue
            kind = cls.NESTED.get(name)
            if kind is not None and isinstance(value, dict) and name in _MAPPINGS:
                value = {key: kind.from_dict(item) for key, item in value.items()}
            elif kind is not None and isinstance(value, list):
                value = [kind.from_dict(item) for item in value]
            elif kind is not None and isinstance(value, dict):
                value = kind.from_dict(value)
            values[name] = value
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.as_dict()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


#: nested fields that map names to records (the others hold one record, or a list)
_MAPPINGS = frozenset({"model_comparison", "test_auc_by_sample_type"})


@dataclass(frozen=True)
class GridPoint(_Record):
    """One setting searched and its cross-validated ROC AUC (mean and sd over folds)."""

    params: dict[str, Any]
    cv_auc: float
    cv_auc_sd: float


@dataclass(frozen=True)
class EstimatorComparison(_Record):
    """One estimator of ``model.estimators``, tuned on the same folds as every other."""

    cv_auc: float
    cv_auc_sd: float
    cv_auc_by_fold: list[float]
    best_params: dict[str, Any]
    grid: list[GridPoint]
    #: numeric parameters whose best value is the grid's smallest or largest
    params_at_grid_edge: list[str]
    linear: bool
    test_auc_uncalibrated: float
    test_auc: float
    fit_seconds: float
    #: its CV AUC on spatially blocked folds, or None where not computed
    blocked_cv_auc: float | None = None

    OPTIONAL = frozenset({"blocked_cv_auc"})
    NESTED = {"grid": GridPoint}


@dataclass(frozen=True)
class Bootstrap(_Record):
    """What the interval of the test AUC resampled."""

    unit: str
    n_groups: int
    resamples: int
    resamples_with_both_classes: int
    seed: int


@dataclass(frozen=True)
class ReliabilityBin(_Record):
    """A bin of predicted probability on the test labels; empty bins have no mean or rate."""

    bin_low: float
    bin_high: float
    n: int
    mean_predicted: float | None
    observed_frequency: float | None


@dataclass(frozen=True)
class SubsetAUC(_Record):
    """The test ROC AUC within one ``sample_type``; None where it holds one class only."""

    n: int
    n_asm: int
    auc_calibrated: float | None
    auc_uncalibrated: float | None


@dataclass(frozen=True, kw_only=True)
class MapCounts(_Record):
    """What a probability map holds: cells, hotspots, districts; the first keys of a run's
    and a prediction's ``metrics.json``."""

    n_cells: int
    n_cells_dropped_nonfinite: int
    #: with several feature sources, cells of the first missing from another, or None
    n_cells_not_in_every_source: int | None = None
    mean_probability: float
    hotspot_threshold: float
    n_hotspots: int
    n_hotspots_without_asm_label: int
    #: with report.boundaries, or None
    n_districts: int | None = None
    n_cells_outside_districts: int | None = None

    OPTIONAL = frozenset({"n_cells_not_in_every_source", "n_districts", "n_cells_outside_districts"})


@dataclass(frozen=True, kw_only=True)
class RunMetrics(MapCounts):
    """``metrics.json`` of a run: the map (the fields of :class:`MapCounts`, first), the labels, the
    features, the fit, the held-out test.

    AUCs are ROC AUCs; "cell" and "blocked" cross-validation keep rows of one cell, or of
    one square block of ``block_size_deg``, in one fold.
    """

    n_labels_read: int
    n_labels_removed_by_filter: dict[str, int]
    n_labels_kept: int
    n_labels_joined: int
    n_labels_unmatched: int
    n_labels_on_shared_edges: int
    n_features: int
    cell_size: float
    features_read: str
    n_feature_partitions: int
    n_feature_partitions_joined: int
    n_train: int
    n_test: int
    n_train_groups: int
    n_test_groups: int
    split_group_by: str
    block_size_deg: float
    best_alpha: float
    alpha_grid: str
    alphas_searched: list[float]
    n_grid_extensions: int
    alpha_at_grid_edge: bool
    solver: str
    #: whether the features were standardized: model.standardize, or what ``auto`` chose
    standardize: bool
    #: model.standardize as set: true, false or ``auto``
    standardize_setting: bool | str
    #: the best mean CV AUC of raw and of standardized features (``auto``), or of the one searched
    cv_auc_by_scaling: dict[str, float]
    calibration: str
    selected_estimator: str
    selected_by: str
    model_comparison: dict[str, EstimatorComparison]
    feature_importance_of: str
    alpha_selected_by: str
    #: blocks the blocked CV used (smaller than block_size_deg if those were too few), or None
    blocked_cv_block_size_deg: float | None
    cell_cv_auc: float | None
    cell_cv_auc_by_fold: list[float] | None
    cv_auc_cell_by_alpha: dict[str, float] | None
    cv_auc_sd_cell_by_alpha: dict[str, float] | None
    #: why there is no cell CV, or None
    cell_cv_auc_unavailable: str | None
    blocked_cv_auc: float | None
    blocked_cv_auc_by_fold: list[float] | None
    cv_auc_blocked_by_alpha: dict[str, float] | None
    cv_auc_sd_blocked_by_alpha: dict[str, float] | None
    #: why there is no blocked CV, or None
    blocked_cv_auc_unavailable: str | None
    #: mean CV AUC by alpha on the folds that chose it
    cv_auc: dict[str, float]
    cv_auc_by_fold: dict[str, list[float]]
    #: the pooled out-of-fold scores' AUC: what the calibration is fitted on
    oof_auc_calibration_set: float
    test_auc_uncalibrated: float
    test_auc_calibrated: float
    test_auc_ci95: list[float]
    test_auc_uncalibrated_ci95: list[float]
    test_auc_change_from_calibration: float
    n_test_asm: int
    n_test_not_asm: int
    bootstrap: Bootstrap
    brier_test: float
    reliability_test: list[ReliabilityBin]
    #: with a sample_type column, or None
    test_auc_by_sample_type: dict[str, SubsetAUC] | None
    #: the ASM area and share from the probability sample, by each estimator, and the
    #: map's accuracy (:class:`asm_dask.estimation.area.AreaEstimates`); None without a sample
    estimates: dict[str, Any] | None = None
    #: a run of a table per year: each year's labels, map and estimates, by year; or None
    years: dict[str, Any] | None = None
    #: a run of a table per year: each change between years (``change.json``); or None
    changes: list[dict[str, Any]] | None = None
    #: what a reader of the numbers must know first
    warnings: list[str]

    OPTIONAL = MapCounts.OPTIONAL | frozenset({
        "blocked_cv_block_size_deg", "cell_cv_auc", "cell_cv_auc_by_fold", "cv_auc_cell_by_alpha",
        "cv_auc_sd_cell_by_alpha", "cell_cv_auc_unavailable", "blocked_cv_auc", "blocked_cv_auc_by_fold",
        "cv_auc_blocked_by_alpha", "cv_auc_sd_blocked_by_alpha", "blocked_cv_auc_unavailable",
        "test_auc_by_sample_type", "estimates", "years", "changes"})
    NESTED = {"model_comparison": EstimatorComparison, "bootstrap": Bootstrap,
              "reliability_test": ReliabilityBin, "test_auc_by_sample_type": SubsetAUC}


@dataclass(frozen=True, kw_only=True)
class PredictionMetrics(MapCounts):
    """``metrics.json`` of a prediction: the map and the features read (no labels, so no AUC)."""

    n_features: int
    cell_size: float
    features_read: str
    warnings: list[str] = field(default_factory=list)


def write_metrics(path: str, metrics: _Record) -> None:
    """``metrics.json``, whole, as every reader expects it: a number that is not one (an
    accuracy of no ASM cell) is ``null``, since JSON has no NaN."""
    storage.write_text(path, json.dumps(_null_if_not_finite(metrics.as_dict()), indent=1, default=_json_value,
                                        allow_nan=False))


def _null_if_not_finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _null_if_not_finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_null_if_not_finite(item) for item in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def _json_value(value: Any) -> Any:
    """NumPy scalars and arrays as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")
