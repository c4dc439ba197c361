"""Read stage, labels: the labelled points, validated and filtered as the notebook does."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from ..config import LabelsConfig
from ..errors import InputError, warn
from .grid import CRS, check_coordinates

#: columns asm-dask adds to the labels as it joins them to cells (and writes to
#: ``labelled_cells.csv``): a labels file may not hold columns of these names
RESERVED_COLUMNS = ("label_row", "geometry", "cell_id", "cell_lat", "cell_lon", "partition", "row", "split",
                    "index_left", "index_right")


@dataclass(frozen=True)
class Labels:
    """Labelled points that passed the filters, and how many each filter removed."""

    points: gpd.GeoDataFrame  #: one row per kept label, with ``label_row`` (1-based CSV row)
    n_read: int
    removed: dict[str, int]  #: filter name -> rows it removed, in the order applied
    #: the rows of a probability sample (``estimate.sample_types``), as read, and kept
    #: among ``points`` whatever the filters say (the first keeps every positive but only
    #: well-inspected negatives: a sample filtered so is no longer a probability sample);
    #: ``label`` is 0 where the mine type is excluded (a commercial mine is not ASM)
    sample: gpd.GeoDataFrame | None = None

    @property
    def n_kept(self) -> int:
        return len(self.points)

    def of_year(self, year: int) -> Labels:
        """The labels of ``year`` (their ``year`` column), and its part of the sample."""
        sample = None if self.sample is None else self.sample[self.sample["year"] == year].reset_index(drop=True)
        return Labels(points=self.points[self.points["year"] == year].reset_index(drop=True), n_read=self.n_read,
                      removed=self.removed, sample=sample if sample is not None and len(sample) else None)


def read_labels(config: LabelsConfig, sample_types: tuple[str, ...] = (), years: tuple[int, ...] = ()) -> Labels:
    """Read the labels CSV, check it and apply the filters of ``config``; in a job of a
    table per year (``years``), give each label its ``year``.

    Raises
    ------
    InputError
        The file is missing or unreadable; a required column is missing; a coordinate is
        missing or out of range; a label is not 0 or 1; a filter column is not numeric;
        fewer than two classes remain after filtering; in a job of ``years``, a label's
        year (its ``year``, else its ``date``, else ``config.year``) is unknown or has no
        feature table.
    """
    path, filters = config.path, config.filters
    required = ["lon", "lat", "label"]
    if filters.min_proportion_inspected is not None:
        required.append("proportion_inspected")
    if filters.exclude_mine_types:
        required.append("mine_type")
    if filters.min_confidence is not None:
        required.append("confidence")
    try:
        frame = _read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: labels file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as CSV ({str(exc).strip().splitlines()[0]})") from None
    _check_header(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        filters = {"proportion_inspected": "min_proportion_inspected", "mine_type": "exclude_mine_types",
                   "confidence": "min_confidence"}
        switches = [f"labels.filters.{filters[c]}" for c in missing if c in filters]
        hint = f" ({', '.join(switches)}: null switches off the filter that needs it)" if switches else ""
        raise InputError(f"{path}: missing required column(s) {missing}; found {list(frame.columns)}{hint}")
    reserved = [c for c in frame.columns if c in RESERVED_COLUMNS]
    if reserved:
        raise InputError(f"{path}: column {reserved[0]!r} has a name asm-dask gives a column of its own "
                         f"(reserved: {', '.join(RESERVED_COLUMNS)}); rename or drop it")
    frame["label_row"] = np.arange(1, len(frame) + 1)
    if frame.empty:
        raise InputError(f"{path}: no labels: the file holds its header only")
    for column in ["lon", "lat", "label", "proportion_inspected", "confidence"]:
        if column in required:
            _require_numeric(frame, column, path)
    check_coordinates(frame["lat"].to_numpy(float), frame["lon"].to_numpy(float), path)
    if "proportion_inspected" in required:
        outside = ~frame["proportion_inspected"].between(0, 1) & frame["proportion_inspected"].notna()
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise InputError(f"{path}: row {row + 1}: proportion_inspected must be a proportion from 0 to 1, "
                             f"got {_as_python(frame['proportion_inspected'].iloc[row])!r}")
    bad_label = ~frame["label"].isin([0, 1])
    if bad_label.any():
        row = int(np.flatnonzero(bad_label)[0])
        raise InputError(f"{path}: row {row + 1}: label must be 0 or 1, got {_as_python(frame['label'].iloc[row])!r}")
    frame["label"] = frame["label"].astype(np.int8)
    if years:
        frame["year"] = _years_of(frame, config.year, years, path)
    elif "year" in frame and frame["year"].nunique() > 1:
        seen = ", ".join(map(str, sorted(frame["year"].dropna().unique().tolist())))
        warn(f"{path}: labels of several years ({seen}) joined to one feature table, whatever their year; a job of "
             "features.years joins each label to its own year's features")

    if filters.exclude_mine_types:
        _warn_of_near_mine_types(frame["mine_type"], filters.exclude_mine_types, path)
    n_read, removed = len(frame), {}
    # The sample is kept whole, for training too: the split then holds out a random part
    # of it whatever its labels, on which the map is measured (asm_dask.estimation.area).
    in_sample = frame["sample_type"].isin(sample_types) if sample_types and "sample_type" in frame \
        else pd.Series(False, index=frame.index)
    if filters.exclude_mine_types and "mine_type" in frame:  # a commercial mine is not ASM
        frame.loc[in_sample & frame["mine_type"].isin(filters.exclude_mine_types), "label"] = 0
    sample = _probability_sample(frame[in_sample], path) if in_sample.any() else None
    if filters.min_proportion_inspected is not None:
        keep = (frame["proportion_inspected"] >= filters.min_proportion_inspected) | (frame["label"] == 1) | in_sample
        removed["proportion_inspected"] = int((~keep).sum())
        frame, in_sample = frame[keep], in_sample[keep]
    if filters.exclude_mine_types:
        keep = ~frame["mine_type"].isin(filters.exclude_mine_types) | in_sample
        removed["mine_type"] = int((~keep).sum())
        frame, in_sample = frame[keep], in_sample[keep]
    if filters.min_confidence is not None:
        keep = (frame["confidence"] >= filters.min_confidence) | in_sample
        removed["confidence"] = int((~keep).sum())
        frame = frame[keep]
    classes = sorted(frame["label"].unique().tolist())
    if classes != [0, 1]:
        raise InputError(f"{path}: after filtering ({len(frame)} of {n_read} rows kept) the labels "
                         f"hold only class(es) {classes}; a classifier needs both 0 and 1")
    points = gpd.GeoDataFrame(frame.reset_index(drop=True),
                              geometry=gpd.points_from_xy(frame["lon"], frame["lat"]), crs=CRS)
    return Labels(points=points, n_read=n_read, removed=removed, sample=sample)


#: columns a sample drawn by ``asm-dask sample`` carries: each cell's stratum, the cells
#: in it when drawn, and its inclusion probability (a sample drawn with unequal
#: probabilities otherwise carries the last alone)
DESIGN_COLUMNS = ("stratum", "stratum_cells", "inclusion_probability")


def _probability_sample(rows: pd.DataFrame, path: str) -> gpd.GeoDataFrame:
    """The sample's rows, unfiltered, with their design columns checked."""
    rows = rows.copy()
    given = [c for c in DESIGN_COLUMNS if c in rows]
    if given and given != ["inclusion_probability"] and len(given) < len(DESIGN_COLUMNS):
        raise InputError(f"{path}: the sample's design needs the columns {', '.join(DESIGN_COLUMNS)} together "
                         f"(as asm-dask sample writes them), or inclusion_probability alone (cells drawn with "
                         f"unequal probabilities); found only {', '.join(given)}")
    if "inclusion_probability" in given:
        _require_numeric(rows, "inclusion_probability", path)
        bad = ~rows["inclusion_probability"].between(0, 1, inclusive="right")
        if bad.any():
            row = int(rows.index[bad][0])
            raise InputError(f"{path}: row {row + 1}: inclusion_probability must be in (0, 1], got "
                             f"{_as_python(rows.loc[row, 'inclusion_probability'])!r}")
    if given and rows[given].isna().any().any():
        row = int(rows.index[rows[given].isna().any(axis=1)][0])
        raise InputError(f"{path}: row {row + 1}: a label of sample_type {rows.loc[row, 'sample_type']} without "
                         "the stratum, stratum_cells and inclusion_probability its other labels have: two samples "
                         "are not one; give the sample asm-dask sample drew a sample_type of its own "
                         "(--sample-type) and name it in estimate.sample_types")
    return gpd.GeoDataFrame(rows.reset_index(drop=True), geometry=gpd.points_from_xy(rows["lon"], rows["lat"]),
                            crs=CRS)


