"""Read stage, several sources: feature tables on one grid joined by cell into one table.

A job's ``features`` may list several tables (the MOSAIKS features, embedding means,
an elevation raster pooled to the grid): each is opened as a table of its own
(:func:`asm_dask.read.table.open_table`, in place or through its store), and the first
gives the joined table its partitions. Nothing is copied: a joined partition is the
first table's partition with, for each other source, where each of its cells' rows
lies in that source (found from the cells' ids alone, before any feature is read), and
reads them when a stage asks for features. A source's columns are named
``<source name>.<column>``.

Only cells that every source holds are kept: the cells of the first table missing from
another source, and the cells of another source missing from the first, are counted
and named in the table's notes, which reach ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from distributed import Client

from ..config import FeaturesConfig
from ..errors import InputError, warn
from ..records.fingerprint import fingerprint
from ..runtime.progress import wait_with_progress
from .features import COLUMN_GROUP_BYTES
from .table import FeatureTable, Partition, open_table


@dataclass(frozen=True)
class SourceRows:
    """Where each row of a joined partition lies in one other source: the partitions of
    that source it touches, and for each row, which of them (``partition``) and where."""

    partitions: tuple[Partition, ...]
    partition: np.ndarray
    row: np.ndarray


@dataclass(frozen=True)
class JoinedPartition:
    """A partition of the first table, its rows that every source holds (``kept``), and
    those rows' features in every source, side by side (a :class:`~asm_dask.read.table.Partition`)."""

    first: Partition
    kept: np.ndarray  #: rows of ``first`` kept, in order
    others: tuple[SourceRows, ...]
    widths: tuple[int, ...]  #: features of each source, the first's first
    all_kept: bool  #: every row of ``first`` is kept: read it whole

    @property
    def n_rows(self) -> int:
        return len(self.kept)

    def cells(self) -> pd.DataFrame:
        cells = self.first.cells()
        return cells if self.all_kept else cells.iloc[self.kept].reset_index(drop=True)

    def column_groups(self, n_features: int) -> list[slice]:
        # A group never spans two sources: each is read from its own files.
        groups = list(self.first.column_groups(self.widths[0]))
        width = max(1, COLUMN_GROUP_BYTES // (4 * max(self.n_rows, 1)))
        start = self.widths[0]
        for n in self.widths[1:]:
            groups += [slice(a, min(a + width, start + n)) for a in range(start, start + n, width)]
            start += n
        return groups

    def feature_block(self, rows: np.ndarray | None, columns: slice) -> np.ndarray:
        selected = np.arange(self.n_rows) if rows is None else np.asarray(rows)
        start, stop = columns.start or 0, columns.stop
        out = np.empty((len(selected), stop - start), dtype=np.float32)
        low = 0
        for source, width in enumerate(self.widths):
            a, b = max(start, low), min(stop, low + width)
            if a < b:
                local, target = slice(a - low, b - low), slice(a - start, b - start)
                if source == 0:
                    whole = rows is None and self.all_kept
                    out[:, target] = self.first.feature_block(None if whole else self.kept[selected], local)
                else:
                    self._read_other(self.others[source - 1], selected, local, out[:, target])
            low += width
        return out

    def feature_columns(self, columns: slice) -> list[np.ndarray]:
        if self.all_kept and (columns.stop or 0) <= self.widths[0]:  # the first table's columns, read whole
            return self.first.feature_columns(columns)
        return list(np.ascontiguousarray(self.feature_block(None, columns).T))

    @staticmethod
    def _read_other(source: SourceRows, selected: np.ndarray, columns: slice, out: np.ndarray) -> None:
        partition, row = source.partition[selected], source.row[selected]
        for index in np.unique(partition):
            here = partition == index
            out[here] = source.partitions[index].feature_block(row[here], columns)


def open_sources(config: FeaturesConfig, output: str, client: Client) -> FeatureTable:
    """The feature table of ``config``: its one table, or its tables joined by cell.

    Each source is read as ``config`` says (in place or through its store, on the first
    table's grid); every check of :func:`~asm_dask.read.table.open_table` applies to each.
    """
    if not config.join:
        return open_table(config, output, client)
    names = [name for name, _ in config.tables()]
    return join_tables(names, [open_table(table, output, client) for _, table in config.tables()], client)


def join_tables(names: list[str], tables: list[FeatureTable], client: Client) -> FeatureTable:
    """``tables`` (named ``names``) joined by cell into one table with the first's partitions."""
    ids = [cell_ids_of(table, name, client) for name, table in zip(names, tables)]
    first_ids = np.concatenate(ids[0])
    everywhere = np.ones(len(first_ids), dtype=bool)
    found = []
    joined_notes = []
    for name, table, source_ids in zip(names[1:], tables[1:], ids[1:]):
        where = _locate(first_ids, source_ids)
        if not (where[0] >= 0).any():
            raise InputError(f"{table.source['path']}: none of its {table.n_rows:,} cells is a cell of {names[0]} "
                             f"({tables[0].source['path']}): tables joined by cell share one grid, of cells of "
                             f"{tables[0].cell_size:g} degrees centred where the first table's are")
        found.append(where)
        everywhere &= where[0] >= 0
        missing = int((where[0] < 0).sum())
        if missing:
            joined_notes.append(f"features: {missing:,} of the {len(first_ids):,} cells of {names[0]} are not "
                                f"in {name} ({table.source['path']}) and are left out")
        extra = table.n_rows - int(np.isin(np.concatenate(source_ids), first_ids).sum())
        if extra:
            joined_notes.append(f"features: {extra:,} cells of {name} are not in {names[0]} "
                                f"({tables[0].source['path']}) and are not read")
    for note in joined_notes:
        warn(note)
    partitions, start = [], 0
    widths = tuple(table.n_features for table in tables)
    for part, part_ids in zip(tables[0].partitions, ids[0]):
        stop = start + len(part_ids)
        kept = np.flatnonzero(everywhere[start:stop])
        others = tuple(_rows_in(table, where[0][start:stop][kept], where[1][start:stop][kept])
                       for table, where in zip(tables[1:], found))
        partitions.append(JoinedPartition(part, kept, others, widths, all_kept=len(kept) == len(part_ids)))
        start = stop
    left_out = int((~everywhere).sum())
    if left_out == len(first_ids):
        raise InputError(f"{tables[0].source['path']}: none of its cells is in every source "
                         f"({', '.join(names[1:])}): each holds other cells")
    first = tables[0]
    return FeatureTable(
        kind=first.kind, location=first.location,
        key=fingerprint([[name, table.key] for name, table in zip(names, tables)]),
        source={**first.source, "joined": [{"name": name, **table.source}
                                           for name, table in zip(names[1:], tables[1:])]},
        cell_size=first.cell_size,
        feature_names=tuple(f"{name}.{column}" for name, table in zip(names, tables)
                            for column in table.feature_names),
        partitions=tuple(partitions), bounds=first.bounds,
        n_dropped_on_ingest=sum(table.n_dropped_on_ingest for table in tables),
        notes=tuple(note for table in tables for note in table.notes) + tuple(joined_notes),
        n_left_out_by_join=left_out)


def cell_ids_of(table: FeatureTable, name: str, client: Client) -> list[np.ndarray]:
    """The cell ids of each partition of ``table`` (called ``name`` in the progress)."""
    futures = [client.submit(_ids_of, part, pure=False) for part in table.partitions]
    return wait_with_progress(client, futures, f"read the cells of {name}")


def _ids_of(partition: Partition) -> np.ndarray:
    return partition.cells()["cell_id"].to_numpy()


def _locate(ids: np.ndarray, source_ids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``ids``, the partition and row of the source holding it (-1, -1 if
    none); a table always has a row (:func:`~asm_dask.read.table.open_table`)."""
    every = np.concatenate(source_ids)
    partition = np.repeat(np.arange(len(source_ids)), [len(i) for i in source_ids])
    row = np.concatenate([np.arange(len(i)) for i in source_ids])
    order = np.argsort(every, kind="stable")
    hit = order[np.clip(np.searchsorted(every, ids, sorter=order), 0, len(every) - 1)]
    matched = every[hit] == ids
    return np.where(matched, partition[hit], -1), np.where(matched, row[hit], -1)


def _rows_in(table: FeatureTable, partition: np.ndarray, row: np.ndarray) -> SourceRows:
    """The rows a joined partition reads of ``table``, with only the partitions it touches."""
    touched, index = np.unique(partition, return_inverse=True)
    return SourceRows(tuple(table.partitions[i] for i in touched), index.astype(np.int32), row.astype(np.int64))
