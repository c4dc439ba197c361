"""Build a feature store: the input's chunks read in parallel on the cluster, checked,
and written as store partitions (:mod:`asm_dask.read.store_format`).

Rows with a non-finite feature are left out, counted and the first few named; two rows
for one cell are an error. A chunk larger than a partition (pandas writes Feather batches
of 1 GB) is unpacked a group of columns at a time, so no task holds it whole.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa
from distributed import Client

from .. import storage
from ..errors import InputError
from ..runtime.progress import wait_with_progress
from .csv_chunks import iter_csv_chunks
from .features import (
    FeatureChunk,
    FeatureLayout,
    chunk_sizes,
    read_chunk,
    read_feature_columns,
    releases_arrow_memory,
    to_matrix,
)
from .grid import cell_ids, check_cell_size, check_unique_cells, grid_spacing, nearest
from .store_format import MANIFEST, FeatureStore, PartitionFile, read_batch, write_batch

#: bytes of features in a store partition
PARTITION_BYTES = 128 << 20


def ingest(layout: FeatureLayout, partial: str, final: str, rows: int, cell_size: float,
           source: dict[str, Any], client: Client) -> FeatureStore:
    """Write the store of ``layout``'s features into ``partial`` (its manifest last), as
    the store that will be at ``final``: partitions of ``rows`` rows, cells of ``cell_size``."""
    scratch = storage.join(partial, ".unpacked")
    futures, chunk_of_task = [], []
    if layout.format == "csv":
        futures = [client.submit(_ingest_csv, layout, partial, rows, cell_size, pure=False)]
        chunk_of_task = [None]
    else:
        sizes = chunk_sizes(layout)
        for index, (n_rows, first_row) in enumerate(zip(sizes, np.cumsum([0] + sizes[:-1]).tolist())):
            if n_rows <= rows:
                tasks = [client.submit(_ingest_chunk, layout, index, first_row, partial, rows,
                                       cell_size, pure=False)]
                chunk_of_task.append(None)
            else:
                tasks = _ingest_large_chunk(layout, index, n_rows, first_row, partial,
                                            _scratch_prefix(scratch, index), rows, cell_size, client)
                chunk_of_task += [index] * len(tasks)
            futures += tasks
    unfinished = Counter(i for i in chunk_of_task if i is not None)

    def discard_scratch(position: int, _) -> None:
        # A chunk's unpacked files are as large as the chunk: delete them as soon as its
        # partitions are written, or a big country would need its size again on disk.
        index = chunk_of_task[position]
        if index is not None:
            unfinished[index] -= 1
            if not unfinished[index]:
                prefix = os.path.basename(_scratch_prefix(scratch, index))
                for name in storage.list_names(scratch):
                    if name.startswith(prefix):
                        storage.remove(storage.join(scratch, name))

    results = wait_with_progress(client, futures, "ingest features", on_result=discard_scratch)
    storage.remove(scratch)
    parts = [p for r in results for p in r["partitions"]]
    if not parts:
        raise InputError(f"{layout.path}: no rows with complete features")
    # Overlapping cells first: their ids repeat, and a cell size too large is the cause to name.
    check_cell_size(layout.path, nearest([r["spacing"] for r in results]), cell_size)
    check_unique_cells(layout.path, np.concatenate([r["cell_ids"] for r in results]),
                       np.concatenate([r["input_rows"] for r in results]))
    dropped = [x for r in results for x in r["dropped_examples"]]
    store = FeatureStore(
        path=final, source=source, cell_size=cell_size, feature_names=layout.feature_columns,
        partitions=tuple(parts), n_dropped_nonfinite=sum(r["n_dropped"] for r in results),
        dropped_examples=tuple(dropped[:10]))
    meta = asdict(store)
    meta.pop("path")
    storage.write_text(storage.join(partial, MANIFEST), json.dumps(meta))
    return store


@releases_arrow_memory
def _ingest_chunk(layout: FeatureLayout, index: int, first_row: int, out_dir: str, rows: int,
                  cell_size: float) -> dict[str, Any]:
    return _write_chunk(read_chunk(layout, index, first_row), index, out_dir, rows, cell_size)


def _scratch_prefix(scratch: str, index: int) -> str:
    return storage.join(scratch, f"chunk-{index:05d}-")


def _ingest_large_chunk(layout: FeatureLayout, index: int, n_rows: int, first_row: int,
                        out_dir: str, scratch_prefix: str, rows: int, cell_size: float,
                        client: Client) -> list:
    """Tasks that ingest a chunk larger than a partition without holding it whole.

    pandas writes Feather batches of 64k rows, 1 GB at 4000 features, and Parquet row
    groups can be larger still. Decompressing one is all or nothing per column, so the
    chunk is first unpacked a group of columns at a time into uncompressed files, one per
    future partition; each partition then reads just its own files, with no
    decompression.
    """
    width = max(1, PARTITION_BYTES // (4 * n_rows))
    names = layout.feature_columns
    slices = [(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]
    coordinates = client.submit(_read_coordinates, layout, index, first_row, pure=False)
    unpacked = [client.submit(_unpack_columns, layout, index, names[start:start + width], slices,
                              f"{scratch_prefix}columns-{start:06d}", pure=False)
                for start in range(0, len(names), width)]
    return [client.submit(_ingest_rows, layout, index, first_row, start, stop, sub, coordinates,
                          unpacked, out_dir, cell_size, pure=False)
            for sub, (start, stop) in enumerate(slices)]


def _read_coordinates(layout: FeatureLayout, index: int, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's centroids, parsed and checked once for all of its partitions."""
    chunk = read_chunk(layout, index, first_row, features=())
    return chunk.lat, chunk.lon


