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

Each file is written under a hidden temporary name and renamed into place: a reader
never sees half a file, and a task that runs twice (its worker died) writes the same
file twice, not two files.

Resuming: the run's manifest lists the partitions already written for a run key (a
fingerprint of inputs, settings and versions) and the model's hash. A run with the same
key and model skips them; any difference discards them all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Callable

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
from distributed import Client

from .atomic import replacing, write_atomic
from .calibrate import CalibratedEstimator, CalibratedModel
from .grid import CRS, cell_squares
from .progress import wait_with_progress
from .ridge import linear_scores, single_threaded
from .table import FeatureTable, Partition

# Cells are scored in blocks of this many rows, converted to float64 on the way: exact
# sums without a float64 copy of the whole partition.
SCORE_BLOCK_ROWS = 1024
#: partial sums added together by one task; more are added as a tree, in a fixed order
SUM_FAN_IN = 8


def model_hash(model: CalibratedModel | CalibratedEstimator) -> str:
    digest = hashlib.sha256(model.calibrator.method.encode())
    if isinstance(model, CalibratedEstimator):
        digest.update(model.fingerprint.encode())
        arrays = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for _, v in sorted(model.calibrator.params.items())]
    else:
        arrays = model.parameters()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def partition_file(index: int) -> str:
    return f"part-{index:05d}.parquet"


def predict_cells(table: FeatureTable, model: CalibratedModel | CalibratedEstimator, predictions_dir: str,
                  completed: set[int], client: Client,
                  on_written: Callable[[int, dict[str, int]], None]) -> None:
    """Write the prediction file of every table partition not in ``completed``.

    ``on_written(index, counts)`` runs on the client as each partition lands (``counts``:
    ``n_cells`` written, ``n_dropped_nonfinite``), so that the caller can record it.
    """
    os.makedirs(predictions_dir, exist_ok=True)
    todo = [i for i in range(len(table.partitions)) if i not in completed]
    # Sent to the workers once, not embedded in each of hundreds of tasks.
    [shared_model] = client.scatter([model], broadcast=True)
    futures = []
    for i in todo:
        part = table.partitions[i]
        out_path = os.path.join(predictions_dir, partition_file(i))
        if isinstance(model, CalibratedEstimator):
            futures.append(client.submit(single_threaded, write_partition_rows, part, table.n_features, out_path,
                                         shared_model, table.cell_size, pure=False))
            continue
        partials = [client.submit(single_threaded, partial_scores, part, columns, model.coef[columns],
                                  pure=False)
                    for columns in part.column_groups(table.n_features)]
        futures.append(client.submit(write_partition, part, _sum_in_order(client, partials), out_path,
                                     shared_model, table.cell_size, pure=False))
    wait_with_progress(client, futures, "predict cells",
                       on_result=lambda position, counts: on_written(todo[position], counts))
    # A worker lost in the middle of a write leaves its hidden temporary file behind.
    for name in os.listdir(predictions_dir):
        if name.startswith("."):
            os.remove(os.path.join(predictions_dir, name))


def partial_scores(partition: Partition, columns: slice, coef: np.ndarray) -> np.ndarray:
    """``X[:, columns] @ coef`` for every row of ``partition``; NaN or infinite where a
    feature is (0 x inf is NaN too, so no non-finite value goes unnoticed)."""
    block = partition.feature_block(None, columns)
    score = np.empty(len(block))
    for start in range(0, len(block), SCORE_BLOCK_ROWS):
        rows = block[start:start + SCORE_BLOCK_ROWS]
        score[start:start + len(rows)] = linear_scores(rows, coef, 0.0)
    return score


def write_partition_rows(partition: Partition, n_features: int, out_path: str, model: CalibratedEstimator,
                         cell_size: float) -> dict[str, int]:
    """Score whole rows of ``partition`` with a model that is not linear, then write them
    as :func:`write_partition` does."""
    X = np.empty((partition.n_rows, n_features), dtype=np.float32)
    for columns in partition.column_groups(n_features):
        X[:, columns] = partition.feature_block(None, columns)
    finite = np.isfinite(X).all(axis=1)
    if finite.all():
        score = model.decision_function(X)
    else:  # the rows left out get no score, and are counted
        score = np.full(len(X), np.nan)
        if finite.any():
            score[finite] = model.decision_function(X[finite])
    return _write_scored(partition, score, out_path, model, cell_size)


