"""Predict stage: every cell's score and probability, streamed to partitioned GeoParquet.

Each table partition becomes ``predictions/part-NNNNN.parquet`` (cell square,
``cell_id``, ``lat``, ``lon``, ``score``, ``probability``; GeoParquet with a bbox
covering column), so no process ever holds more than one partition. Ridge scores are
sums over features, so a partition is scored one column group at a time (a task each,
in parallel) and the groups' partial sums are added in a fixed order: the same scores
to the last bit on any number of workers. A model that is not linear (a tree ensemble)
needs whole rows: a task per partition reads its column groups into one float32 matrix
(the partition's size) and scores it. Rows with a non-finite feature get no score:
they are left out of the file and counted.

Each file is written whole (:mod:`asm_dask.storage`: renamed into place on a local disk,
uploaded in one request to object storage): a reader never sees half a file, and a task
that runs twice (its worker died) writes the same file twice, not two files.

Which partitions to write (resuming) is the run's bookkeeping: :mod:`asm_dask.records.manifest`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from distributed import Client

from .. import storage
from ..model.classifier import CalibratedClassifier
from ..model.numerics import column_sum, single_threaded
from ..read.features import releases_arrow_memory
from ..read.table import FeatureTable, Partition
from ..runtime.progress import wait_with_progress
from .geoparquet import prediction_schema, write_cell_predictions

#: partial sums added together by one task; more are added as a tree, in a fixed order
SUM_FAN_IN = 8


def partition_file(index: int) -> str:
    return f"part-{index:05d}.parquet"


def predict_cells(table: FeatureTable, model: CalibratedClassifier, predictions_dir: str,
                  completed: set[int], client: Client,
                  on_written: Callable[[int, dict[str, int]], None]) -> None:
    """Write the prediction file of every table partition not in ``completed``.

    ``on_written(index, counts)`` runs on the client as each partition lands (``counts``:
    ``n_cells`` written, ``n_dropped_nonfinite``), so that the caller can record it.
    """
    storage.make_folder(predictions_dir)
    todo = [i for i in range(len(table.partitions)) if i not in completed]
    # Sent to the workers once, not embedded in each of hundreds of tasks.
    [shared_model] = client.scatter([model], broadcast=True)
    schema = client.submit(prediction_schema, pure=False)  # beside the first sums, not after them
    futures = []
    for i in todo:
        part = table.partitions[i]
        out_path = storage.join(predictions_dir, partition_file(i))
        if not model.linear:
            futures.append(client.submit(single_threaded, write_partition_rows, part, table.n_features, out_path,
                                         shared_model, table.cell_size, schema, pure=False))
            continue
        # No BLAS in a linear model's sums, so no BLAS limit either: setting one first
        # scans the process's libraries, 0.1 s with both threads waiting.
        partials = [client.submit(partial_scores, part, columns, model.coef_[columns], pure=False)
                    for columns in part.column_groups(table.n_features)]
        futures.append(client.submit(write_partition, part, _sum_in_order(client, partials), out_path,
                                     shared_model, table.cell_size, schema, pure=False))
    wait_with_progress(client, futures, "predict cells",
                       on_result=lambda position, counts: on_written(todo[position], counts))
    # A worker lost in the middle of a local write leaves its hidden temporary file behind.
    for name in storage.list_names(predictions_dir):
        if name.startswith("."):
            storage.remove(storage.join(predictions_dir, name))


@releases_arrow_memory
def partial_scores(partition: Partition, columns: slice, coef: np.ndarray) -> np.ndarray:
    """``X[:, columns] @ coef`` for every row of ``partition``, column after column
    (:func:`~asm_dask.model.numerics.column_sum`); NaN or infinite where a feature is."""
    return column_sum(partition.feature_columns(columns), coef)


def write_partition_rows(partition: Partition, n_features: int, out_path: str, model: CalibratedClassifier,
                         cell_size: float, schema: pa.Schema) -> dict[str, int]:
    """Score whole rows of ``partition`` with a model that is not linear, then write them
    as :func:`write_partition` does."""
    X = np.empty((partition.n_rows, n_features), dtype=np.float32)
    for columns in partition.column_groups(n_features):
        X[:, columns] = partition.feature_block(None, columns)
    finite = np.isfinite(X).all(axis=1)
    if finite.all():
        score = model.score_matrix(X)
    else:  # the rows left out get no score, and are counted
        score = np.full(len(X), np.nan)
        if finite.any():
            score[finite] = model.score_matrix(X[finite])
    return _write_scored(partition, score, out_path, model, cell_size, schema)


def write_partition(partition: Partition, score: np.ndarray, out_path: str, model: CalibratedClassifier,
                    cell_size: float, schema: pa.Schema) -> dict[str, int]:
    """Calibrate and write one partition's scored cells; return what was written and left out."""
    return _write_scored(partition, score + model.intercept_, out_path, model, cell_size, schema)


def _write_scored(partition: Partition, score: np.ndarray, out_path: str,
                  model: CalibratedClassifier, cell_size: float, schema: pa.Schema) -> dict[str, int]:
    """Write the cells of ``partition`` whose ``score`` is finite, with their probability."""
    cells = partition.cells()
    finite = np.isfinite(score)
    if not finite.all():
        cells, score = cells[finite], score[finite]
    storage.write_bytes(out_path, write_cell_predictions(cells["cell_id"].to_numpy(), cells["lat"].to_numpy(),
                                                         cells["lon"].to_numpy(), score, model.calibrate(score),
                                                         cell_size, schema))
    return {"n_cells": len(cells), "n_dropped_nonfinite": int((~finite).sum())}


def _sum_in_order(client: Client, partials: list) -> Any:
    """The sum of ``partials`` (futures of arrays), added in the same order on every run."""
    while len(partials) > 1:
        partials = [client.submit(_add, *partials[i:i + SUM_FAN_IN], pure=False)
                    for i in range(0, len(partials), SUM_FAN_IN)]
    return partials[0]


def _add(*arrays: np.ndarray) -> np.ndarray:
    total = arrays[0].copy()
    for array in arrays[1:]:
        total += array
    return total


def read_prediction_grid(predictions_dir: str) -> pd.DataFrame:
    """``cell_id``, ``lat``, ``lon`` and ``probability`` of every predicted cell (for the maps)."""
    fs, path = storage.filesystem(predictions_dir)
    table = ds.dataset(path, format="parquet", filesystem=fs).to_table(columns=["cell_id", "lat", "lon",
                                                                               "probability"])
    return table.to_pandas()
