"""Job files: YAML in, a validated :class:`Job` out.

Every setting has the notebook's value as its default, so a job file needs only the
labels, the features and the output folder. Relative paths resolve against the job
file's folder, so a job file can travel with its data.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

CALIBRATION_METHODS = ("isotonic", "sigmoid")
STORE_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True)
class LabelFilters:
    """The notebook's label filters, applied in this order; ``None`` switches one off."""

    #: keep rows with ``proportion_inspected >= this`` or ``label == 1``
    min_proportion_inspected: float | None = 0.2
    #: drop rows whose ``mine_type`` is one of these
    exclude_mine_types: tuple[str, ...] = ("commercial",)
    #: keep rows with ``confidence >= this``
    min_confidence: float | None = 3


@dataclass(frozen=True)
class LabelsConfig:
    path: str
    filters: LabelFilters = field(default_factory=LabelFilters)


@dataclass(frozen=True)
class FeaturesConfig:
    path: str
    #: side of a grid cell in degrees; each cell is the square of this size on its centroid
    cell_size: float = 0.01
    #: prefix of the feature columns (``feature_``, ``X_``...); ``None`` detects it
    prefix: str | None = None
    #: read the input in place or through the feature store: ``auto`` (in place for
    #: Feather and Parquet, unless a store of them exists; a store for CSV), ``always``, ``never``
    store: str = "auto"
    #: folder of the feature store; ``None`` puts it beside the features file
    store_path: str | None = None
    #: rows per store partition; ``None`` sizes partitions to about 128 MB
    rows_per_partition: int | None = None


@dataclass(frozen=True)
class SplitConfig:
    test_size: float = 0.2
    seed: int = 1991
    #: what must not straddle train and test: ``cell`` (rows sharing a cell) or
    #: ``block`` (square blocks of ``block_size`` degrees: spatially blocked validation)
    group_by: str = "cell"
    block_size: float = 0.5


@dataclass(frozen=True)
class ModelConfig:
    #: ``auto`` (a wide logarithmic grid, extended until the best alpha is interior) or a
    #: list of penalties searched exactly as given (the notebook's: [0.01, 0.1, 1, 10])
    alphas: str | tuple[float, ...] = "auto"
    cv_folds: int = 5
    #: divide each feature by its standard deviation over the training rows
    standardize: bool = False
    #: ``isotonic`` (the notebook's) or ``sigmoid`` (Platt scaling)
    calibration: str = "isotonic"


@dataclass(frozen=True)
class BoundariesConfig:
    """Districts (or chiefdoms, provinces...) to total the map over."""

    #: GeoJSON, GeoPackage or Shapefile of polygons, in any CRS
    path: str
    #: the column holding each polygon's name
    name_column: str


@dataclass(frozen=True)
class ReportConfig:
    #: cells at or above this calibrated probability form hotspots (see the README)
    hotspot_threshold: float = 0.5
    #: district boundaries for ``admin_summary.csv``; ``None``: no district totals
    boundaries: BoundariesConfig | None = None


@dataclass(frozen=True)
class Job:
    labels: LabelsConfig
    features: FeaturesConfig
    output: str
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def replace(self, **changes: Any) -> "Job":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_job(path: str | os.PathLike) -> Job:
    """Read and validate a job file; relative paths resolve against its folder."""
    path = Path(path)
    return job_from_dict(read_yaml(path, "job file"), base=path.parent, source=str(path))


