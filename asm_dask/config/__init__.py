"""Job files: YAML in, a validated :class:`Job` out.

Every setting has the notebook's value as its default, so a job file needs only the
labels, the features and the output folder. Relative paths resolve against the job
file's folder, so a job file can travel with its data.

The schema is a set of frozen pydantic dataclasses, checked by pydantic's own types and
constraints (strict: ``five`` is not a number, nor is ``true``); pydantic walks the whole
file, rejects unknown and missing keys and collects every problem with its key path.
Each setting says once, in an :class:`Expect`, what it takes, and :func:`~asm_dask.config.problems.one_line`
words every problem from it: ``job.yaml: model.cv_folds: expected an integer >= 2, got
'five'``. Dataclasses rather than ``BaseModel``, because the stages and their tests build
sections positionally and use :func:`dataclasses.asdict` and ``replace``.

:func:`asm_dask.records.outputs.check_run_paths` then looks at the files and the output
folder, before a cluster starts; :func:`asm_dask.load_job` also checks the values of
estimator grids against scikit-learn's own constraints.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from ..errors import InputError
from .features import FeaturesConfig, _sources
from .features import JoinedFeatures as JoinedFeatures
from .features import YearFeatures as YearFeatures
from .problems import Expect, one_line
from .reading import plain, read_yaml, validated
from .values import (
    KNOWN_KEYS_ONLY,
    InputPath,
    Number,
    Text,
    Whole,
    expected_at,
    folder_path,
    or_defaults,
    path_shorthand,
)

CALIBRATION_METHODS = ("isotonic", "sigmoid")
STORE_CHOICES = ("auto", "always", "never")
#: every estimator a job may name, in the order the comparison lists them (see
#: :mod:`asm_dask.model.estimators`)
ESTIMATOR_NAMES = ("ridge", "logistic_regression", "linear_svm", "random_forest", "hist_gradient_boosting")
#: ``model.estimators`` unless a job file names others: the notebook's ridge alone
DEFAULT_ESTIMATORS = {"ridge": None}


def _distinct(values: tuple[float, ...]) -> tuple[float, ...]:
    if len(set(values)) < len(values):
        raise ValueError("a value is repeated")
    return values


def _one_or_more(value: Any) -> Any:
    """One value written without brackets (a mine type, a sample type) is a list of one,
    not a string of letters; ``null`` is none."""
    return () if value is None else (value,) if isinstance(value, str) else value



def _estimators(value: Any) -> dict[str, dict[str, tuple[Any, ...]] | None]:
    """Estimator names (their built-in grids), or a mapping name -> grid (parameter ->
    list of values; null for the built-in grid). Ridge must be among them: it is the
    baseline, and its penalty curve is drawn; its grid is ``model.alphas``. What values
    each estimator accepts is scikit-learn's to say: :func:`asm_dask.load_job` asks it."""
    names = f"names from {', '.join(ESTIMATOR_NAMES)}"
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(name, str) for name in value):
            raise expected_at((), value, f"a non-empty list of {names}, or a mapping of them to grids")
        if len(set(value)) < len(value):
            raise expected_at((), value, f"a list of {names} (a name is repeated)")
        value = {name: None for name in value}
    if not isinstance(value, dict) or not value:
        raise expected_at((), value, f"a non-empty list of {names}, or a mapping of them to grids")
    estimators: dict[str, dict[str, tuple[Any, ...]] | None] = {}
    for name, grid in value.items():
        if name not in ESTIMATOR_NAMES:
            raise expected_at((str(name),), name, f"one of {', '.join(ESTIMATOR_NAMES)}")
        if name == "ridge" or grid is None or grid == {}:
            if name == "ridge" and grid not in (None, {}):
                raise expected_at((name,), grid, "null: ridge's penalties are model.alphas")
            estimators[name] = None
            continue
        if not isinstance(grid, dict):
            raise expected_at((name,), grid, "a grid (a mapping of parameter to a list of values), or null "
                                              "for the built-in grid")
        for param, values in grid.items():
            if not isinstance(values, (list, tuple)) or not values or len(set(map(repr, values))) < len(values) \
                    or not all(v is None or isinstance(v, (str, bool, int, float)) for v in values):
                raise expected_at((name, str(param)), values, "a non-empty list of distinct numbers, text, "
                                                                "booleans or nulls")
        estimators[name] = {param: tuple(values) for param, values in grid.items()}
    if "ridge" not in estimators:
        raise expected_at((), value, "ridge among the estimators (the baseline the others are compared with)")
    return estimators



@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class LabelFilters:
    """The notebook's label filters, applied in this order; ``None`` switches one off."""

    #: keep rows with ``proportion_inspected >= this`` or ``label == 1``
    min_proportion_inspected: Annotated[Number | None, Field(ge=0, le=1),
                                        Expect("a proportion from 0 to 1, or null")] = 0.2
    #: drop rows whose ``mine_type`` is one of these
    exclude_mine_types: Annotated[tuple[StrictStr, ...], BeforeValidator(_one_or_more),
                                  Expect("a mine type or a list of them, as text, or null")] = ("commercial",)
    #: keep rows with ``confidence >= this``
    min_confidence: Annotated[Number | None, Expect("a number, or null")] = 3


