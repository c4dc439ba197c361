"""What a feature store is on disk: a manifest (``store.json``) and partitions, each an
uncompressed Arrow IPC file of one record batch with ``cell_id``, ``lat``, ``lon`` and
``features`` (a ``FixedSizeList<float32>``: a zero-copy 2-D NumPy array). See
:mod:`asm_dask.read.store` for why, and :mod:`asm_dask.read.ingest` for how one is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from .. import storage
from ..errors import InputError

#: changes when the partitions' layout does, so that no older store is read as this one
STORE_VERSION = 2
MANIFEST = "store.json"


@dataclass(frozen=True)
class PartitionFile:
    """A store partition as the manifest lists it; :class:`StorePartition` reads it."""

    file: str
    n_rows: int


@dataclass(frozen=True)
class FeatureStore:
    """An ingested feature table: where its partitions are and what they hold."""

    path: str
    source: dict[str, Any]
    cell_size: float
    feature_names: tuple[str, ...]
    partitions: tuple[PartitionFile, ...]
    n_dropped_nonfinite: int  #: input rows left out for NaN, infinite or missing features
    dropped_examples: tuple[tuple[int, float, float], ...]  #: (input row, lat, lon), first few

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_cells(self) -> int:
        return sum(p.n_rows for p in self.partitions)

    @property
    def key(self) -> str:
        return Path(self.path).name

    def partition_path(self, index: int) -> str:
        return storage.join(self.path, self.partitions[index].file)

    def readers(self) -> tuple[StorePartition, ...]:
        return tuple(StorePartition(self.partition_path(i), p.n_rows) for i, p in enumerate(self.partitions))


@dataclass(frozen=True)
class StorePartition:
    """One store partition, read the way every stage needs it (see :mod:`asm_dask.read.table`)."""

    path: str
    n_rows: int

    def cells(self) -> pd.DataFrame:
        return read_cells(self.path)

    def column_groups(self, n_features: int) -> list[slice]:
        # Rows are stored whole: reading a row's features together is the cheap way.
        return [slice(0, n_features)]

    def feature_block(self, rows: np.ndarray | None, columns: slice) -> np.ndarray:
        features = read_features(self.path)[:, columns]
        return features if rows is None else features[rows]

    def feature_columns(self, columns: slice) -> list[np.ndarray]:
        return list(np.ascontiguousarray(self.feature_block(None, columns).T))


def load_store(path: str) -> FeatureStore:
    """Open a complete store folder from its manifest."""
    meta = storage.read_json(storage.join(path, MANIFEST))
    if meta is None:
        raise InputError(f"{path}: feature store without a readable {MANIFEST}")
    return FeatureStore(
        path=path, source=meta["source"], cell_size=meta["cell_size"],
        feature_names=tuple(meta["feature_names"]),
        partitions=tuple(PartitionFile(p["file"], p["n_rows"]) for p in meta["partitions"]),
        n_dropped_nonfinite=meta["n_dropped_nonfinite"],
        dropped_examples=tuple(tuple(x) for x in meta["dropped_examples"]))


def read_cells(path: str) -> pd.DataFrame:
    """``cell_id``, ``lat`` and ``lon`` of one partition, without touching its features."""
    batch = read_batch(path)
    return pd.DataFrame({name: batch.column(name).to_numpy().copy()
                         for name in ("cell_id", "lat", "lon")})


def read_features(path: str) -> np.ndarray:
    """One partition's features as a zero-copy ``(n_cells, n_features)`` float32 matrix."""
    vectors = read_batch(path).column("features")
    return vectors.values.to_numpy().reshape(len(vectors), vectors.type.list_size)


def read_batch(path: str) -> pa.RecordBatch:
    local = storage.local_path(path)
    if local is None:  # an object is fetched whole: a partition is ~128 MB, read by one task
        return ipc.open_file(pa.py_buffer(storage.read_bytes(path))).get_batch(0)
    # The memory map stays alive as long as any array taken from it.
    return ipc.open_file(pa.memory_map(local)).get_batch(0)


def write_batch(path: str, batch: pa.RecordBatch) -> None:
    """One record batch as an uncompressed Arrow IPC file, streamed to a local disk or
    uploaded whole."""
    local = storage.local_path(path)
    if local is not None:
        with ipc.new_file(local, batch.schema) as writer:
            writer.write_batch(batch)
        return
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    storage.write_bytes(path, sink.getvalue().to_pybytes())


