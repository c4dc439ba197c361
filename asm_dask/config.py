"""Job files: YAML in, a validated :class:`Job` out.

Every setting has the notebook's value as its default, so a job file needs only the
labels, the features and the output folder. Relative paths resolve against the job
file's folder, so a job file can travel with its data.

The schema is a set of frozen pydantic dataclasses: pydantic walks the whole file,
rejects unknown and missing keys and collects every problem with its key path, and each
setting's own validator says what it expects, strictly (``five`` is not a number, nor is
``true``). Dataclasses rather than ``BaseModel``, because the stages and their tests
build sections positionally and use :func:`dataclasses.asdict` and ``replace``.
:func:`asm_dask.records.outputs.check_run_paths` then looks at the files and the output
folder, before a cluster starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Callable

import yaml
from pydantic import BeforeValidator, ConfigDict, PlainValidator, TypeAdapter, ValidationError, ValidationInfo
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from .errors import InputError

CALIBRATION_METHODS = ("isotonic", "sigmoid")
STORE_CHOICES = ("auto", "always", "never")
#: ``model.estimators`` unless a job file names others: the notebook's ridge alone
DEFAULT_ESTIMATORS = {"ridge": None}

#: a number in exponent notation: YAML 1.1 reads ``1e12`` and ``1.0e12`` (no decimal
#: point, or no sign in the exponent) as text, YAML 1.2 and every reader as a number
EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _expected(what: str) -> PydanticCustomError:
    """The one error type the validators raise; :func:`_problem` adds the key and value."""
    return PydanticCustomError("expected", "expected " + what)


def _as_number(value: Any) -> int | float | None:
    """``value`` as a finite number, int or float as written; ``None`` if it is none.

    Booleans are not numbers. Exponent text is the number it spells (see :data:`EXPONENT`).
    """
    if isinstance(value, str) and EXPONENT.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:  # an integer beyond any float
        return None


def _number(expected: str, ok: Callable[[float], bool] = lambda x: True, *, integer: bool = False,
            optional: bool = False) -> PlainValidator:
    """A number setting that ``ok`` accepts; kept as written, so that the run key of a job
    file does not change (``1`` stays ``1``, not ``1.0``).

    ``integer`` takes a whole number written as a float (``5.0``) as that integer, and
    refuses ``5.5``; ``optional`` lets ``null`` switch the setting off.
    """
    expected += ", or null" if optional else ""

    def validate(value: Any) -> int | float | None:
        if value is None and optional:
            return None
        number = _as_number(value)
        if integer and isinstance(number, float):
            number = int(number) if number.is_integer() else None
        if number is None or not ok(number):
            raise _expected(expected)
        return number
    return PlainValidator(validate)


def _choice(options: tuple[str, ...], hint: str = "") -> PlainValidator:
    """One of ``options``, as text."""
    quoted = [repr(option) for option in options]
    expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}{hint}"

    def validate(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise _expected(expected)
        return value
    return PlainValidator(validate)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _expected("true or false")
    return value


def _text(optional: bool = False) -> PlainValidator:
    """Non-empty text (a column name, a prefix)."""
    def validate(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise _expected("text" + (", or null" if optional else ""))
        return value
    return PlainValidator(validate)


def _input_path(value: Any, info: ValidationInfo) -> str:
    """A file to read: a local path, resolved against the job file's folder, or a URL."""
    if not isinstance(value, str) or not value:
        raise _expected("a path or URL")
    if "::" in value and "://" not in value:
        # fsspec (which fingerprints and reads inputs) splits 'a::b' into a chain of URLs,
        # as in 'simplecache::s3://...', so such a local file would not be found.
        raise _expected("a local path without '::' (fsspec reads 'a::b' as a chain of URLs; rename the "
                        "file or its folder)")
    return _resolved(value, info)


def _folder_path(optional: bool = False) -> PlainValidator:
    """A folder to write: a local path, resolved against the job file's folder, or an
    fsspec URL (``s3://bucket/run``)."""
    def validate(value: Any, info: ValidationInfo) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or (not value and not optional):
            raise _expected("a path or URL of a folder" + (", or null" if optional else ""))
        if "::" in value:
            raise _expected("a folder path or URL without '::' (fsspec reads 'a::b' as a chain of URLs)")
        # An empty store_path has always meant "beside the features file", like null.
        return _resolved(value, info) if value else value
    return PlainValidator(validate)


