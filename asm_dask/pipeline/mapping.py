"""What a run and a prediction share: every cell predicted and the maps drawn.

:func:`predict_and_map` predicts every partition of a feature table that the output
folder does not hold yet (resuming what an interrupted command wrote, as the manifest
records it), then draws the maps of the probability grid: ``probability.tif``, the
hotspots, the districts, the figure of the map and ``map.html``. A run then adds its
report; a prediction its model card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import storage
from ..errors import InputError
from ..model.classifier import CalibratedClassifier
from ..prediction.stream import partition_file, predict_cells, read_prediction_grid
from ..read.table import FeatureTable, gather_rows, nonfinite_columns
from ..records.manifest import RunManifest
from ..report.build import Maps, write_maps
from ..runtime.progress import stage
from .metrics import MapCounts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mapped:
    """Every cell predicted, and the maps drawn from them."""

    manifest: RunManifest
    #: ``lat``, ``lon``, ``probability`` of every predicted cell
    grid: pd.DataFrame
    maps: Maps
    counts: MapCounts


def predict_and_map(output: str, table: FeatureTable, model: CalibratedClassifier, run_key: str,
                    description: dict[str, Any], client: Any, *, hotspot_threshold: float, labels: pd.DataFrame,
                    boundaries: Any, timings: dict[str, float], report_timings: dict[str, float]) -> Mapped:
    """Predict every cell of ``table`` with ``model`` into ``output``, recording each
    partition in its manifest (keyed by ``run_key``, with ``description``), and draw the
    maps; the stages' seconds go into ``timings``, each map's into ``report_timings``.

    ``labels`` (``lat``, ``lon``, ``label``, optionally ``mine_type``) are shown on the
    map and measured against the hotspots; ``boundaries`` are district polygons or ``None``.
    """
    manifest = RunManifest(output, run_key, description)
    grid, cells = _predict_every_cell(table, model, manifest, client, timings)
    with stage(timings, "report"):
        maps = write_maps(output, grid, table.cell_size, labels, hotspot_threshold, boundaries, report_timings)
    return Mapped(manifest, grid, maps, MapCounts(**cells, **maps.counts))


def _predict_every_cell(table: FeatureTable, model: CalibratedClassifier, manifest: RunManifest, client: Any,
                        timings: dict[str, float]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predict every partition of ``table`` not already written for ``manifest``'s run key
    and ``model``, recording each as it lands; return the grid and its counts."""
    predictions_dir = storage.join(manifest.output, "predictions")
    done = manifest.resume(predictions_dir, model.fingerprint_, partition_file)
    if done:
        log.info("resuming: %d of %d prediction partitions already written", len(done), len(table.partitions))
    with stage(timings, "predict"):
        predict_cells(table, model, predictions_dir, done, client, on_written=manifest.mark_written)
    counts = manifest.counts()
    if counts["n_cells"] == 0:  # only when applying a model: a run's labelled cells are complete
        storage.remove(predictions_dir)
        storage.remove(manifest.path)
        first = table.partitions[0]
        sample = gather_rows(table, np.zeros(first.n_rows, dtype=int), np.arange(first.n_rows), client)
        raise InputError(f"{table.source['path']}: no cell has complete features: each of its "
                         f"{counts['n_dropped_nonfinite']:,} rows holds a NaN, infinite or missing value; "
                         f"{nonfinite_columns(table.feature_names, sample)}")
    grid = read_prediction_grid(predictions_dir)
    if len(grid) != counts["n_cells"] or counts["n_cells"] + counts["n_dropped_nonfinite"] != table.n_rows:
        raise RuntimeError(f"{predictions_dir}: {len(grid)} predicted cells, expected {counts['n_cells']} "
                           f"of {table.n_rows}")
    return grid, {"n_cells": counts["n_cells"],
                  "n_cells_dropped_nonfinite": table.n_dropped_on_ingest + counts["n_dropped_nonfinite"],
                  "n_cells_not_in_every_source": table.n_left_out_by_join,
                  "mean_probability": float(grid["probability"].mean())}