def read_yaml(path: Path, what: str, missing: type[Exception] = InputError,
              invalid: type[Exception] = InputError) -> Any:
    """A YAML file's content; ``missing`` or ``invalid`` raised with a one-line message."""
    if not path.is_file():
        raise missing(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise invalid(f"{path}: not valid YAML ({_first_line(exc)})") from None


def job_from_dict(raw: Any, base: str | os.PathLike = ".", source: str = "job") -> Job:
    """Build a :class:`Job` from plain data, as read from YAML."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping with labels, features and output")
    base = Path(base)
    for required in ("labels", "features", "output"):
        if required not in raw:
            raise InputError(f"{source}: missing required key '{required}'")
    raw = dict(raw)
    labels = _section(raw.pop("labels"), LabelsConfig, f"{source}: labels")
    filters = _section(labels.pop("filters", {}) or {}, LabelFilters, f"{source}: labels.filters")
    if "exclude_mine_types" in filters:
        excluded = filters["exclude_mine_types"] or ()
        # One type written without brackets is a list of one, not a string of letters.
        filters["exclude_mine_types"] = (excluded,) if isinstance(excluded, str) else tuple(excluded)
    features = _section(raw.pop("features"), FeaturesConfig, f"{source}: features")
    split = _section(raw.pop("split", {}) or {}, SplitConfig, f"{source}: split")
    model = _section(raw.pop("model", {}) or {}, ModelConfig, f"{source}: model")
    if "alphas" in model:
        model["alphas"] = _alphas(model["alphas"], f"{source}: model.alphas")
    report = _section(raw.pop("report", {}) or {}, ReportConfig, f"{source}: report")
    if report.get("boundaries") is not None:
        boundaries = _section(report["boundaries"], BoundariesConfig, f"{source}: report.boundaries")
        for key in ("path", "name_column"):
            if not isinstance(boundaries.get(key), str) or not boundaries[key]:
                raise InputError(f"{source}: report.boundaries.{key}: expected text, got {boundaries.get(key)!r}")
        boundaries["path"] = resolve_path(boundaries["path"], base)
        report["boundaries"] = BoundariesConfig(**boundaries)
    output = raw.pop("output")
    for where, value in (("labels.path", labels["path"]), ("features.path", features["path"]),
                         ("output", output), ("features.store_path", features.get("store_path") or "")):
        if not isinstance(value, str) or (not value and where != "features.store_path"):
            raise InputError(f"{source}: {where}: expected a path or URL, got {value!r}")
    if raw:
        raise InputError(f"{source}: unknown key(s) {sorted(raw)}; "
                         "expected labels, features, output, split, model, report")
    labels["path"] = resolve_path(labels["path"], base)
    features["path"] = resolve_path(features["path"], base)
    if features.get("store_path"):
        features["store_path"] = resolve_path(features["store_path"], base)
    job = Job(
        labels=LabelsConfig(filters=LabelFilters(**filters), **labels),
        features=FeaturesConfig(**features),
        output=resolve_path(output, base),
        split=SplitConfig(**split),
        model=ModelConfig(**model),
        report=ReportConfig(**report),
    )
    _check_values(job, source)
    return job


def resolve_path(value: Any, base: Path) -> str:
    """Resolve a local path against ``base``; URLs (``s3://...``) pass through unchanged."""
    text = str(value)
    if "://" in text:
        return text
    return str((base / os.path.expanduser(text)).resolve())


def _section(raw: Any, cls: type, where: str) -> dict[str, Any]:
    if isinstance(raw, str) and cls in (LabelsConfig, FeaturesConfig):
        raw = {"path": raw}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping, got {raw!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    if "path" in known and "path" not in raw:
        raise InputError(f"{where}: missing required key 'path'")
    return dict(raw)


def _check_values(job: Job, source: str) -> None:
    checks = [
        (job.features.cell_size > 0, "features.cell_size must be positive"),
        (job.features.store in STORE_CHOICES,
         f"features.store must be one of {', '.join(STORE_CHOICES)}, got {job.features.store!r} "
         "(the store's folder is features.store_path)"),
        (0 < job.split.test_size < 1, "split.test_size must be between 0 and 1"),
        (job.split.group_by in ("cell", "block"), "split.group_by must be 'cell' or 'block'"),
        (job.split.block_size > 0, "split.block_size must be positive"),
        (job.model.cv_folds >= 2, "model.cv_folds must be at least 2"),
        (job.model.calibration in CALIBRATION_METHODS,
         f"model.calibration must be one of {', '.join(CALIBRATION_METHODS)}"),
        (isinstance(job.model.standardize, bool), "model.standardize must be true or false"),
        (isinstance(job.report.hotspot_threshold, (int, float)) and not isinstance(job.report.hotspot_threshold, bool)
         and 0 < job.report.hotspot_threshold <= 1, "report.hotspot_threshold must be a probability in (0, 1]"),
        (job.features.rows_per_partition is None or job.features.rows_per_partition > 0,
         "features.rows_per_partition must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(f"{source}: {message}")


def _alphas(value: Any, where: str) -> str | tuple[float, ...]:
    """``auto``, or a non-empty list of distinct positive numbers as floats.

    YAML reads ``1e12`` (no decimal point, no sign in the exponent) as text; such text is
    taken as the number it spells.
    """
    if value == "auto":
        return "auto"
    expected = "expected 'auto' or a non-empty list of distinct positive numbers"
    if not isinstance(value, (list, tuple)) or not value:
        raise InputError(f"{where}: {expected}, got {value!r}")
    alphas = []
    for item in value:
        number = _number(item)
        if number is None or not math.isfinite(number) or number <= 0:
            raise InputError(f"{where}: {expected}, got {item!r} in {value!r}")
        alphas.append(number)
    if len(set(alphas)) < len(alphas):
        raise InputError(f"{where}: {expected}; a value is repeated in {value!r}")
    return tuple(alphas)


def _number(item: Any) -> float | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, (int, float)):
        return float(item)
    try:
        return float(item) if isinstance(item, str) else None
    except ValueError:
        return None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
