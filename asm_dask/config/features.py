"""The ``features`` section of a job: one feature table, tables joined by cell, or a
table per year.

Tables joined by cell (``join``, or ``features`` written as a list) are read as one: the
model sees every source's columns, each prefixed with its source's name. A table per
year (``years``) gives one model fitted on the labels of every year, each label joined to
its own year's table, and a map of every year (:mod:`asm_dask.pipeline.years`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictStr, ValidationInfo, model_validator
from pydantic.dataclasses import dataclass

from .problems import Expect
from .values import KNOWN_KEYS_ONLY, InputPath, Number, Text, Whole, expected_at, folder_path, path_shorthand


def _source_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", value):
        raise ValueError("expected a name of letters, digits, '_' and '-', starting with a letter")
    return value


#: a feature source's name: the prefix of its columns in a joined table (``alphaearth.feature_3``)
SourceName = Annotated[Text, AfterValidator(_source_name),
                       Expect("a name of letters, digits, '_' and '-', starting with a letter, or null")]


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class JoinedFeatures:
    """Another feature table joined to the first by cell (see :class:`FeaturesConfig`):
    read as the first is, on its grid."""

    path: InputPath
    #: prefix of the feature columns in the file; ``None`` detects it
    prefix: Annotated[Text | None, Expect("text, or null")] = None
    #: prefix of this source's columns in the joined table; ``None``: the file's name
    name: SourceName | None = None


def _joined_tables(value: Any) -> Any:
    """One table to join may be written alone, not in a list."""
    if value is None:
        return ()
    if isinstance(value, (str, dict)):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise expected_at((), value, "a list of feature tables: paths, or mappings with path, prefix and name")
    return value


def _sources(value: Any) -> Any:
    """``features: [A, B, C]`` is short for A with ``join: [B, C]``; each may be a path."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise expected_at((), value, "a mapping, a path, or a non-empty list of them (tables joined by cell)")
        first = path_shorthand(value[0])
        if isinstance(first, dict) and "join" not in first:
            return {**first, "join": [path_shorthand(item) for item in value[1:]]}
    return path_shorthand(value)


def _distinct_names(join: tuple[JoinedFeatures, ...], info: ValidationInfo) -> tuple[JoinedFeatures, ...]:
    """Tables joined by cell have distinct names: their columns are told apart by them."""
    if join and info.data.get("path"):
        names = [info.data.get("name") or _file_stem(info.data["path"])] + [j.name or _file_stem(j.path) for j in join]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise expected_at((), names, f"tables of distinct names ({', '.join(repeated)} is repeated; "
                                         "give each table a name)")
    return join


JoinedTables = Annotated[tuple[Annotated[JoinedFeatures, BeforeValidator(path_shorthand)], ...],
                         BeforeValidator(_joined_tables), AfterValidator(_distinct_names)]


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class YearFeatures:
    """A year's feature table (with the tables joined to it by cell), read as every
    year's is: the ``features`` settings other than ``years`` apply to each."""

    path: InputPath
    prefix: Annotated[Text | None, Expect("text, or null")] = None
    name: SourceName | None = None
    join: JoinedTables = ()


def _years(value: Any) -> Any:
    """``years`` maps each year to what ``features`` takes for one table: a path, a list
    of tables joined by cell, or a mapping."""
    if not value:  # none: a job of one table
        return {}
    if not isinstance(value, dict):
        raise expected_at((), value, "a mapping of each year to its feature table, e.g. {2019: f2019.feather}")
    years = {}
    for year, table in value.items():
        number = int(year) if isinstance(year, str) and year.isdigit() else year
        if type(number) is not int or not 1800 <= number <= 2200:
            raise expected_at((str(year),), year, "a year from 1800 to 2200 as the key of its feature table")
        years[number] = _sources(table)
    if len(years) < 2:  # a map of one year and no change: a job of one table
        raise expected_at((), value, "two years or more, each with its feature table (one year's table is "
                                     "features.path)")
    return dict(sorted(years.items()))


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class FeaturesConfig:
    """The feature table: one row per grid cell (its centroid in ``lon``/``lat``) with
    the MOSAIKS features, and how it is read (in place, or through the feature store).

    Other tables on the same grid (embedding means, elevation...) may be joined to it by
    cell (``join``, or ``features`` written as a list): the model sees every source's
    columns, each prefixed with its source's name; cells missing from a source are left
    out and counted.
    """

    #: the feature table; ``None`` in a job of a table per year (``years``)
    path: InputPath | None = None
    #: side of a grid cell in degrees; each cell is the square of this size on its centroid
    cell_size: Annotated[Number, Field(gt=0), Expect("a number > 0")] = 0.01
    #: prefix of the feature columns (``feature_``, ``X_``...); ``None`` detects it
    prefix: Annotated[Text | None, Expect("text, or null")] = None
    #: read the input in place or through the feature store: ``auto`` (in place for
    #: Feather and Parquet, unless a store of them exists; a store for CSV), ``always``, ``never``
    store: Annotated[Literal["auto", "always", "never"],
                     Expect("'auto', 'always' or 'never' (the store's folder is features.store_path)")] = "auto"
    #: folder of the feature store; ``None`` puts it beside the features file
    store_path: Annotated[StrictStr | None, AfterValidator(folder_path),
                          Expect("a path or URL of a folder, or null")] = None
    #: rows per store partition; ``None`` sizes partitions to about 128 MB
    rows_per_partition: Annotated[Whole | None, Field(ge=1), Expect("an integer >= 1, or null")] = None
    #: prefix of this table's columns when others are joined to it; ``None``: the file's name
    name: SourceName | None = None
    #: tables joined to this one by cell, in order (read in place, or through stores as this one)
    join: JoinedTables = ()
    #: a feature table per year instead of ``path`` (``{2019: f2019.feather, 2021: ...}``):
    #: every year on one grid, made with the same filters; one model learns from the labels
    #: of every year, each joined to its year's table, and every year is mapped
    years: Annotated[dict[int, YearFeatures], BeforeValidator(_years)] = dataclasses.field(default_factory=dict)

    def tables(self) -> list[tuple[str, FeaturesConfig]]:
        """Every table as (its name, how to read it alone), this one first: each on this
        one's grid, read as this one is; a table without a name is called after its file."""
        return [(name or _file_stem(path), dataclasses.replace(self, path=path, prefix=prefix, name=None, join=()))
                for name, path, prefix in [(self.name, self.path, self.prefix)]
                + [(j.name, j.path, j.prefix) for j in self.join]]

    @model_validator(mode="after")
    def _a_table_or_years(self) -> FeaturesConfig:
        if self.years and (self.path or self.join or self.name):
            raise expected_at((), {"path": self.path, "years": sorted(self.years)},
                              "either path (with join and name): one table, or years: a table per year, not both")
        if not self.years and not self.path:
            raise expected_at((), None, "a path (one table) or years (a table per year)")
        return self

    def of_year(self, year: int) -> FeaturesConfig:
        """How to read ``year``'s table (and the tables joined to it) alone."""
        table = self.years[year]
        return dataclasses.replace(self, path=table.path, prefix=table.prefix or self.prefix, name=table.name,
                                   join=table.join, years={})


def _file_stem(path: str) -> str:
    """A file's name without folders or extensions, as a source name."""
    stem = re.split(r"[\\/]", path.rstrip("/"))[-1].split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem) or "features"