def _years_of(frame: pd.DataFrame, default: int | None, years: tuple[int, ...], path: str) -> np.ndarray:
    """Each label's year: its ``year``, else the year of its ``date``, else ``default``
    (``labels.year``); one of ``years``, the years with a feature table."""
    year = pd.Series(np.nan, index=frame.index)
    if "year" in frame:
        year = pd.to_numeric(frame["year"], errors="coerce")
        bad = (year.isna() & frame["year"].notna()) | (year.notna() & (year % 1 != 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}: row {row + 1}: year must be a whole number, got "
                             f"{_as_python(frame['year'].iloc[row])!r}")
    if "date" in frame:  # where the year is not given
        undated = year.isna() & frame["date"].notna()
        written = frame["date"]
        if pd.api.types.is_numeric_dtype(written):  # 2021 or 20210630, not nanoseconds since 1970
            written = written.map(lambda v: str(int(v)) if v == v and float(v).is_integer() else v)
        dates = pd.to_datetime(written.where(undated), errors="coerce", format="mixed")
        bad = undated & dates.isna()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}: row {row + 1}: date {_as_python(frame['date'].iloc[row])!r} is not a date "
                             "(e.g. 2021-06-30)")
        year = year.where(~undated, dates.dt.year)
    if year.isna().any():
        if default is None:
            row = int(np.flatnonzero(year.isna())[0])
            raise InputError(f"{path}: row {row + 1}: a label without a year ({int(year.isna().sum())} of "
                             f"{len(year)}); give each a year (a year or date column), or set labels.year to the "
                             "year of those without one")
        year = year.fillna(default)
    unknown = ~year.isin(years)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise InputError(f"{path}: row {row + 1}: a label of {int(year.iloc[row])}, a year without features "
                         f"(features.years: {', '.join(map(str, years))}); {int(unknown.sum())} label(s) of "
                         f"year(s) {', '.join(map(str, sorted(set(year[unknown].astype(int)))))} in all")
    return year.astype(int).to_numpy()


