"""``report.html``: one self-contained page a person reads top to bottom.

Rendered from a Jinja2 template (``templates/report.html.j2``, autoescaped); figures are
embedded as data URLs, so the page needs no file beside it and no network.
"""

from __future__ import annotations

import base64
import datetime as dt
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd

from ..storage import read_bytes, write_text

#: rows of the hotspot, feature and district tables shown on the page
TOP_ROWS = 20

#: what each headline metric means, in the order shown
METRIC_MEANINGS = {
    "test_auc_calibrated": "How well the calibrated probability ranks ASM above not-ASM on the held-out "
                           "test labels (0.5 = chance, 1 = perfect).",
    "test_auc_ci95": "95% bootstrap interval of the test AUC, resampling whole blocks of nearby cells.",
    "test_auc_uncalibrated": "The same, for the selected model's raw score (calibration can only merge ranks).",
    "cell_cv_auc": "Mean cross-validated AUC over folds of whole cells, at the chosen penalty.",
    "blocked_cv_auc": "Mean cross-validated AUC over folds of spatial blocks: the honest estimate for "
                      "places the model has not seen nearby.",
    "brier_test": "Mean squared error of the probability on the test labels (lower is better).",
    "best_alpha": "The ridge penalty chosen by cross-validated AUC.",
    "oof_auc_calibration_set": "AUC of the pooled out-of-fold scores the calibration was fitted on.",
    "mean_probability": "Mean calibrated probability over every mapped cell.",
    "n_cells": "Cells mapped (features complete).",
    "n_cells_dropped_nonfinite": "Cells left out: a feature was missing or infinite.",
    "n_cells_not_in_every_source": "Cells left out: missing from one of the joined feature sources.",
}

COUNT_MEANINGS = [
    ("n_labels_read", "labels read", "rows of the labels file"),
    ("n_labels_kept", "labels kept", "after the filters (inspection, mine type, confidence)"),
    ("n_labels_joined", "labels on a cell", "joined to a grid cell with complete features"),
    ("n_labels_unmatched", "labels on no cell", "outside the grid or on a cell without features "
                                                "(listed in unmatched_labels.csv)"),
    ("n_train", "training labels", "fit the model and its calibration"),
    ("n_test", "test labels", "held out, whole cells or blocks, for the metrics"),
    ("n_cells", "cells mapped", "every cell with complete features"),
]

FILES = [
    ("report.html", "this page"),
    ("map.html", "interactive map; data layers work offline"),
    ("probability.tif", "Cloud-Optimized GeoTIFF of the probability, EPSG:4326, one pixel per cell"),
    ("predictions/", "GeoParquet: every cell's square, score and probability"),
    ("hotspots.geojson, hotspots.csv", "hotspots, ranked"),
    ("feature_importance.csv", "every feature, ranked"),
    ("admin_summary.csv, admin_summary.geojson", "district totals (when boundaries are given)"),
    ("metrics.json", "every number on this page and more"),
    ("model.json", "the fitted model: estimator, parameters, calibration; a linear model's coefficients "
                   "and intercept"),
    ("model.skops", "a model that is not linear, for skops (written only then)"),
    ("labelled_cells.csv, unmatched_labels.csv", "which label went where"),
    ("manifest.json", "inputs, settings, versions, timings"),
    ("figures/", "the figures as PNG"),
]


#: what a run of one table writes beside its report, and a run of a table per year in years/<year>/
ONE_TABLE_FILES = {"probability.tif", "predictions/", "hotspots.geojson, hotspots.csv",
                   "admin_summary.csv, admin_summary.geojson"}
#: what a run of a table per year adds to the output folder
YEARS_FILES = [
    ("years/<year>/", "each year's map, as asm-dask predict writes one: predictions, probability.tif, hotspots, "
                      "map.html, metrics.json"),
    ("changes/<from>-<to>/", "change.tif (the probability's change), change_hotspots.geojson/.csv (clusters of "
                             "new and abandoned ASM, largest first), change.json"),
    ("years.csv, district_years.csv", "the expected ASM area of each year, with the probability sample's "
                                      "estimates where a year has one"),
]


def write_page(path: str, metrics: dict[str, Any], figures: dict[str, str], hotspots: pd.DataFrame,
               importance: pd.DataFrame, districts: pd.DataFrame | None, n_outside: int,
               threshold: float, inputs: dict[str, str], output: str, repeats: int,
               years: dict[str, Any] | None = None) -> None:
    """Render ``report.html``; ``figures`` maps a name to a PNG file to embed; ``years``:
    a run of a table per year's series and changes
    (:func:`~asm_dask.report.years.page_records`)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("asm_dask.report", "templates"), autoescape=True,
                      undefined=StrictUndefined)
    page = env.get_template("report.html.j2").render(
        title=f"Artisanal and small-scale mining: predicted map ({metrics['n_cells']:,} cells)",
        version=version("asm_dask"), written=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        output=output, m=_Attributes(metrics), inputs=inputs, threshold=threshold,
        figures={name: _data_url(file) for name, file in figures.items()},
        counts=[(label, f"{metrics[key]:,}", meaning) for key, label, meaning in COUNT_MEANINGS
                if key in metrics],
        metric_rows=[(key, _format(metrics[key]), meaning) for key, meaning in METRIC_MEANINGS.items()
                     if key in metrics],
        n_hotspots=len(hotspots), n_candidates=int(hotspots["field_validation_candidate"].sum()),
        hotspots=_records(hotspots.head(TOP_ROWS)), features=_records(importance.head(TOP_ROWS)),
        repeats=repeats, districts=None if districts is None else _records(districts.head(TOP_ROWS)),
        n_outside=n_outside, years=years,
        files=[entry for entry in FILES if entry[0] not in ONE_TABLE_FILES] + YEARS_FILES if years else FILES)
    write_text(path, page)


class _Attributes(dict):
    """Metrics readable as ``m.name`` in the template, and ``is defined`` when absent."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.drop(columns="geometry", errors="ignore").to_dict(orient="records")


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "–".join(_format(v) for v in value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _data_url(path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(read_bytes(path)).decode("ascii")
