"""Every file a person reads, written from the predictions and the fitted run.

Reads only the predictions' three grid columns (``lat``, ``lon``, ``probability``) and,
for the feature maps, a few feature columns: the report costs a small share of a run
at any country size.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import storage
from ..runtime.progress import timed
from .districts import district_totals
from .figures import (
    plot_cv_curve,
    plot_feature_maps,
    plot_label_counts,
    plot_probability_map,
    plot_reliability,
    plot_roc,
)
from .hotspots import find_hotspots
from .importance import PERMUTATION_REPEATS
from .page import TOP_ROWS, write_page
from .raster import probability_raster, rasterize_cells, write_cog
from .webmap import write_map
from .years import YearsReport, page_records, plot_series, plot_year_maps


@dataclass(frozen=True)
class HeldOut:
    """The test set's labels, scores and calibrated probabilities, and its reliability table."""

    y: np.ndarray
    scores: np.ndarray
    probability: np.ndarray
    reliability: pd.DataFrame


@dataclass(frozen=True)
class ReportInputs:
    #: the run's metrics, as metrics.json holds them
    metrics: dict[str, Any]
    cell_size: float
    held_out: HeldOut
    #: grouping -> (alphas, mean AUC, sd), see :func:`~asm_dask.report.figures.plot_cv_curve`
    cv_curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    label_counts: pd.DataFrame
    importance: pd.DataFrame
    #: ``lat``, ``lon`` and a column per feature to map
    top_features: pd.DataFrame
    hotspot_threshold: float
    #: what was read: ``labels``, ``features``, ``boundaries`` paths
    inputs: dict[str, str]
    #: the labels kept, as the map shows them (``lat``, ``lon``, ``label``...)
    labels: pd.DataFrame | None = None
    #: the probability sample's cells (``lat``, ``lon``, ``label``), or None without one
    sample: pd.DataFrame | None = None
    #: a run of a table per year: every year's maps, the changes, the series; else None
    years: YearsReport | None = None
    #: the model's figures, already drawn (:func:`draw_model_figures`): name -> file; None: drawn here
    model_figures: dict[str, str] | None = None


@dataclass(frozen=True)
class Maps:
    """What :func:`write_maps` drew, for the rest of the report."""

    raster: Any  #: :class:`~asm_dask.report.raster.CellRaster` of the probability
    hotspots: Any  #: ranked hotspots, a GeoDataFrame
    districts: Any  #: district totals, a GeoDataFrame, or ``None``
    #: the row of ``districts`` each predicted cell lies in (-1 for none), or ``None``
    cell_district: np.ndarray | None
    counts: dict[str, Any]  #: the maps' numbers, for ``metrics.json``

    @property
    def n_outside(self) -> int:
        """Predicted cells in no district."""
        return 0 if self.cell_district is None else int((self.cell_district < 0).sum())


def write_maps(out: str, grid: pd.DataFrame, cell_size: float, labels: pd.DataFrame, hotspot_threshold: float,
               boundaries: Any, timings: dict[str, float]) -> Maps:
    """Write the maps of a probability grid into ``out``: ``probability.tif`` (COG),
    ``hotspots.geojson``/``.csv``, ``admin_summary.*`` (with ``boundaries``),
    ``figures/probability_map.png`` and ``map.html``; the seconds each took go into ``timings``.

    ``labels``: known labels to show and to measure hotspots against (``lat``, ``lon``,
    ``label``, optionally ``mine_type``); empty when there are none.
    """
    storage.make_folder(storage.join(out, "figures"))
    title = f"Predicted ASM probability ({len(grid):,} cells)"
    with timed(timings, "probability raster"):
        raster = probability_raster(grid, cell_size)
    asm = labels[labels["label"] == 1]
    # The GeoTIFF's compression and the figure's PNG let go of the GIL: they are written
    # on threads of their own while this one finds the hotspots and draws the web map
    # (a DR Congo-size map: 3.4 s one after the other, 2.0 s so).
    with ThreadPoolExecutor(2, thread_name_prefix="asm-dask-maps") as beside:
        cog = beside.submit(_timed_call, timings, "probability.tif", write_cog, raster,
                            storage.join(out, "probability.tif"))
        figure = beside.submit(_timed_call, timings, "figures", plot_probability_map,
                               storage.join(out, "figures", "probability_map.png"), raster, title, positives=asm)
        with timed(timings, "hotspots"):
            hotspots = find_hotspots(raster, hotspot_threshold, asm["lat"].to_numpy(), asm["lon"].to_numpy())
            storage.write_text(storage.join(out, "hotspots.geojson"), hotspots.to_json(na="null", drop_id=True))
            _write_csv(storage.join(out, "hotspots.csv"), hotspots.drop(columns="geometry"))
        counts: dict[str, Any] = {"hotspot_threshold": hotspot_threshold, "n_hotspots": len(hotspots),
                                  "n_hotspots_without_asm_label": int(hotspots["field_validation_candidate"].sum())}
        districts, cell_district = None, None
        if boundaries is not None:
            with timed(timings, "districts"):
                districts, cell_district = district_totals(boundaries, grid)
                write_districts(out, districts)
            counts.update(n_districts=len(districts), n_cells_outside_districts=int((cell_district < 0).sum()))
        with timed(timings, "map.html"):
            write_map(storage.join(out, "map.html"), raster, hotspots, labels, districts, title=title)
        cog.result(), figure.result()  # their errors, if any, are the run's
    return Maps(raster, hotspots, districts, cell_district, counts)


