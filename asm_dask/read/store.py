"""The feature store: the input features converted once into partitions laid out for this job.

Why a store: the inputs come as CSV (slow to parse), compressed Feather with batches of
64k rows (1 GB each at 4000 features) or Parquet, and every stage reads the features in
a different way. The store holds them as uncompressed Arrow IPC files, one per partition
of about 128 MB, each with ``cell_id``, ``lat``, ``lon`` and ``features``, a
``FixedSizeList<float32>`` holding each cell's features side by side (row-major: a
zero-copy 2-D NumPy array). Memory-mapped, a stage reads only what it touches: the join
three small columns of each partition, the training gather the pages of a few rows (a
column per feature would put every row on a page of every column), the prediction one
partition at a time.

A store is keyed by a fingerprint of the input file (its path, size and modification
time) and of the settings that shape it, so a changed input or setting never reuses it.
It is written to a temporary folder and renamed into place when complete and valid.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
from distributed import Client

from .. import storage
from ..config import FeaturesConfig
from ..errors import InputError
from ..records.fingerprint import fingerprint
from ..records.lock import process_alive
from ..runtime.progress import wait_with_progress
from .features import (
    FeatureChunk,
    FeatureLayout,
    chunk_sizes,
    detect_layout,
    input_fingerprint,
    iter_csv_chunks,
    read_chunk,
    read_feature_columns,
    releases_arrow_memory,
    to_matrix,
)
from .grid import cell_ids, check_unique_cells

STORE_VERSION = 2
PARTITION_BYTES = 128 << 20
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


def store_key(config: FeaturesConfig, layout: FeatureLayout) -> tuple[str, dict[str, Any], int]:
    """The store's key for ``config``'s features, their fingerprint and rows per partition."""
    rows = config.rows_per_partition or max(1024, PARTITION_BYTES // (4 * len(layout.feature_columns)))
    source = {"path": config.path, "ukey": input_fingerprint(config.path), "format": layout.format}
    settings = {"cell_size": config.cell_size, "prefix": config.prefix,
                "rows_per_partition": rows, "version": STORE_VERSION}
    key = fingerprint([source, settings])
    return key, source, rows


def find_store(config: FeaturesConfig, layout: FeatureLayout, root: str) -> FeatureStore | None:
    """The complete store of ``config``'s features under ``root``, if one was built."""
    final = storage.join(root, store_key(config, layout)[0])
    return load_store(final) if storage.exists(storage.join(final, MANIFEST)) else None


def open_store(config: FeaturesConfig, root: str, client: Client,
               layout: FeatureLayout | None = None) -> FeatureStore:
    """The store for ``config``'s features under ``root``, ingesting them if needed.

    Raises
    ------
    InputError
        The features file is missing, unreadable, or holds bad values: an unparseable
        ``image_id``, a coordinate out of range, a non-numeric feature or two rows for
        the same cell. Nothing is left behind in ``root`` then.
    """
    layout = layout or detect_layout(config.path, config.prefix)
    key, source, rows = store_key(config, layout)
    final = storage.join(root, key)
    if storage.exists(storage.join(final, MANIFEST)):
        return load_store(final)
    if storage.is_url(root):
        return _build_in_place(layout, root, key, rows, config, source, client)
    _remove_abandoned_partials(root)
    made_root = not os.path.exists(root)
    partial = os.path.join(root, f".{key}.partial-{socket.gethostname()}-{os.getpid()}")
    try:
        os.makedirs(partial)
    except OSError as exc:
        raise InputError(f"{root}: cannot create the feature store here ({exc.strerror}); "
                         "set features.store_path to a writable folder") from None
    try:
        store = _ingest(layout, partial, final, rows, config.cell_size, source, client)
        os.replace(partial, final)
    except OSError:
        storage.remove(partial)
        if not storage.exists(storage.join(final, MANIFEST)):
            raise
        # Another run built the same store meanwhile: use it.
        return load_store(final)
    except BaseException:
        storage.remove(partial)
        if made_root and not storage.list_names(root):  # bad input leaves nothing behind
            storage.remove(root)
        raise
    _remove_stale_stores(root, keep=key, source_path=config.path)
    return store