@releases_arrow_memory
def _unpack_columns(layout: FeatureLayout, index: int, columns: tuple[str, ...],
                    slices: list[tuple[int, int]], prefix: str) -> list[str]:
    """Write ``columns`` of chunk ``index`` uncompressed, one file per row slice."""
    features = read_feature_columns(layout, index, columns)
    storage.make_folder(os.path.dirname(prefix))
    paths = []
    for sub, (start, stop) in enumerate(slices):
        paths.append(f"{prefix}-rows-{sub:04d}.arrow")
        write_batch(paths[-1], features.slice(start, stop - start))
    return paths


@releases_arrow_memory
def _ingest_rows(layout: FeatureLayout, index: int, first_row: int, start: int, stop: int, sub: int,
                 coordinates: tuple[np.ndarray, np.ndarray], unpacked: list[list[str]], out_dir: str,
                 cell_size: float) -> dict[str, Any]:
    """Write rows ``start:stop`` of a chunk, as partition ``sub``, from its unpacked columns."""
    lat, lon = coordinates
    columns = [column for group in unpacked for column in read_batch(group[sub]).columns]
    chunk = FeatureChunk(first_row + start, lat[start:stop], lon[start:stop],
                         pa.RecordBatch.from_arrays(columns, names=list(layout.feature_columns)))
    return _write_chunk(chunk, index, out_dir, stop - start, cell_size, first_sub=sub)


@releases_arrow_memory
def _ingest_csv(layout: FeatureLayout, out_dir: str, rows: int, cell_size: float) -> dict[str, Any]:
    results = [_write_chunk(chunk, i, out_dir, rows, cell_size)
               for i, chunk in enumerate(iter_csv_chunks(layout))]
    return {"partitions": [p for r in results for p in r["partitions"]],
            "cell_ids": np.concatenate([r["cell_ids"] for r in results] or [np.empty(0, np.int64)]),
            "input_rows": np.concatenate([r["input_rows"] for r in results] or [np.empty(0, np.int64)]),
            "n_dropped": sum(r["n_dropped"] for r in results),
            "dropped_examples": [x for r in results for x in r["dropped_examples"]][:10],
            "spacing": nearest([r["spacing"] for r in results])}


def _write_chunk(chunk: FeatureChunk, index: int, out_dir: str, rows: int, cell_size: float,
                 first_sub: int = 0) -> dict[str, Any]:
    """Drop rows with non-finite features, add cell ids, write partitions of ``rows`` rows,
    numbered from ``first_sub`` within chunk ``index``."""
    features = to_matrix(chunk.features)
    finite = np.isfinite(features).all(axis=1)
    input_rows = np.arange(chunk.first_row, chunk.first_row + len(finite), dtype=np.int64)
    dropped_at = np.flatnonzero(~finite)
    dropped = [(int(input_rows[i]) + 1, float(chunk.lat[i]), float(chunk.lon[i])) for i in dropped_at[:10]]
    lat, lon = chunk.lat, chunk.lon
    if len(dropped_at):
        features, lat, lon, input_rows = features[finite], lat[finite], lon[finite], input_rows[finite]
    ids = cell_ids(lat, lon, cell_size)
    partitions = []
    for sub, start in enumerate(range(0, len(ids), rows), start=first_sub):
        stop = min(start + rows, len(ids))
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(features[start:stop].ravel()),
                                                    features.shape[1])
        batch = pa.RecordBatch.from_arrays(
            [pa.array(ids[start:stop]), pa.array(lat[start:stop]), pa.array(lon[start:stop]), vectors],
            names=["cell_id", "lat", "lon", "features"])
        name = f"part-{index:05d}-{sub:04d}.arrow"
        write_batch(storage.join(out_dir, name), batch)
        partitions.append(PartitionFile(name, stop - start))
    return {"partitions": partitions, "cell_ids": ids, "input_rows": input_rows,
            "n_dropped": len(dropped_at), "dropped_examples": dropped,
            "spacing": None if (spacing := grid_spacing(lat, lon)) is None else spacing.of_rows(input_rows)}