def _timed_call(timings: dict[str, float], name: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with timed(timings, name):
        return function(*args, **kwargs)


def write_districts(out: str, districts: Any) -> None:
    """``admin_summary.csv`` and ``admin_summary.geojson``: the districts' totals."""
    _write_csv(storage.join(out, "admin_summary.csv"), districts.drop(columns="geometry"))
    storage.write_text(storage.join(out, "admin_summary.geojson"), districts.to_json(na="null", drop_id=True))


def write_report(out: str, r: ReportInputs, maps: Maps, timings: dict[str, float]) -> None:
    """Write the report files into ``out`` beside the maps: the figures,
    ``feature_importance.csv`` and ``report.html``; the seconds each took go into
    ``timings``. ``r.metrics`` are the run's, the maps' counts included."""
    _write_csv(storage.join(out, "feature_importance.csv"), r.importance)
    storage.make_folder(storage.join(out, "figures"))
    with timed(timings, "figures"):
        figures = _draw_figures(storage.join(out, "figures"), r, maps.raster, r.metrics)
    with timed(timings, "report.html"):
        write_page(storage.join(out, "report.html"), r.metrics, figures, maps.hotspots, r.importance,
                   maps.districts, maps.n_outside, r.hotspot_threshold, r.inputs, out, PERMUTATION_REPEATS,
                   years=None if r.years is None else page_records(r.years, TOP_ROWS))
    if r.years is not None:
        with timed(timings, "map.html"):
            write_years_map(storage.join(out, "map.html"), r.years, r.labels)


def write_years_map(path: str, years: YearsReport, labels: pd.DataFrame) -> None:
    """``map.html`` of a run of a table per year: the last year's map with its hotspots and
    districts, a layer for each earlier year and for each change."""
    last = years.maps[years.years[-1]]
    write_map(path, last.raster, last.hotspots, labels, last.districts,
              title=f"Predicted ASM probability, {years.years[0]} to {years.years[-1]}",
              earlier={str(year): years.maps[year].raster for year in years.years[:-1]},
              changes={f"{first} to {second}": change.hotspots for (first, second), change in years.changes.items()},
              layer_name=f"ASM probability {years.years[-1]}")


def draw_model_figures(folder: str, held: HeldOut, cv_curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                       label_counts: pd.DataFrame, fit: dict[str, Any]) -> dict[str, str]:
    """Draw the figures of the model alone into ``folder``: the test ROC, the CV curve, the
    reliability and the label counts; return name -> file. They need no map, so a run
    draws them while its cells are predicted. ``fit``: the metrics they quote, as
    ``metrics.json`` names them (test AUCs, Brier score, the chosen alpha, its folds)."""
    files = {name: storage.join(folder, f"{name}.png") for name in ("roc", "cv_auc", "reliability", "label_counts")}
    plot_roc(files["roc"], held.y, held.scores, held.probability,
             fit["test_auc_uncalibrated"], fit["test_auc_calibrated"])
    plot_cv_curve(files["cv_auc"], cv_curves, fit["best_alpha"], fit["alpha_selected_by"],
                  fit.get("blocked_cv_block_size_deg") or fit["block_size_deg"])
    plot_reliability(files["reliability"], held.reliability, fit["brier_test"])
    plot_label_counts(files["label_counts"], label_counts)
    return files


def _draw_figures(folder: str, r: ReportInputs, raster, metrics: dict[str, Any]) -> dict[str, str]:
    """Draw the model's figures into ``folder`` (the map is :func:`write_maps`'s); return
    name -> file of every figure."""
    files = dict(r.model_figures) if r.model_figures is not None else \
        draw_model_figures(folder, r.held_out, r.cv_curves, r.label_counts, metrics)
    files["probability_map"] = storage.join(folder, "probability_map.png")
    if r.years is not None:  # a run of a table per year has no map of its own: one per year
        plot_year_maps(files["probability_map"], r.years)
        files["years_series"] = storage.join(folder, "years_series.png")
        plot_series(files["years_series"], r.years)
    if r.sample is not None:
        files["sample_map"] = storage.join(folder, "sample_map.png")
        plot_probability_map(files["sample_map"], raster, "The probability sample on the map", sample=r.sample)
    names = [c for c in r.top_features.columns if c not in ("lat", "lon")]
    if names:
        files["feature_maps"] = storage.join(folder, "feature_maps.png")
        lat, lon = r.top_features["lat"].to_numpy(), r.top_features["lon"].to_numpy()
        plot_feature_maps(files["feature_maps"], {
            name: rasterize_cells(lat, lon, r.top_features[name].to_numpy(), r.cell_size, frame=raster)
            for name in names})
    return files


def _write_csv(path: str, frame: pd.DataFrame) -> None:
    with storage.writing(path) as tmp:
        frame.to_csv(tmp, index=False)
