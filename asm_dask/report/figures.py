"""Report stage: metrics and the figures a person reads.

The probability map is drawn as a raster (one pixel per cell) rather than as tens of
thousands of polygons, which is what made the notebook's map slow.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from ..storage import write_text, writing

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .raster import CellRaster


#: pixels per inch of every figure
DPI = 120

Plot = TypeVar("Plot", bound=Callable[..., None])
_drawing = threading.Lock()


def drawn_alone(plot: Plot) -> Plot:
    """Draw the figure whole before another starts, whichever thread draws it:
    matplotlib is not thread-safe, and a run draws the model's figures while its cells
    are predicted."""
    @functools.wraps(plot)
    def draw(*args: Any, **kwargs: Any) -> None:
        with _drawing:
            plot(*args, **kwargs)
    return draw  # type: ignore[return-value]


def write_metrics(path: str, metrics: dict[str, Any]) -> None:
    write_text(path, json.dumps(metrics, indent=2, sort_keys=False, default=_json_value))


def _json_value(value: Any) -> Any:
    """NumPy scalars and arrays as the JSON numbers and lists they hold."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


@drawn_alone
def plot_roc(path: str, y_test: np.ndarray, uncalibrated: np.ndarray, calibrated: np.ndarray,
             auc_uncalibrated: float, auc_calibrated: float) -> None:
    """Test-set ROC curves before and after calibration."""
    from sklearn.metrics import roc_curve

    fig, ax = _subplots(figsize=(5, 5))
    for scores, auc, style, name in ((uncalibrated, auc_uncalibrated, "b-", "Uncalibrated"),
                                     (calibrated, auc_calibrated, "r--", "Calibrated")):
        fpr, tpr, _ = roc_curve(y_test, scores)
        ax.plot(fpr, tpr, style, label=f"{name} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", label="Random")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(-0.01, 1.01),
           ylim=(-0.01, 1.01), title=f"Test ROC ({len(y_test)} labels, calibrated out of fold)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)


