"""Read stage, features: detect a feature file's format and layout, and read it in chunks.

Two layouts are understood, in CSV, Parquet or Feather (Arrow IPC) files:

* the notebook's: ``image_id`` (``lat_8--405__lon_-11--235``) and ``feature_0..``;
* MOSAIKS-API style: latitude and longitude columns (``lat``/``Lat``/``latitude``,
  ``lon``/``Lon``/``longitude``) and feature columns that share a prefix
  (``X_``, ``feature_``, ``planet_``, ``mosaiks_``...).

Feature columns are ordered by their numeric suffix and counted from the data. Other
columns are ignored. A chunk is a record batch (Feather), a row group (Parquet) or a
block of lines (CSV); chunks of Feather and Parquet files can be read independently,
and a :class:`FilePartition` reads one in place, a group of columns at a time.
"""

from __future__ import annotations

import csv
import functools
import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ..config.problems import listed
from ..errors import InputError
from .grid import cell_ids, check_coordinates, decimal_coordinates, parse_image_ids

#: features read at once from a chunk of a file read in place: a pandas-written Feather
#: batch of 64k rows holds 1 GB at 4000 features; a group of columns is a fraction of it
COLUMN_GROUP_BYTES = 64 << 20
LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "long", "lng", "longitude")
#: columns ``asm-dask featurize`` writes beside the features (each cell's covered share of
#: pixels): not read, and not worth a note
FEATURIZE_COLUMNS = ("covered",)
#: the Parquet metadata key under which ``asm-dask featurize`` says how a table was made
FEATURIZATION_KEY = b"asm_dask.featurize"


@dataclass(frozen=True)
class FeatureLayout:
    """Where the coordinates and features are in a feature file."""

    path: str
    format: str  #: ``feather``, ``parquet`` or ``csv``
    feature_columns: tuple[str, ...]
    columns: tuple[str, ...]  #: every column of the file, in file order
    image_id_column: str | None = None
    lat_column: str | None = None
    lon_column: str | None = None

    @property
    def coordinate_columns(self) -> list[str]:
        if self.image_id_column:
            return [self.image_id_column]
        return [self.lat_column, self.lon_column]


@dataclass
class FeatureChunk:
    """Rows of a feature file: centroids and a column-major float32 feature block."""

    first_row: int  #: 0-based index of the chunk's first data row in the file
    lat: np.ndarray
    lon: np.ndarray
    features: pa.RecordBatch  #: the feature columns only, as float32