def _storage_options(value: Any) -> dict[str, dict[str, Any]]:
    """``protocol -> options`` for fsspec, e.g. ``{s3: {endpoint_url: http://...}}``."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(protocol, str) and isinstance(options, dict) and all(isinstance(k, str) for k in options)
            for protocol, options in value.items()):
        raise _expected("a mapping of protocol to options, e.g. {s3: {endpoint_url: 'http://host:9000'}}")
    return {protocol: dict(options) for protocol, options in value.items()}


def _resolved(value: str, info: ValidationInfo) -> str:
    """Resolved against the job file's folder when a job file is read; as given when a
    section is built in code."""
    return resolve_path(value, info.context["base"]) if info.context else value


def _alphas(value: Any) -> str | tuple[float, ...]:
    """``auto``, or a non-empty list of distinct positive numbers, as floats."""
    if value == "auto":
        return "auto"
    expected = "'auto' or a non-empty list of distinct positive numbers"
    numbers = [_as_number(item) for item in value] if isinstance(value, (list, tuple)) else []
    if not numbers or any(number is None or number <= 0 for number in numbers):
        raise _expected(expected)
    alphas = tuple(float(number) for number in numbers)
    if len(set(alphas)) < len(alphas):
        raise _expected(expected + " (a value is repeated)")
    return alphas


def _expected_at(path: tuple[str, ...], value: Any, what: str) -> PydanticCustomError:
    """An error inside a setting, at ``path`` below its key (``model.estimators.random_forest``)."""
    return PydanticCustomError("expected_at", "expected " + what, {"path": list(path), "value": value})


def _estimators(value: Any) -> dict[str, dict[str, tuple[Any, ...]] | None]:
    """Estimator names (their built-in grids), or a mapping name -> grid (parameter ->
    list of values; null for the built-in grid). Ridge must be among them: it is the
    baseline, and its penalty curve is drawn; its grid is ``model.alphas``."""
    from .model.estimators import ESTIMATOR_NAMES, check_grid

    names = f"names from {', '.join(ESTIMATOR_NAMES)}"
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(name, str) for name in value):
            raise _expected(f"a non-empty list of {names}, or a mapping of them to grids")
        if len(set(value)) < len(value):
            raise _expected(f"a list of {names} (a name is repeated)")
        value = {name: None for name in value}
    if not isinstance(value, dict) or not value:
        raise _expected(f"a non-empty list of {names}, or a mapping of them to grids")
    estimators: dict[str, dict[str, tuple[Any, ...]] | None] = {}
    for name, grid in value.items():
        if name not in ESTIMATOR_NAMES:
            raise _expected_at((str(name),), name, f"one of {', '.join(ESTIMATOR_NAMES)}")
        if name == "ridge" or grid is None or grid == {}:
            if name == "ridge" and grid not in (None, {}):
                raise _expected_at((name,), grid, "null: ridge's penalties are model.alphas")
            estimators[name] = None
            continue
        if not isinstance(grid, dict):
            raise _expected_at((name,), grid, "a grid (a mapping of parameter to a list of values), or null "
                                              "for the built-in grid")
        for param, values in grid.items():
            if not isinstance(values, (list, tuple)) or not values or len(set(map(repr, values))) < len(values) \
                    or not all(v is None or isinstance(v, (str, bool, int, float)) for v in values):
                raise _expected_at((name, str(param)), values, "a non-empty list of distinct numbers, text, "
                                                                "booleans or nulls")
        problem = check_grid(name, grid)
        if problem is not None:
            raise _expected_at((name, problem[0]), grid[problem[0]], problem[1])
        estimators[name] = {param: tuple(values) for param, values in grid.items()}
    if "ridge" not in estimators:
        raise _expected("ridge among the estimators (the baseline the others are compared with)")
    return estimators


def _select(value: Any, info: ValidationInfo) -> str | None:
    """``null`` (the highest mean CV AUC wins) or one of ``model.estimators``."""
    if value is None:
        return None
    estimators = info.data.get("estimators")
    if estimators is None:  # model.estimators is wrong, and said so
        return value
    if not isinstance(value, str) or value not in estimators:
        raise _expected(f"null or one of model.estimators ({', '.join(estimators)})")
    return value


def _mine_types(value: Any) -> tuple[str, ...]:
    """Mine types as text; one written without brackets is a list of one, not a string of
    letters; ``null`` is none."""
    items = () if value is None else (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise _expected("a mine type or a list of them, as text, or null")
    return tuple(items)


def _or_defaults(value: Any) -> Any:
    """A section written as ``null`` (or a key with nothing under it) takes its defaults."""
    return {} if value is None else value


def _path_shorthand(value: Any) -> Any:
    """``labels: path.csv`` is short for ``labels: {path: path.csv}``."""
    return {"path": value} if isinstance(value, str) else value


#: an unknown key is an error, so a typo never goes unnoticed
_KNOWN_KEYS_ONLY = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_KNOWN_KEYS_ONLY)
class LabelFilters:
    """The notebook's label filters, applied in this order; ``None`` switches one off."""

    #: keep rows with ``proportion_inspected >= this`` or ``label == 1``
    min_proportion_inspected: Annotated[float | None, _number("a proportion from 0 to 1", lambda x: 0 <= x <= 1,
                                                              optional=True)] = 0.2
    #: drop rows whose ``mine_type`` is one of these
    exclude_mine_types: Annotated[tuple[str, ...], PlainValidator(_mine_types)] = ("commercial",)
    #: keep rows with ``confidence >= this``
    min_confidence: Annotated[float | None, _number("a number", optional=True)] = 3


