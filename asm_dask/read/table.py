"""Read stage: the feature table every later stage sees, read in place or from the store.

Feather and Parquet inputs are read where they are: a run reads their coordinates (one
column), gathers the labelled rows (the first read of the features) and predicts every
cell (the second), and never copies them. CSV inputs cannot be read in pieces, so they
go through the feature store (:mod:`asm_dask.read.store`) once; ``features.store`` chooses.

Either way the table is a list of partitions, and the join, fit and predict stages ask
three things of a partition, in tasks on the cluster:

* ``cells()``: ``cell_id``, ``lat``, ``lon`` of its rows;
* ``column_groups(n_features)``: how to cut its features into groups of columns that a
  task reads at once (the whole row for the store, ~64 MB of columns for an input file);
* ``feature_block(rows, columns)``: a float32 matrix of some rows (``None``: all) and one
  group of columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from distributed import Client

from ..config import FeaturesConfig
from ..config.problems import listed
from ..errors import InputError, warn
from ..records.fingerprint import fingerprint
from ..records.outputs import store_root
from ..runtime.progress import wait_with_progress
from .features import FilePartition, chunk_sizes, detect_layout, input_fingerprint, layout_notes
from .grid import Spacing, check_cell_size, check_unique_cells, grid_spacing, nearest
from .store import find_store, open_store
from .store_format import STORE_VERSION

#: Version of the in-place reading; part of a table's key, so of the run key.
FILE_TABLE_VERSION = 1


class Partition(Protocol):
    n_rows: int

    def cells(self) -> pd.DataFrame: ...

    def column_groups(self, n_features: int) -> list[slice]: ...

    def feature_block(self, rows: np.ndarray | None, columns: slice) -> np.ndarray: ...

    def feature_columns(self, columns: slice) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class FeatureTable:
    """The features a run reads, as partitions, with what is known of them before any
    feature value is read."""

    kind: str  #: ``store`` or ``file`` (the input read in place)
    location: str  #: the store's folder or the input file
    key: str  #: fingerprint of the input and of how it is read
    source: dict[str, Any]  #: the input's path, fingerprint and format
    cell_size: float
    feature_names: tuple[str, ...]
    partitions: tuple[Partition, ...]
    #: each partition's cell squares' extent (min lon, min lat, max lon, max lat); None if empty
    bounds: tuple[tuple[float, float, float, float] | None, ...]
    #: input rows left out before the table: the store's, for non-finite features
    n_dropped_on_ingest: int
    #: what a reader should know of the file that is not an error (columns not read...)
    notes: tuple[str, ...] = ()
    #: cells of the first table left out for missing from another joined source; None:
    #: one table (:mod:`asm_dask.read.sources`)
    n_left_out_by_join: int | None = None

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.partitions)


def open_table(config: FeaturesConfig, output: str, client: Client) -> FeatureTable:
    """The feature table of ``config``, through the store or in place per ``config.store``.

    Every partition's coordinates are read and checked here: an unparseable ``image_id``,
    a coordinate out of range or two rows for one cell is an :class:`InputError` before
    any feature is read.
    """
    layout = detect_layout(config.path, config.prefix)
    root = store_root(config, output)
    store = None
    if config.store == "always" or (config.store == "auto" and layout.format == "csv"):
        store = open_store(config, root, client, layout)
    elif config.store == "auto":
        store = find_store(config, layout, root)
    elif layout.format == "csv":
        raise InputError(f"{config.path}: a CSV file cannot be read in place (features.store: never); "
                         "use features.store: auto or always, or convert it to Parquet or Feather")
    if store is not None:
        partitions: tuple[Partition, ...] = store.readers()
        kind, location, key, source = "store", store.path, store.key, store.source
        dropped = store.n_dropped_nonfinite
    else:
        sizes = chunk_sizes(layout)
        firsts = np.cumsum([0] + sizes[:-1]).tolist()
        partitions = tuple(FilePartition(layout, i, first, n, config.cell_size)
                           for i, (n, first) in enumerate(zip(sizes, firsts)))
        source = {"path": config.path, "ukey": input_fingerprint(config.path), "format": layout.format}
        settings = {"cell_size": config.cell_size, "prefix": config.prefix, "version": FILE_TABLE_VERSION,
                    "store_version": STORE_VERSION}
        key = fingerprint([source, settings])
        kind, location, dropped = "file", config.path, 0
        if not sum(sizes):
            raise InputError(f"{config.path}: no rows of features")
    bounds, grid_note = _scan(partitions, config, kind == "file", client)
    notes = tuple(layout_notes(layout)) + ((grid_note,) if grid_note else ())
    for note in notes:
        warn(note)
    return FeatureTable(kind=kind, location=location, key=key, source=source, cell_size=config.cell_size,
                        feature_names=layout.feature_columns, partitions=partitions, bounds=bounds,
                        n_dropped_on_ingest=dropped, notes=notes)


def gather_rows(table: FeatureTable, partition: np.ndarray, row: np.ndarray,
                client: Client) -> np.ndarray:
    """Feature rows by (partition, row), in the order given: one task per partition and
    column group."""
    partition, row = np.asarray(partition), np.asarray(row)
    X = np.empty((len(row), table.n_features), dtype=np.float32)
    tasks, futures = [], []
    for p in np.unique(partition):
        part = table.partitions[p]
        selected = partition == p
        for columns in part.column_groups(table.n_features):
            tasks.append((selected, columns))
            futures.append(client.submit(part.feature_block, row[selected], columns, pure=False))
    blocks = wait_with_progress(client, futures, "gather labelled cells")
    for (selected, columns), block in zip(tasks, blocks):
        X[selected, columns] = block
    return X


def nonfinite_columns(feature_names: tuple[str, ...], X: np.ndarray) -> str:
    """Which feature columns of the rows ``X`` hold NaN, infinite or missing values, in
    words: those that hold no finite value at all, else the one that holds the most."""
    bad = (~np.isfinite(X)).sum(axis=0)
    empty = [name for name, count in zip(feature_names, bad) if count == len(X)]
    if empty:
        return f"column(s) {listed(empty, 3)} hold no finite value in the {len(X):,} rows read"
    worst = int(np.argmax(bad))
    return f"column {feature_names[worst]} is not finite in {int(bad[worst]):,} of the {len(X):,} rows read"


def _scan(partitions: tuple[Partition, ...], config: FeaturesConfig, check_unique: bool,
          client: Client) -> tuple[tuple[tuple[float, float, float, float] | None, ...], str | None]:
    """Each partition's extent, reading its coordinates, and a note if no two cells touch;
    the cell size checked against the grid's spacing; with ``check_unique``, also that no
    two rows describe one cell (the store checked that when it was built)."""
    half = config.cell_size / 2
    summaries = wait_with_progress(client, [client.submit(_cell_summary, p, check_unique, pure=False)
                                            for p in partitions], "read cell coordinates")
    # a file's partitions are rows of the input, which a message can name
    spacings = [None if spacing is None else spacing.of_rows(p.first_row + np.arange(p.n_rows) if check_unique
                                                              else None)
                for p, (_, _, spacing) in zip(partitions, summaries)]
    note = check_cell_size(config.path, nearest(spacings), config.cell_size)
    if check_unique:
        ids = [s[1] for s in summaries]
        check_unique_cells(config.path, np.concatenate(ids),
                           np.concatenate([p.first_row + np.arange(len(i)) for p, i in zip(partitions, ids)]))
    bounds = tuple(None if b is None else (b[0] - half, b[1] - half, b[2] + half, b[3] + half)
                   for b, _, _ in summaries)
    return bounds, note


def _cell_summary(partition: Partition, with_ids: bool) -> tuple[tuple[float, ...] | None, np.ndarray | None,
                                                                 Spacing | None]:
    """A partition's extent, cell ids (``with_ids``) and the spacing of its centroids."""
    cells = partition.cells()
    ids = cells["cell_id"].to_numpy() if with_ids else None
    if cells.empty:
        return None, ids, None
    lat, lon = cells["lat"].to_numpy(), cells["lon"].to_numpy()
    bounds = (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
    return bounds, ids, grid_spacing(lat, lon)


def start_reading_columns(table: FeatureTable, features: list[int], client: Client) -> Callable[[], pd.DataFrame]:
    """Start reading ``lat``, ``lon`` and the given features (by position) of every row;
    call the result for them, as float32 columns named after the features.

    A task per partition reads only those columns, at a priority below every other
    task's: started before the cells are predicted, the tasks run when the workers have
    nothing else to do, as while the maps are drawn (a second at DR Congo's size).
    """
    futures = [client.submit(_columns_of, part, features, pure=False, priority=-1) for part in table.partitions]

    def read() -> pd.DataFrame:
        frames = wait_with_progress(client, futures, "read top features")
        return pd.concat(frames, ignore_index=True).rename(
            columns={i: table.feature_names[j] for i, j in enumerate(features)})

    return read


def _columns_of(partition: Partition, features: list[int]) -> pd.DataFrame:
    cells = partition.cells()
    frame = pd.DataFrame({"lat": cells["lat"].to_numpy(), "lon": cells["lon"].to_numpy()})
    for i, j in enumerate(features):
        frame[i] = partition.feature_block(None, slice(j, j + 1))[:, 0]
    return frame