def write_partition(partition: Partition, score: np.ndarray, out_path: str, model: CalibratedModel,
                    cell_size: float) -> dict[str, int]:
    """Calibrate and write one partition's scored cells; return what was written and left out."""
    return _write_scored(partition, score + model.intercept, out_path, model, cell_size)


def _write_scored(partition: Partition, score: np.ndarray, out_path: str,
                  model: CalibratedModel | CalibratedEstimator, cell_size: float) -> dict[str, int]:
    """Write the cells of ``partition`` whose ``score`` is finite, with their probability."""
    cells = partition.cells()
    finite = np.isfinite(score)
    if not finite.all():
        cells, score = cells[finite], score[finite]
    frame = gpd.GeoDataFrame(
        {"cell_id": cells["cell_id"].to_numpy(), "lat": cells["lat"].to_numpy(),
         "lon": cells["lon"].to_numpy(), "score": score, "probability": model.calibrate(score)},
        geometry=cell_squares(cells["lat"].to_numpy(), cells["lon"].to_numpy(), cell_size), crs=CRS)
    with replacing(out_path) as tmp:
        frame.to_parquet(tmp, index=False, write_covering_bbox=True, compression="zstd")
    return {"n_cells": len(frame), "n_dropped_nonfinite": int((~finite).sum())}


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


class RunManifest:
    """What a run read, how it was set, and which prediction partitions are written.

    Saved as ``manifest.json`` in the output folder after every change, atomically.
    """

    def __init__(self, path: str, run_key: str, description: dict[str, Any]):
        self.path = path
        self.data = {"run_key": run_key, **description, "model_hash": None,
                     "status": "running", "completed_partitions": [], "partition_counts": {}}

    def resume(self, predictions_dir: str, model_digest: str) -> set[int]:
        """Partitions that a previous run of the same key and model completed.

        Anything else in ``predictions_dir`` is stale and removed.
        """
        previous = _load_json(self.path)
        keep: set[int] = set()
        if previous and previous.get("run_key") == self.data["run_key"] \
                and previous.get("model_hash") == model_digest:
            counts = previous.get("partition_counts", {})
            keep = {i for i in previous.get("completed_partitions", [])
                    if os.path.exists(os.path.join(predictions_dir, partition_file(i))) and str(i) in counts}
        if os.path.isdir(predictions_dir):
            wanted = {partition_file(i) for i in keep}
            for name in os.listdir(predictions_dir):
                if name not in wanted:
                    target = os.path.join(predictions_dir, name)
                    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        self.data["model_hash"] = model_digest
        self.data["completed_partitions"] = sorted(keep)
        self.data["partition_counts"] = {str(i): previous["partition_counts"][str(i)] for i in sorted(keep)}
        self.data["resumed_partitions"] = len(keep)
        self.save()
        return keep

    def mark_written(self, index: int, counts: dict[str, int]) -> None:
        self.data["completed_partitions"].append(index)
        self.data["partition_counts"][str(index)] = counts
        self.save()

    def counts(self) -> dict[str, int]:
        """Cells written and rows left out for non-finite features, over every partition."""
        counts = self.data["partition_counts"].values()
        return {name: sum(c[name] for c in counts) for name in ("n_cells", "n_dropped_nonfinite")}

    def finish(self, **extra: Any) -> None:
        self.data["completed_partitions"].sort()
        self.data.update(status="complete", **extra)
        self.save()

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str))


def _load_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_prediction_grid(predictions_dir: str) -> pd.DataFrame:
    """``lat``, ``lon`` and ``probability`` of every predicted cell (for the map)."""
    table = ds.dataset(predictions_dir, format="parquet").to_table(columns=["lat", "lon", "probability"])
    return table.to_pandas()