@dataclass(frozen=True, config=_KNOWN_KEYS_ONLY)
class LabelsConfig:
    path: Annotated[str, PlainValidator(_input_path)]
    filters: Annotated[LabelFilters, BeforeValidator(_or_defaults)] = field(default_factory=LabelFilters)


@dataclass(frozen=True, config=_KNOWN_KEYS_ONLY)
class FeaturesConfig:
    path: Annotated[str, PlainValidator(_input_path)]
    #: side of a grid cell in degrees; each cell is the square of this size on its centroid
    cell_size: Annotated[float, _number("a number > 0", lambda x: x > 0)] = 0.01
    #: prefix of the feature columns (``feature_``, ``X_``...); ``None`` detects it
    prefix: Annotated[str | None, _text(optional=True)] = None
    #: read the input in place or through the feature store: ``auto`` (in place for
    #: Feather and Parquet, unless a store of them exists; a store for CSV), ``always``, ``never``
    store: Annotated[str, _choice(STORE_CHOICES, " (the store's folder is features.store_path)")] = "auto"
    #: folder of the feature store; ``None`` puts it beside the features file
    store_path: Annotated[str | None, _folder_path(optional=True)] = None
    #: rows per store partition; ``None`` sizes partitions to about 128 MB
    rows_per_partition: Annotated[int | None, _number("an integer >= 1", lambda n: n >= 1, integer=True,
                                                      optional=True)] = None


@dataclass(frozen=True, config=_KNOWN_KEYS_ONLY)
class SplitConfig:
    test_size: Annotated[float, _number("a number between 0 and 1, exclusive", lambda x: 0 < x < 1)] = 0.2
    #: numpy's seeds are 32-bit
    seed: Annotated[int, _number("an integer from 0 to 4294967295", lambda n: 0 <= n < 2**32, integer=True)] = 1991
    #: what must not straddle train and test: ``cell`` (rows sharing a cell) or
    #: ``block`` (square blocks of ``block_size`` degrees: spatially blocked validation)
    group_by: Annotated[str, _choice(("cell", "block"))] = "cell"
    block_size: Annotated[float, _number("a number > 0", lambda x: x > 0)] = 0.5


@dataclass(frozen=True, config=_KNOWN_KEYS_ONLY)
class ModelConfig:
    #: ``auto`` (a wide logarithmic grid, extended until the best alpha is interior) or a
    #: list of penalties searched exactly as given (the notebook's: [0.01, 0.1, 1, 10])
    alphas: Annotated[str | tuple[float, ...], PlainValidator(_alphas)] = "auto"
    cv_folds: Annotated[int, _number("an integer >= 2", lambda n: n >= 2, integer=True)] = 5
    #: divide each feature by its standard deviation over the training rows
    standardize: Annotated[bool, PlainValidator(_flag)] = False
    #: ``isotonic`` (the notebook's) or ``sigmoid`` (Platt scaling)
    calibration: Annotated[str, _choice(CALIBRATION_METHODS)] = "isotonic"
    #: estimators compared on the same folds: names (built-in grids), or a mapping of
    #: name -> grid (parameter -> list of values, null for the built-in grid); ridge
    #: must be among them (see asm_dask/estimators.py)
    estimators: Annotated[dict[str, dict[str, tuple[Any, ...]] | None],
                          PlainValidator(_estimators)] = field(default_factory=lambda: dict(DEFAULT_ESTIMATORS))
    #: the estimator that predicts every cell; ``None``: the highest mean CV AUC
    select: Annotated[str | None, PlainValidator(_select)] = None


@dataclass(frozen=True, config=_KNOWN_KEYS_ONLY)
class BoundariesConfig:
    """Districts (or chiefdoms, provinces...) to total the map over."""

    #: GeoJSON, GeoPackage or Shapefile of polygons, in any CRS
    path: Annotated[str, PlainValidator(_input_path)]
    #: the column holding each polygon's name
    name_column: Annotated[str, _text()]


@dataclass(frozen=True, config=_KNOWN_KEYS_ONLY)
class ReportConfig:
    #: cells at or above this calibrated probability form hotspots (see the README)
    hotspot_threshold: Annotated[float, _number("a probability in (0, 1]", lambda x: 0 < x <= 1)] = 0.5
    #: district boundaries for ``admin_summary.csv``; ``None``: no district totals
    boundaries: BoundariesConfig | None = None