@drawn_alone
def plot_cv_curve(path: str, curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                  best_alpha: float, selected_by: str, block_size: float) -> None:
    """Mean cross-validated ROC AUC against alpha, one curve per fold grouping.

    ``curves`` maps a grouping (``cell``, ``block``) to (alphas, mean AUC, standard
    deviation over folds); the band is one standard deviation. The chosen alpha is marked.
    """
    fig, ax = _subplots(figsize=(7, 4))
    for (name, (alphas, mean, sd)), colour in zip(curves.items(), ("#1f77b4", "#d95f02")):
        order = np.argsort(alphas)
        alphas, mean, sd = np.asarray(alphas)[order], np.asarray(mean)[order], np.asarray(sd)[order]
        style = "-" if name == selected_by else "--"
        unit = f"{block_size:g}-degree blocks" if name == "block" else "cells"
        ax.plot(alphas, mean, style, marker=".", color=colour,
                label=f"folds of {unit}" + (" (selects alpha)" if name == selected_by else ""))
        ax.fill_between(alphas, mean - sd, mean + sd, color=colour, alpha=0.15)
    ax.axvline(best_alpha, color="k", linestyle=":", label=f"chosen alpha = {best_alpha:g}")
    ax.set_xscale("log")
    ax.set_xlim(min(a.min() for a, _, _ in curves.values()) / 3, max(a.max() for a, _, _ in curves.values()) * 3)
    ax.set(xlabel="ridge penalty alpha", ylabel="mean validation ROC AUC",
           title="Cross-validated ROC AUC over the penalty grid (band: ±1 sd over folds)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


@drawn_alone
def plot_reliability(path: str, table: pd.DataFrame, brier: float) -> None:
    """Reliability diagram: observed ASM frequency against mean predicted probability per
    bin of the test set, with each bin's count and a Wilson 95% interval (a bin of three
    labels says little; its interval shows how little)."""
    fig, ax = _subplots(figsize=(5, 5))
    filled = table[table["n"] > 0]
    n, observed = filled["n"].to_numpy(float), filled["observed_frequency"].to_numpy()
    z = 1.96
    centre = (observed + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(observed * (1 - observed) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    # Clipped at 0: for a bin of all ASM (or none) rounding can leave -1e-16.
    below, above = np.maximum(observed - (centre - half), 0), np.maximum(centre + half - observed, 0)
    ax.errorbar(filled["mean_predicted"], observed, yerr=[below, above],
                fmt="none", ecolor="#d95f02", alpha=0.5, capsize=3, label="95% interval (Wilson)")
    ax.plot(filled["mean_predicted"], observed, "-", color="#d95f02", alpha=0.6)
    ax.scatter(filled["mean_predicted"], observed, s=12 + 200 * n / n.max(), color="#d95f02",
               zorder=3, label=f"test set (Brier {brier:.3f}); area ~ labels")
    for _, row in filled.iterrows():
        ax.annotate(f"{int(row['n'])}", (row["mean_predicted"], row["observed_frequency"]),
                    textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlabel="mean predicted probability (bin)", ylabel="observed ASM frequency",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title="Reliability (labels per bin)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


@drawn_alone
def plot_label_counts(path: str, counts: pd.DataFrame) -> None:
    """Labels per class at each step: read, kept by the filters, joined, train, test.

    ``counts`` has one row per step and the columns ``0`` and ``1``.
    """
    fig, ax = _subplots(figsize=(7, 3.5))
    steps = list(counts.index)
    y = np.arange(len(steps))
    ax.barh(y - 0.2, counts[0], height=0.4, color="#1b9e77", label="0: not ASM")
    ax.barh(y + 0.2, counts[1], height=0.4, color="#d95f02", label="1: ASM")
    for offset, column in ((-0.2, 0), (0.2, 1)):
        for yi, value in zip(y, counts[column]):
            ax.text(value, yi + offset, f" {value}", va="center", fontsize=8)
    ax.set_yticks(y, steps)
    ax.invert_yaxis()
    ax.spines[["top", "right"]].set_visible(False)
    ax.set(xlabel="labels", title="Label counts by class")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


@drawn_alone
def plot_probability_map(path: str, raster: CellRaster, title: str,
                         positives: pd.DataFrame | None = None, sample: pd.DataFrame | None = None) -> None:
    """The calibrated probability of every cell as an image, one pixel per cell; with the
    ASM labels (``positives``), or with a probability ``sample`` (``lat``, ``lon``,
    ``label``) marked by what the field found."""
    _, south, _, north = raster.bounds
    aspect = _aspect(south, north)
    width = 9.0
    height = min(14.0, max(4.0, width * raster.shape[0] / raster.shape[1] * aspect))
    fig, ax = _subplots(figsize=(width, height))
    shown = _draw_raster(ax, raster, max(width, height), cmap="viridis", vmin=0, vmax=1, aspect=aspect)
    if positives is not None and len(positives):
        ax.scatter(positives["lon"], positives["lat"], s=4, c="red", edgecolors="none",
                   label="ASM labels", alpha=0.7)
        ax.legend(loc="lower left", fontsize=8, markerscale=3)
    if sample is not None and len(sample):
        for found, colour, name in ((1, "red", "sampled: ASM"), (0, "white", "sampled: not ASM")):
            cells = sample[sample["label"] == found]
            ax.scatter(cells["lon"], cells["lat"], s=10, c=colour, edgecolors="black", linewidths=0.4, label=name)
        ax.legend(loc="lower left", fontsize=8, markerscale=1.5)
    fig.colorbar(shown, ax=ax, label="Predicted ASM probability", shrink=0.8)
    ax.set(xlabel="Longitude", ylabel="Latitude", title=title)
    _save(fig, path)


def _draw_raster(ax: Any, raster: CellRaster, inches: float, **style: Any) -> Any:
    """``imshow`` of the raster on ``ax``, with at most as many cells along its longer side
    as ``inches`` (at least the axes' longer side) hold pixels. A whole country's raster
    is thinned first, as the nearest-cell resampling would thin it, rather than resampled
    whole twice, to lay the figure out and to save it: 3.9 s for DR Congo's four feature
    maps."""
    shown = raster.thinned(int(inches * DPI))
    west, south, east, north = shown.bounds
    return ax.imshow(shown.values, extent=(west, east, south, north), interpolation="nearest", **style)


def _aspect(south: float, north: float) -> float:
    """Height of a degree of latitude over one of longitude at mid-latitude: maps keep
    their shape."""
    return 1 / np.cos(np.deg2rad(np.clip((south + north) / 2, -80, 80)))


def _subplots(*args: Any, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A figure and its axes, made without pyplot: no backend is chosen for the process (a
    notebook that runs asm_dask keeps its own), and no figure is kept open in a registry."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig: Figure, path: str) -> None:
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")


@drawn_alone
def plot_feature_maps(path: str, rasters: dict[str, CellRaster]) -> None:
    """Small maps of features across the country, each on its own colour scale (2nd to
    98th percentile: a few extreme cells do not wash the map out)."""
    n = len(rasters)
    columns = min(n, 2)
    first = next(iter(rasters.values()))
    _, south, _, north = first.bounds
    aspect = _aspect(south, north)
    height = 4.5 * first.shape[0] / first.shape[1] * aspect
    rows = -(-n // columns)
    fig, axes = _subplots(rows, columns, figsize=(9, min(16, max(3, height) * rows)), squeeze=False)
    for ax, (name, raster) in zip(axes.flat, rasters.items()):
        values = raster.values
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, [2, 98]) if finite.size else (0, 1)
        shown = _draw_raster(ax, raster, max(9 / columns, fig.get_figheight() / rows), cmap="magma", vmin=low,
                             vmax=high, aspect=aspect)
        fig.colorbar(shown, ax=ax, shrink=0.8)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    _save(fig, path)