def _all_off_when_null(value: Any) -> Any:
    """``filters: null`` (or ``[]``) switches them all off, as ``null`` does each one: not
    the defaults, which other sections left empty take."""
    return {"min_proportion_inspected": None, "exclude_mine_types": (), "min_confidence": None} \
        if value is None or value == [] else value


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class LabelsConfig:
    """The labelled points: a CSV with ``lon``, ``lat`` and ``label`` (1 mine, 0 not), and
    the notebook's filters on them."""

    path: InputPath
    #: ``null`` or ``[]`` switches every filter off, as it does one of them
    filters: Annotated[LabelFilters, BeforeValidator(_all_off_when_null)] = field(default_factory=LabelFilters)
    #: in a job of a table per year (``features.years``): the year of the labels that carry
    #: none (a ``year`` or ``date`` column, empty in their row, or no such column)
    year: Annotated[StrictInt | None, Field(ge=1800, le=2200), Expect("a year from 1800 to 2200, or null")] = None


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class SplitConfig:
    """The held-out test set: its share of the labelled cells, its seed, and what must not
    straddle train and test."""

    test_size: Annotated[Number, Field(gt=0, lt=1), Expect("a number between 0 and 1, exclusive")] = 0.2
    #: numpy's seeds are 32-bit
    seed: Annotated[Whole, Field(ge=0, lt=2**32), Expect("an integer from 0 to 4294967295")] = 1991
    #: what must not straddle train and test: ``cell`` (rows sharing a cell) or
    #: ``block`` (square blocks of ``block_size`` degrees: spatially blocked validation)
    group_by: Annotated[Literal["cell", "block"], Expect("'cell' or 'block'")] = "cell"
    block_size: Annotated[Number, Field(gt=0), Expect("a number > 0")] = 0.5


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class ModelConfig:
    """The model search: ridge penalties, folds, scaling, the calibration method and the
    estimators compared on the same folds."""

    #: ``auto`` (a wide logarithmic grid, extended until the best alpha is interior) or a
    #: list of penalties searched exactly as given (the notebook's: [0.01, 0.1, 1, 10])
    alphas: Annotated[Literal["auto"] | Annotated[tuple[Annotated[Number, Field(gt=0)], ...], Field(min_length=1),
                                                  AfterValidator(_distinct)],
                      AfterValidator(lambda a: a if a == "auto" else tuple(float(x) for x in a)),
                      Expect("'auto' or a non-empty list of distinct positive numbers")] = "auto"
    cv_folds: Annotated[Whole, Field(ge=2), Expect("an integer >= 2")] = 5
    #: divide features by their SD over the training rows: true, false, ``auto`` (the higher CV AUC)
    standardize: Annotated[StrictBool | Literal["auto"], Expect("true, false or 'auto'")] = "auto"
    #: ``isotonic`` (the notebook's) or ``sigmoid`` (Platt scaling)
    calibration: Annotated[Literal["isotonic", "sigmoid"], Expect("'isotonic' or 'sigmoid'")] = "isotonic"
    #: estimators compared on the same folds: names (built-in grids), or a mapping of
    #: name -> grid (parameter -> list of values, null for the built-in grid); ridge
    #: must be among them (see :mod:`asm_dask.model.estimators`)
    estimators: Annotated[dict[str, dict[str, tuple[Any, ...]] | None], PlainValidator(_estimators)] = \
        field(default_factory=lambda: dict(DEFAULT_ESTIMATORS))
    #: the estimator that predicts every cell; ``None``: the highest mean CV AUC
    select: str | None = None

    @field_validator("select", mode="plain")
    @classmethod
    def _one_of_the_estimators(cls, value: Any, info: ValidationInfo) -> str | None:
        estimators = info.data.get("estimators")
        if value is None or estimators is None:  # none named, or model.estimators is wrong and said so
            return value
        if not isinstance(value, str) or value not in estimators:
            raise expected_at((), value, f"null or one of model.estimators ({', '.join(estimators)})")
        return value


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class BoundariesConfig:
    """Districts (or chiefdoms, provinces...) to total the map over."""

    #: GeoJSON, GeoPackage or Shapefile of polygons, in any CRS
    path: InputPath
    #: the column holding each polygon's name
    name_column: Annotated[Text, Expect("text")]


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class ReportConfig:
    """What the report adds to the map: hotspots above a threshold, district totals."""

    #: cells at or above this calibrated probability form hotspots (see the README)
    hotspot_threshold: Annotated[Number, Field(gt=0, le=1), Expect("a probability in (0, 1]")] = 0.5
    #: district boundaries for ``admin_summary.csv``; ``None``: no district totals
    boundaries: BoundariesConfig | None = None
    #: cells to label next (``next_labels.*``): the most unsure and the unlabelled
    #: hotspots, spread out; 0: none
    next_labels: Annotated[Whole, Field(ge=0), Expect("an integer >= 0")] = 100


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class EstimateConfig:
    """The probability sample among the labels, from which the ASM area is estimated
    with an interval (see :mod:`asm_dask.estimation.area`)."""

    #: the ``sample_type`` values of labels drawn at random (with the probabilities of
    #: ``asm-dask sample`` where they carry them); none in the labels: no estimate
    sample_types: Annotated[tuple[Text, ...], BeforeValidator(_one_or_more),
                            Expect("a sample type or a list of them, as text")] = ("random",)


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class Job:
    """A validated job: what to read, how to fit, where to write.

    Build one with :func:`asm_dask.load_job` (a YAML file) or in code
    (``Job(labels=LabelsConfig("labels.csv"), ...)``); :meth:`replace` changes settings
    with the same checks as a file. Each section's defaults are the notebook's.
    """

    labels: Annotated[LabelsConfig, BeforeValidator(path_shorthand)]
    features: Annotated[FeaturesConfig, BeforeValidator(_sources)]
    output: Annotated[Text, AfterValidator(folder_path),
                      Expect("a path or URL of a folder")]
    split: Annotated[SplitConfig, BeforeValidator(or_defaults)] = field(default_factory=SplitConfig)
    model: Annotated[ModelConfig, BeforeValidator(or_defaults)] = field(default_factory=ModelConfig)
    report: Annotated[ReportConfig, BeforeValidator(or_defaults)] = field(default_factory=ReportConfig)
    estimate: Annotated[EstimateConfig, BeforeValidator(or_defaults)] = field(default_factory=EstimateConfig)
    #: fsspec options by protocol, for every URL of the job (inputs, output, store):
    #: ``{s3: {endpoint_url: ..., key: ..., secret: ...}}``. Without them each backend
    #: looks where it always does (for S3 the AWS_* environment variables and ~/.aws).
    #: Never part of the run key, and only their names reach the manifest.
    storage_options: Annotated[dict[StrictStr, dict[StrictStr, Any]], BeforeValidator(or_defaults),
                               Expect("a mapping of protocol to options, e.g. "
                                      "{s3: {endpoint_url: 'http://host:9000'}}")] = field(default_factory=dict)

    @model_validator(mode="after")
    def _year_of_labels(self) -> Job:
        year, years = self.labels.year, self.features.years
        if year is not None and not years:
            raise expected_at(("labels", "year"), year, "null in a job of one feature table (labels.year is the year "
                                                        "of the labels without one in a job of features.years)")
        if year is not None and year not in years:
            raise expected_at(("labels", "year"), year, f"one of features.years ({', '.join(map(str, years))})")
        return self

    def replace(self, **changes: Any) -> Job:
        """A copy with ``changes``, checked as the job file's settings are."""
        changes = plain(changes)
        try:
            return dataclasses.replace(self, **changes)
        except ValidationError as error:
            raise InputError(one_line(error, Job, changes)) from None

    @property
    def years(self) -> tuple[int, ...]:
        """The years mapped, in order; none in a job of one feature table."""
        return tuple(self.features.years)

    def of_year(self, year: int) -> Job:
        """The job of ``year`` alone: its feature table, the same labels, model and output."""
        return dataclasses.replace(self, labels=dataclasses.replace(self.labels, year=None),
                                   features=self.features.of_year(year))

    def as_dict(self) -> dict[str, Any]:
        """The job as plain data, every setting included (the run key is its fingerprint)."""
        return dataclasses.asdict(self)