@dataclass(frozen=True, config=_KNOWN_KEYS_ONLY)
class Job:
    labels: Annotated[LabelsConfig, BeforeValidator(_path_shorthand)]
    features: Annotated[FeaturesConfig, BeforeValidator(_path_shorthand)]
    output: Annotated[str, _folder_path()]
    split: Annotated[SplitConfig, BeforeValidator(_or_defaults)] = field(default_factory=SplitConfig)
    model: Annotated[ModelConfig, BeforeValidator(_or_defaults)] = field(default_factory=ModelConfig)
    report: Annotated[ReportConfig, BeforeValidator(_or_defaults)] = field(default_factory=ReportConfig)
    #: fsspec options by protocol, for every URL of the job (inputs, output, store):
    #: ``{s3: {endpoint_url: ..., key: ..., secret: ...}}``. Without them each backend
    #: looks where it always does (for S3 the AWS_* environment variables and ~/.aws).
    #: Never part of the run key, and only their names reach the manifest.
    storage_options: Annotated[dict[str, dict[str, Any]], PlainValidator(_storage_options)] = \
        field(default_factory=dict)

    def replace(self, **changes: Any) -> "Job":
        """A copy with ``changes``, checked as the job file's settings are."""
        try:
            return dataclasses.replace(self, **changes)
        except ValidationError as error:
            raise InputError(_one_line(error)) from None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_JOB = TypeAdapter(Job)
#: each section of a job file, by key path, for naming its known keys
_SECTIONS = {(): Job, ("labels",): LabelsConfig, ("labels", "filters"): LabelFilters,
             ("features",): FeaturesConfig, ("split",): SplitConfig, ("model",): ModelConfig,
             ("report",): ReportConfig, ("report", "boundaries"): BoundariesConfig}


def load_job(path: str | os.PathLike) -> Job:
    """Read and validate a job file; relative paths resolve against its folder.

    Only the file's content is checked here;
    :func:`asm_dask.records.outputs.check_run_paths` looks at the files it names.
    """
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
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid(f"{path}: cannot read {what} ({_first_line(exc)})") from None


def job_from_dict(raw: Any, base: str | os.PathLike = ".", source: str = "job") -> Job:
    """Build a :class:`Job` from plain data, as read from YAML; every problem in it is
    reported on one line of :class:`InputError`, each with its key path."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping with labels, features and output")
    try:
        return _JOB.validate_python(raw, context={"base": Path(base)})
    except ValidationError as error:
        raise InputError(f"{source}: {_one_line(error)}") from None


def resolve_path(value: Any, base: Path) -> str:
    """Resolve a local path against ``base``; URLs (``s3://...``) pass through unchanged."""
    text = str(value)
    if "://" in text:
        return text
    path = base / os.path.expanduser(text)
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):  # a symbolic link loop: check_paths names it
        return os.path.abspath(path)


def _one_line(error: ValidationError) -> str:
    """Every problem pydantic found, on one line: unknown keys grouped by section."""
    problems: list[str | tuple[str, ...]] = []
    unknown: dict[tuple[str, ...], list[str]] = {}
    for item in error.errors(include_url=False):
        loc = tuple(str(part) for part in item["loc"])
        if item["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            if loc[:-1] not in unknown:
                problems.append(loc[:-1])
            unknown.setdefault(loc[:-1], []).append(loc[-1])
        else:
            problems.append(_problem(item, loc))
    return "; ".join(p if isinstance(p, str) else _unknown_keys(p, unknown[p]) for p in problems)


def _problem(item: dict[str, Any], loc: tuple[str, ...]) -> str:
    """``key.path: expected ..., got VALUE``, or a missing key."""
    if item["type"] == "missing":
        return f"{_where(loc[:-1])}missing required key '{loc[-1]}'"
    if item["type"] == "expected_at":
        loc = loc + tuple(item["ctx"]["path"])
        return f"{_where(loc)}{item['msg']}, got {_shown(item['ctx']['value'])}"
    if item["type"] == "expected":
        expected = item["msg"]
    elif item["type"] == "dataclass_type":
        expected = "expected a mapping" + (" or a path" if loc in (("labels",), ("features",)) else "")
    else:  # not raised by this schema's validators; pydantic's own words, still on one line
        expected = item["msg"].strip().splitlines()[0]
    return f"{_where(loc)}{expected}, got {_shown(item['input'])}"


def _unknown_keys(section: tuple[str, ...], keys: list[str]) -> str:
    known = sorted(f.name for f in dataclasses.fields(_SECTIONS[section]))
    return f"{_where(section)}unknown key(s) {sorted(keys)}; known keys: {known}"


def _where(loc: tuple[str, ...]) -> str:
    return ".".join(loc) + ": " if loc else ""


def _shown(value: Any) -> str:
    """A value as the job file wrote it, shortened to fit one line."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
