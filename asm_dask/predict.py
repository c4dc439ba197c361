"""Predict stage: every cell's score and probability, streamed to partitioned GeoParquet.

One task per store partition reads that partition's features, scores and calibrates its
cells and writes ``predictions/part-NNNNN.parquet`` (cell square, ``cell_id``, ``lat``,
``lon``, ``score``, ``probability``; GeoParquet with a bbox covering column), so no
process ever holds more than one partition. Each file is written under a hidden
temporary name and renamed into place: a reader never sees half a file, and a task that
runs twice (its worker died) writes the same file twice, not two files.

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
from .calibrate import CalibratedModel
from .grid import CRS, cell_squares
from .progress import wait_with_progress
from .ridge import single_threaded
from .store import FeatureStore, read_cells, read_features, releases_arrow_memory

# Cells are scored in blocks of this many rows, converted to float64 on the way: exact
# sums without a float64 copy of the whole partition.
SCORE_BLOCK_ROWS = 1024


def model_hash(model: CalibratedModel) -> str:
    digest = hashlib.sha256(model.calibrator.method.encode())
    for array in model.parameters():
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def partition_file(index: int) -> str:
    return f"part-{index:05d}.parquet"


def predict_cells(store: FeatureStore, model: CalibratedModel, predictions_dir: str,
                  completed: set[int], client: Client, on_written: Callable[[int], None]) -> None:
    """Write the prediction file of every store partition not in ``completed``.

    ``on_written(index)`` runs on the client as each partition lands, so that the caller
    can record it.
    """
    os.makedirs(predictions_dir, exist_ok=True)
    todo = [i for i in range(len(store.partitions)) if i not in completed]
    # Sent to the workers once, not embedded in each of hundreds of tasks.
    [shared_model] = client.scatter([model], broadcast=True)
    futures = [client.submit(single_threaded, predict_partition, store.partition_path(i),
                             os.path.join(predictions_dir, partition_file(i)), shared_model,
                             store.cell_size, pure=False)
               for i in todo]
    wait_with_progress(client, futures, "predict cells",
                       on_result=lambda position, _: on_written(todo[position]))
    # A worker lost in the middle of a write leaves its hidden temporary file behind.
    for name in os.listdir(predictions_dir):
        if name.startswith("."):
            os.remove(os.path.join(predictions_dir, name))


@releases_arrow_memory
def predict_partition(store_path: str, out_path: str, model: CalibratedModel,
                      cell_size: float) -> int:
    """Score, calibrate and write one partition's cells; return how many."""
    cells = read_cells(store_path)
    features = read_features(store_path)
    score = np.empty(len(cells))
    for start in range(0, len(cells), SCORE_BLOCK_ROWS):
        block = features[start:start + SCORE_BLOCK_ROWS]
        score[start:start + len(block)] = model.decision_function(block)
    probability = model.calibrate(score)
    frame = gpd.GeoDataFrame(
        {"cell_id": cells["cell_id"], "lat": cells["lat"], "lon": cells["lon"],
         "score": score, "probability": probability},
        geometry=cell_squares(cells["lat"].to_numpy(), cells["lon"].to_numpy(), cell_size), crs=CRS)
    with replacing(out_path) as tmp:
        frame.to_parquet(tmp, index=False, write_covering_bbox=True, compression="zstd")
    return len(frame)


class RunManifest:
    """What a run read, how it was set, and which prediction partitions are written.

    Saved as ``manifest.json`` in the output folder after every change, atomically.
    """

    def __init__(self, path: str, run_key: str, description: dict[str, Any]):
        self.path = path
        self.data = {"run_key": run_key, **description, "model_hash": None,
                     "status": "running", "completed_partitions": []}

    def resume(self, predictions_dir: str, model_digest: str) -> set[int]:
        """Partitions that a previous run of the same key and model completed.

        Anything else in ``predictions_dir`` is stale and removed.
        """
        previous = _load_json(self.path)
        keep: set[int] = set()
        if previous and previous.get("run_key") == self.data["run_key"] \
                and previous.get("model_hash") == model_digest:
            keep = {i for i in previous.get("completed_partitions", [])
                    if os.path.exists(os.path.join(predictions_dir, partition_file(i)))}
        if os.path.isdir(predictions_dir):
            wanted = {partition_file(i) for i in keep}
            for name in os.listdir(predictions_dir):
                if name not in wanted:
                    target = os.path.join(predictions_dir, name)
                    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        self.data["model_hash"] = model_digest
        self.data["completed_partitions"] = sorted(keep)
        self.data["resumed_partitions"] = len(keep)
        self.save()
        return keep

    def mark_written(self, index: int) -> None:
        self.data["completed_partitions"].append(index)
        self.save()

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