def releases_arrow_memory(task: Callable) -> Callable:
    """Make a task hand the memory Arrow freed back to the operating system when it ends.

    Arrow's allocator keeps freed blocks for reuse. Tasks that read features decompress
    hundreds of megabytes each, and without this the kept blocks add up: measured 2.5 GB
    instead of 0.4 GB for one 1 GB Feather batch.
    """
    @functools.wraps(task)
    def wrapper(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        finally:
            pa.default_memory_pool().release_unused()

    return wrapper


@dataclass(frozen=True)
class FilePartition:
    """One chunk of a Feather or Parquet file, read in place (see :mod:`asm_dask.read.table`).

    Compression works column by column within a chunk, so any read decompresses whole
    columns: the unit of work is a group of about ``COLUMN_GROUP_BYTES`` of columns (a
    task's memory stays small). Rows with non-finite features are kept here.
    """

    layout: FeatureLayout
    index: int
    first_row: int  #: 0-based index of the chunk's first data row in the file
    n_rows: int
    cell_size: float

    def cells(self) -> pd.DataFrame:
        chunk = read_chunk(self.layout, self.index, self.first_row, features=())
        return pd.DataFrame({"cell_id": cell_ids(chunk.lat, chunk.lon, self.cell_size),
                             "lat": chunk.lat, "lon": chunk.lon})

    def column_groups(self, n_features: int) -> list[slice]:
        width = max(1, COLUMN_GROUP_BYTES // (4 * max(self.n_rows, 1)))
        return [slice(start, min(start + width, n_features)) for start in range(0, n_features, width)]

    @releases_arrow_memory
    def feature_block(self, rows: np.ndarray | None, columns: slice) -> np.ndarray:
        batch = read_feature_columns(self.layout, self.index, self.layout.feature_columns[columns])
        if rows is not None:
            batch = batch.take(pa.array(rows))
        return to_matrix(batch)

    def feature_columns(self, columns: slice) -> list[np.ndarray]:  # as Arrow holds them: no copy
        batch = read_feature_columns(self.layout, self.index, self.layout.feature_columns[columns])
        return [column.to_numpy(zero_copy_only=False) for column in batch.columns]


def to_matrix(columns: pa.RecordBatch) -> np.ndarray:
    """Float32 feature columns as one C-ordered matrix, missing values as NaN."""
    # Column by column beats blocked transposes and Arrow's to_tensor here once two
    # threads do it at the same time: it holds the GIL least.
    out = np.empty((columns.num_rows, columns.num_columns), dtype=np.float32)
    for j, column in enumerate(columns.columns):
        out[:, j] = column.to_numpy(zero_copy_only=False)
    return out


def detect_layout(path: str, prefix: str | None = None) -> FeatureLayout:
    """Inspect a feature file's header and say where coordinates and features are."""
    fmt = _detect_format(path)
    names, types = _schema(path, fmt)
    lower = {n.lower(): n for n in names}
    for what, candidates in (("image_id", ("image_id",)), ("latitude", LAT_NAMES), ("longitude", LON_NAMES)):
        found = [n for n in names if n.lower() in candidates]
        if len(found) > 1:
            raise InputError(f"{path}: {len(found)} {what} columns ({', '.join(found)}); keep one")
    image_id = lower.get("image_id")
    lat = next((lower[n] for n in LAT_NAMES if n in lower), None)
    lon = next((lower[n] for n in LON_NAMES if n in lower), None)
    if not image_id and not (lat and lon):
        raise InputError(f"{path}: no coordinates: expected an 'image_id' column or latitude and "
                         f"longitude columns ({'/'.join(LAT_NAMES)}, {'/'.join(LON_NAMES)}); "
                         f"found {names[:8]}{'...' if len(names) > 8 else ''}")
    features = _feature_columns(path, names, prefix, exclude={image_id, lat, lon})
    if types is not None:
        for name in features:
            if not _numeric(types[name]):
                raise InputError(f"{path}: feature column '{name}' is {types[name]}, not numeric")
        if image_id and not _text(types[image_id]):
            raise InputError(f"{path}: column '{image_id}' is {types[image_id]}, expected text like "
                             "'lat_8--405__lon_-11--235'")
        for name in () if image_id else (lat, lon):
            if not (pa.types.is_floating(types[name]) or pa.types.is_integer(types[name])):
                raise InputError(f"{path}: coordinate column '{name}' is {types[name]}, expected numbers of degrees")
    return FeatureLayout(path=path, format=fmt, feature_columns=tuple(features), columns=tuple(names),
                         image_id_column=image_id, lat_column=None if image_id else lat,
                         lon_column=None if image_id else lon)


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)


def _text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):  # a pandas categorical column
        kind = kind.value_type
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind))


def layout_notes(layout: FeatureLayout) -> list[str]:
    """What a reader of the file should know that is not an error: columns left unread
    (another prefix, coordinates beside an ``image_id``, anything else) and gaps in the
    features' numbering."""
    notes = []
    read = set(layout.feature_columns) | set(layout.coordinate_columns) | set(FEATURIZE_COLUMNS)
    unread = [name for name in layout.columns if name not in read]
    if unread:
        coordinates = "the image_id column" if layout.image_id_column else \
            f"{layout.lat_column}/{layout.lon_column}"
        first, last = layout.feature_columns[0], layout.feature_columns[-1]
        notes.append(f"{layout.path}: {len(unread)} column(s) not read: {listed(unread)} (features: the "
                     f"{len(layout.feature_columns)} columns {first}..{last}; "
                     f"coordinates: {coordinates}; features.prefix chooses other feature columns)")
    numbers = [int(re.fullmatch(r".*?(\d+)", name).group(1)) for name in layout.feature_columns]
    if numbers and numbers[-1] - numbers[0] + 1 != len(numbers):
        # Counted, not listed: a column named feature_999999999 must not make a billion numbers.
        n_missing = numbers[-1] - numbers[0] + 1 - len(numbers)
        first = next(a + 1 for a, b in zip(numbers, numbers[1:]) if b > a + 1)
        notes.append(f"{layout.path}: feature numbers have gaps: {n_missing} missing between "
                     f"{layout.feature_columns[0]} and {layout.feature_columns[-1]} (first: {first})")
    return notes