def load_job(path: str | os.PathLike) -> Job:
    """Read and validate a job file; relative paths resolve against its folder.

    Only the file's content is checked here;
    :func:`asm_dask.records.outputs.check_run_paths` looks at the files it names.
    """
    path = Path(path)
    return job_from_dict(read_yaml(path, "job file"), base=path.parent, source=str(path))


def job_from_dict(raw: Any, base: str | os.PathLike = ".", source: str = "job") -> Job:
    """Build a :class:`Job` from plain data, as read from YAML; every problem in it is
    reported on one line of :class:`InputError`, each with its key path."""
    try:
        return validated(Job, raw, base, source, "labels, features and output")
    except InputError as error:
        if isinstance(raw, dict) and isinstance(raw.get("features"), (list, tuple)):
            raise InputError(_as_listed(str(error))) from None
        raise


def _as_listed(message: str) -> str:
    """A problem of ``features`` written as a list, named as the list's items: the first
    table's ``features.cell_size`` is ``features[0].cell_size``, ``features.join.0.name``
    is ``features[1].name``."""
    message = re.sub(r"\bfeatures\.join\.(\d+)", lambda m: f"features[{int(m.group(1)) + 1}]", message)
    message = re.sub(r"\bfeatures\.join\b", "features", message)
    return re.sub(r"\bfeatures\.(?!join\b)(\w+)", r"features[0].\1", message)