def _build_in_place(layout: FeatureLayout, root: str, key: str, rows: int, config: FeaturesConfig,
                    source: dict[str, Any], client: Client) -> FeatureStore:
    """Build a store on object storage, where there is no rename: into its own folder,
    whose manifest, written last, is what makes it complete. What an abandoned build
    left there is removed first; a failed build removes what it wrote."""
    final = storage.join(root, key)
    storage.remove(final)
    try:
        store = _ingest(layout, final, final, rows, config.cell_size, source, client)
    except BaseException:
        storage.remove(final)
        raise
    _remove_stale_stores(root, keep=key, source_path=config.path)
    return store


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
    batch = _read(path)
    return pd.DataFrame({name: batch.column(name).to_numpy().copy()
                         for name in ("cell_id", "lat", "lon")})


def read_features(path: str) -> np.ndarray:
    """One partition's features as a zero-copy ``(n_cells, n_features)`` float32 matrix."""
    vectors = _read(path).column("features")
    return vectors.values.to_numpy().reshape(len(vectors), vectors.type.list_size)


def _read(path: str) -> pa.RecordBatch:
    local = storage.local_path(path)
    if local is None:  # an object is fetched whole: a partition is ~128 MB, read by one task
        return ipc.open_file(pa.py_buffer(storage.read_bytes(path))).get_batch(0)
    # The memory map stays alive as long as any array taken from it.
    return ipc.open_file(pa.memory_map(local)).get_batch(0)


def _write_arrow(path: str, batch: pa.RecordBatch) -> None:
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


def _ingest(layout: FeatureLayout, partial: str, final: str, rows: int, cell_size: float,
            source: dict[str, Any], client: Client) -> FeatureStore:
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
        _write_arrow(paths[-1], features.slice(start, stop - start))
    return paths


@releases_arrow_memory
def _ingest_rows(layout: FeatureLayout, index: int, first_row: int, start: int, stop: int, sub: int,
                 coordinates: tuple[np.ndarray, np.ndarray], unpacked: list[list[str]], out_dir: str,
                 cell_size: float) -> dict[str, Any]:
    """Write rows ``start:stop`` of a chunk, as partition ``sub``, from its unpacked columns."""
    lat, lon = coordinates
    columns = [column for group in unpacked for column in _read(group[sub]).columns]
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
            "dropped_examples": [x for r in results for x in r["dropped_examples"]][:10]}


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
        _write_arrow(storage.join(out_dir, name), batch)
        partitions.append(PartitionFile(name, stop - start))
    return {"partitions": partitions, "cell_ids": ids, "input_rows": input_rows,
            "n_dropped": len(dropped_at), "dropped_examples": dropped}


def _remove_abandoned_partials(root: str) -> None:
    # A run killed while ingesting leaves its partial store behind: up to the size of the
    # features. Its name says which process built it; remove it if that process is gone.
    host = socket.gethostname()
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        match = re.fullmatch(r"\.\w+\.partial-(.+)-(\d+)", entry)
        if match and match.group(1) == host and not process_alive(int(match.group(2))):
            storage.remove(os.path.join(root, entry))


def _remove_stale_stores(root: str, keep: str, source_path: str) -> None:
    # A store of the same file under another key is stale: the file or a setting changed.
    # Stores are large (30 GB for a big country), so they are not left to pile up.
    for entry in storage.list_names(root):
        if entry == keep or entry.startswith("."):
            continue
        meta = storage.read_json(storage.join(root, entry, MANIFEST))
        if meta is not None and meta["source"]["path"] == source_path:
            storage.remove(storage.join(root, entry))
