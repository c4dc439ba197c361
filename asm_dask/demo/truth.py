"""A run on a synthetic country, held to the country's known truth.

:func:`score_against_truth` measures how far a run's held-out ROC AUC is from what the
true probability scores on the same test labels, and how close its map is to the true
one; :func:`score_map_against_truth` does the same for a map predicted with a model
trained elsewhere.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np
import pandas as pd

from .country import DemoFiles


def score_against_truth(results: str | os.PathLike, files: DemoFiles) -> dict[str, Any]:
    """How a run on a synthetic country compares with the country's known truth.

    ``truth_test_auc`` is the ROC AUC of the true probabilities on the run's own test
    labels: what a perfect model of the truth would score there, on average. ``auc_gap``
    is how far the run's calibrated test AUC falls short of it (a finite test set can
    make it negative, by chance). Over all cells: the correlation between the
    predicted and the true probability, their mean absolute difference, and both means.
    """
    from asm_dask.model.evaluation import roc_auc

    results = pathlib.Path(results)
    metrics = json.loads((results / "metrics.json").read_text())
    test = pd.read_csv(results / "labelled_cells.csv").query("split == 'test'")
    test = test.merge(pd.read_csv(files.truth_labels), on="unique_id", how="left", validate="1:1")
    truth_auc = roc_auc(test["label"].to_numpy(), test["true_probability"].to_numpy())
    return {"test_auc_calibrated": metrics["test_auc_calibrated"], "truth_test_auc": truth_auc,
            "auc_gap": truth_auc - metrics["test_auc_calibrated"], "n_test_labels": len(test),
            **_compare_cells(results / "predictions", files, metrics["cell_size"])}


def score_map_against_truth(results: str | os.PathLike, files: DemoFiles, cell_size: float = 0.01) -> dict[str, Any]:
    """How a map predicted for a synthetic country (by ``asm-dask predict``, with a model
    trained elsewhere) compares with that country's truth.

    ``map_auc`` is the ROC AUC of the predicted probability of each label's cell on all of
    the country's labels that fall on a cell; ``truth_auc`` that of the labels' true
    probabilities on the same labels, and ``auc_gap`` the difference. Over all cells, as
    :func:`score_against_truth`.
    """
    from asm_dask.model.evaluation import roc_auc
    from asm_dask.read.grid import cell_ids

    results = pathlib.Path(results)
    labels = pd.read_csv(files.labels).merge(pd.read_csv(files.truth_labels), on="unique_id", validate="1:1")
    # The cell a label lies in: cell edges sit on whole multiples of the cell size.
    lat = (np.floor(labels["lat"].to_numpy() / cell_size) + 0.5) * cell_size
    lon = (np.floor(labels["lon"].to_numpy() / cell_size) + 0.5) * cell_size
    labels["cell_id"] = cell_ids(lat, lon, cell_size)
    predicted = pd.read_parquet(results / "predictions", columns=["cell_id", "probability"])
    on_cells = labels.merge(predicted, on="cell_id")
    y = on_cells["label"].to_numpy()
    map_auc = roc_auc(y, on_cells["probability"].to_numpy())
    truth_auc = roc_auc(y, on_cells["true_probability"].to_numpy())
    return {"map_auc": map_auc, "truth_auc": truth_auc, "auc_gap": truth_auc - map_auc,
            "n_labels": len(on_cells), **_compare_cells(results / "predictions", files, cell_size)}


def _compare_cells(predictions: pathlib.Path, files: DemoFiles, cell_size: float) -> dict[str, Any]:
    from asm_dask.read.grid import cell_ids

    predicted = pd.read_parquet(predictions, columns=["cell_id", "probability"])
    cells = pd.read_parquet(files.truth_cells)
    cells["cell_id"] = cell_ids(cells["lat"].to_numpy(), cells["lon"].to_numpy(), cell_size)
    both = predicted.merge(cells[["cell_id", "true_probability"]], on="cell_id", validate="1:1")
    if len(both) != len(predicted):
        raise ValueError(f"{predictions}: {len(predicted) - len(both)} predicted cells have no truth")
    p, t = both["probability"].to_numpy(), both["true_probability"].to_numpy()
    return {
        "cell_probability_correlation": float(np.corrcoef(p, t)[0, 1]),
        "cell_probability_mean_abs_error": float(np.abs(p - t).mean()),
        "mean_predicted_probability": float(p.mean()),
        "mean_true_probability": float(t.mean()),
    }