def chunk_sizes(layout: FeatureLayout) -> list[int]:
    """Rows in each chunk of a Feather or Parquet file, read from metadata only."""
    with open_input(layout.path) as f:
        if layout.format == "feather":
            # Reading one column of each batch costs kilobytes, not the batch.
            reader = ipc.open_file(f, options=ipc.IpcReadOptions(included_fields=[0]))
            return [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
        meta = pq.ParquetFile(f).metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def featurization_of(path: str) -> dict | None:
    """How ``asm-dask featurize`` made the table at ``path`` (its method and filters), from
    the Parquet metadata; ``None`` for any other table."""
    import json

    if _detect_format(path) != "parquet":
        return None
    with open_input(path) as f:
        metadata = pq.read_schema(f).metadata or {}
    if FEATURIZATION_KEY not in metadata:
        return None
    try:
        return json.loads(metadata[FEATURIZATION_KEY])
    except ValueError:
        raise InputError(f"{path}: the description asm-dask featurize left in the table is damaged") from None


def making_of(path: str) -> dict | None:
    """What makes the features of the table at ``path`` what they are, if ``asm-dask
    featurize`` made it: the method, the filters' fingerprint, the bands, their scaling and
    the cell size (not the imagery's files: another year's are other files); ``None`` for
    any other table."""
    made = featurization_of(path)
    if not isinstance(made, dict):
        return None
    filters = made.get("filters")
    return {"method": made.get("method"), "filters": filters.get("fingerprint") if isinstance(filters, dict) else None,
            **{key: made.get(key) for key in ("bands", "scale", "offset", "cell_size")}}


def filters_of(path: str) -> str | None:
    """The fingerprint of the random convolutional filters that made the table at
    ``path``; ``None`` for a table made otherwise."""
    made = featurization_of(path)
    filters = made.get("filters") if isinstance(made, dict) else None
    return filters.get("fingerprint") if isinstance(filters, dict) else None


def input_fingerprint(path: str) -> str:
    """Changes when the file does (fsspec's ``ukey``: size and modification time, or an ETag)."""
    fs, fs_path = fsspec.core.url_to_fs(path)
    return fs.ukey(fs_path)


def open_input(path: str):
    """A random-access file: Arrow's own when local, fsspec for URLs (s3://, gs://...).

    Arrow's file matters: reading a 1 GB Feather batch through a Python file object
    takes several times longer and holds the batch twice. It reads with ``pread``, not a
    memory map: a mapped file's pages count in the resident memory of every worker that
    touched them (measured: 680 MB against 130 MB for one pass over a 560 MB file), for
    no gain, since every value is decompressed or converted anyway.
    """
    if "://" not in path or path.startswith("file://"):
        local = path.removeprefix("file://")
        if not os.path.isfile(local):
            raise InputError(f"{path}: features file not found")
        if os.path.getsize(local) == 0:
            raise InputError(f"{path}: features file is empty")
        return pa.OSFile(local)
    return fsspec.open(path, "rb").open()


def read_chunk(layout: FeatureLayout, index: int, first_row: int,
               features: tuple[str, ...] | None = None) -> FeatureChunk:
    """Read chunk ``index`` of a Feather or Parquet file: its coordinates and ``features``
    (default: every feature column), and no other column."""
    features = layout.feature_columns if features is None else features
    return to_chunk(layout, _read_columns(layout, index, layout.coordinate_columns + list(features)),
                     first_row, features)


def read_feature_columns(layout: FeatureLayout, index: int, features: tuple[str, ...]) -> pa.RecordBatch:
    """Some feature columns of chunk ``index``, as float32, without its coordinates."""
    return _float32_features(layout, _read_columns(layout, index, list(features)), features)


def _read_columns(layout: FeatureLayout, index: int, columns: list[str]) -> pa.RecordBatch:
    # Arrow's own threads off: tasks already run side by side, one per core.
    with open_input(layout.path) as f:
        if layout.format == "feather":
            position = {name: i for i, name in enumerate(layout.columns)}
            return ipc.open_file(f, options=ipc.IpcReadOptions(
                included_fields=[position[c] for c in columns], use_threads=False)).get_batch(index)
        table = pq.ParquetFile(f).read_row_group(index, columns=columns, use_threads=False)
        return pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns],
                                          names=table.column_names)