def _read_csv(path: str) -> pd.DataFrame:
    """The labels file as a table. Where every row holds one field more than the header (a
    comma at the end of each line, as some programs write), pandas would take the first
    column for the index and shift every other one: an empty last field is dropped, one
    that holds a value is one line."""
    frame = pd.read_csv(path)
    if isinstance(frame.index, pd.RangeIndex):
        return frame
    last = pd.read_csv(path, header=None, skiprows=1, usecols=[len(frame.columns)], dtype=str).iloc[:, 0]
    if last.notna().any():
        row = int(np.flatnonzero(last.notna())[0])
        raise InputError(f"{path}: row {row + 1}: one field more than the header's {len(frame.columns)} columns "
                         f"({last.iloc[row]!r}); name its column in the header, or remove it")
    return pd.read_csv(path, index_col=False)


def _warn_of_near_mine_types(mine_types: pd.Series, excluded: tuple[str, ...], path: str) -> None:
    """Mine types are matched exactly: an excluded one that no label holds, where labels
    hold it in other capitals or with spaces around it, is most likely meant to be that."""
    held = mine_types.dropna().astype(str).value_counts()
    for name in excluded:
        if name in held.index:
            continue
        near = [other for other in held.index if other.strip().casefold() == name.strip().casefold()]
        if near:
            warn(f"{path}: labels.filters.exclude_mine_types: {name!r} is no mine_type of the labels, "
                 f"{near[0]!r} is ({held[near[0]]} rows): mine types are matched exactly, so none of them is "
                 "excluded")


def _check_header(path: str) -> None:
    """A column named twice is refused: pandas would read the first and rename the other
    (``label.1``), so which one the file meant would be a guess."""
    import fsspec

    with fsspec.open(path, "rt", newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    repeated = [name for name, count in Counter(header).items() if count > 1]
    if repeated:
        positions = [i + 1 for i, name in enumerate(header) if name == repeated[0]]
        raise InputError(f"{path}: column {repeated[0]!r} appears {len(positions)} times in the header "
                         f"(columns {', '.join(map(str, positions))}); keep one")


def _require_numeric(frame: pd.DataFrame, column: str, path: str) -> None:
    """Numbers, finite where given; true/false is a number only as a label (1/0)."""
    if frame[column].dtype == bool:
        if column == "label":
            frame[column] = frame[column].astype(np.int8)
            return
        raise InputError(f"{path}: column '{column}' holds true/false; expected numbers")
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = (values.isna() & frame[column].notna()) | np.isinf(values.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: row {row + 1}: column '{column}' must be a finite number, "
                         f"got {_as_python(frame[column].iloc[row])!r}")
    frame[column] = values


def _as_python(value):
    """A NumPy scalar as the Python value it holds, for messages (``nan``, not ``np.float64(nan)``)."""
    return value.item() if isinstance(value, np.generic) else value