def to_chunk(layout: FeatureLayout, batch: pa.RecordBatch, first_row: int,
             features: tuple[str, ...]) -> FeatureChunk:
    """A batch of rows as a :class:`FeatureChunk`: coordinates checked, features float32."""
    if layout.image_id_column:
        lat, lon = parse_image_ids(batch.column(layout.image_id_column), layout.path, first_row)
    else:
        lat, lon = (decimal_coordinates(batch.column(name)) for name in (layout.lat_column, layout.lon_column))
    check_coordinates(lat, lon, layout.path, first_row)
    return FeatureChunk(first_row, lat, lon, _float32_features(layout, batch, features))


def _float32_features(layout: FeatureLayout, batch: pa.RecordBatch,
                      features: tuple[str, ...]) -> pa.RecordBatch:
    arrays = []
    for name in features:
        column = batch.column(name)
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
                or pa.types.is_null(column.type)):
            raise InputError(f"{layout.path}: feature column '{name}' is {column.type}, not numeric")
        # Not a checked cast: integers beyond float32's 24 bits of mantissa round, as any
        # feature stored as float32 does; values beyond its range become infinite (and
        # the cell is left out and counted, as a non-finite one).
        arrays.append(column.cast(pa.float32(), safe=False) if column.type != pa.float32() else column)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([(name, pa.float32()) for name in features]))


def _detect_format(path: str) -> str:
    with open_input(path) as f:
        head = f.read(8)
    if head.startswith(b"ARROW1"):
        return "feather"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"FEA1"):
        raise InputError(f"{path}: Feather version 1 is not supported; re-save it with "
                         "pandas.DataFrame.to_feather (version 2)")
    if not head:
        raise InputError(f"{path}: features file is empty")
    return "csv"


def _schema(path: str, fmt: str) -> tuple[list[str], dict[str, pa.DataType] | None]:
    with open_input(path) as f:
        try:
            if fmt == "feather":
                schema = ipc.open_file(f).schema
            elif fmt == "parquet":
                schema = pq.ParquetFile(f).schema_arrow
            else:
                return _csv_header(f), None
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read as {fmt} ({str(exc).strip()[:200]})") from None
    return schema.names, {field.name: field.type for field in schema}


def _csv_header(f) -> list[str]:
    # Headers of 4000 feature columns run to tens of kilobytes: read until the first newline.
    head = b""
    while b"\n" not in head:
        block = f.read(1 << 16)
        if not block:
            break
        head += block
    # utf-8-sig: a byte-order mark (what Excel writes) is no part of the first name
    line = head.split(b"\n", 1)[0].decode("utf-8-sig")
    return next(csv.reader([line]), [])


def _feature_columns(path: str, names: list[str], prefix: str | None,
                     exclude: set[str | None]) -> list[str]:
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for name in names:
        match = re.fullmatch(r"(.*?)(\d+)", name)
        if match and name not in exclude:
            groups[match.group(1)].append((int(match.group(2)), name))
    if prefix is not None:
        if prefix not in groups:
            raise InputError(f"{path}: no feature columns named '{prefix}<number>'")
        chosen = prefix
    else:
        if not groups:
            raise InputError(f"{path}: no feature columns: expected columns like "
                             "'feature_0', 'X_0', 'planet_0' or 'mosaiks_0'")
        ranked = sorted(groups, key=lambda p: len(groups[p]), reverse=True)
        if len(ranked) > 1 and len(groups[ranked[0]]) == len(groups[ranked[1]]):
            raise InputError(f"{path}: feature columns are ambiguous between prefixes "
                             f"{ranked[:2]}; set features.prefix in the job file")
        chosen = ranked[0]
    numbered = sorted(groups[chosen])
    indices = [i for i, _ in numbered]
    if len(set(indices)) != len(indices):
        raise InputError(f"{path}: feature columns with prefix '{chosen}' repeat a number")
    return [name for _, name in numbered]
