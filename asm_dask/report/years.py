"""What a person reads of a run of a table per year: each year's map side by side, the
expected ASM area year after year (the country's and each district's, with the
probability sample's intervals), and where mining spread and stopped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .figures import _aspect, _draw_raster, _save, _subplots, drawn_alone

#: districts drawn in the time series: those of most expected ASM in the last year
MAX_SERIES_DISTRICTS = 8


@dataclass(frozen=True)
class YearsReport:
    """Every year's maps, the changes between years and the series of ``years.csv``."""

    maps: dict[int, Any]  #: year -> :class:`~asm_dask.report.build.Maps`
    changes: dict[tuple[int, int], Any]  #: (from, to) -> :class:`~asm_dask.report.change.Change`
    series: dict[str, pd.DataFrame | None]  #: ``country`` and ``districts`` (or None)

    @property
    def years(self) -> list[int]:
        return list(self.maps)

    def new_hotspots(self) -> pd.DataFrame:
        """The clusters of new ASM from the first year to the last, largest first."""
        first, last = self.years[0], self.years[-1]
        found = self.changes[(first, last)].hotspots
        return found[found["kind"] == "new"].drop(columns="geometry")

    def district_table(self) -> pd.DataFrame | None:
        """Expected ASM km² of each district (rows) in each year (columns), most in the last
        year first."""
        districts = self.series["districts"]
        if districts is None:
            return None
        table = districts.pivot_table(index="name", columns="year", values="expected_asm_km2", sort=False)
        return table.sort_values(self.years[-1], ascending=False, kind="stable")


@drawn_alone
def plot_year_maps(path: str, report: YearsReport) -> None:
    """Each year's calibrated probability, side by side on one colour scale."""
    rasters = [report.maps[year].raster for year in report.years]
    west, south, east, north = rasters[0].bounds
    aspect = _aspect(south, north)
    columns = min(len(rasters), 3)
    rows = int(np.ceil(len(rasters) / columns))
    height = 4.0 * rasters[0].shape[0] / rasters[0].shape[1] * aspect
    fig, axes = _subplots(rows, columns, figsize=(4.0 * columns + 1.5, min(14.0, max(3.0, height) * rows)),
                          squeeze=False)
    shown = None
    for ax, year, raster in zip(axes.ravel(), report.years, rasters):
        shown = _draw_raster(ax, raster, max(4.0, fig.get_figheight() / rows), cmap="viridis", vmin=0, vmax=1,
                             aspect=aspect)
        ax.set(title=str(year), xlabel="Longitude", ylabel="Latitude")
    for ax in axes.ravel()[len(rasters):]:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes.ravel()[len(rasters) - 1], label="Predicted ASM probability", shrink=0.8)
    _save(fig, path)


@drawn_alone
def plot_series(path: str, report: YearsReport) -> None:
    """The expected ASM area year after year: the country (with the design-based 95%
    interval where a year has a probability sample) and the districts of most ASM."""
    country = report.series["country"]
    table = report.district_table()
    fig, axes = _subplots(1, 1 if table is None else 2, figsize=(6 if table is None else 11, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(country["year"], country["expected_asm_km2"], "o-", color="#1f77b4", label="map: expected ASM km²")
    sampled = country["asm_km2_design"].notna()
    if sampled.any():
        rows = country[sampled]
        ax.errorbar(rows["year"], rows["asm_km2_design"],
                    yerr=[rows["asm_km2_design"] - rows["asm_km2_design_low"],
                          rows["asm_km2_design_high"] - rows["asm_km2_design"]],
                    fmt="s", color="#d95f02", capsize=4, label="probability sample: design-based, 95%")
    ax.set(xlabel="Year", ylabel="ASM area (km²)", title="The country", xticks=country["year"])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if table is not None:
        ax = axes[0, 1]
        for name, values in table.head(MAX_SERIES_DISTRICTS).iterrows():
            ax.plot(table.columns, values.to_numpy(), "o-", label=str(name))
        ax.set(xlabel="Year", ylabel="Expected ASM area (km²)", xticks=list(table.columns),
               title=f"Districts (the {min(len(table), MAX_SERIES_DISTRICTS)} of most ASM in {report.years[-1]})")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    _save(fig, path)


def page_records(report: YearsReport, top: int) -> dict[str, Any]:
    """What ``report.html`` shows of the years: the country's series, each change's
    counts, the largest new clusters, and the districts' series."""
    table = report.district_table()
    return {
        "years": report.years,
        "country": report.series["country"].to_dict(orient="records"),
        "changes": [change.counts for change in report.changes.values()],
        "new_hotspots": report.new_hotspots().head(top).to_dict(orient="records"),
        "first": report.years[0], "last": report.years[-1],
        "districts": None if table is None else
        [{"name": name, "values": values.tolist()} for name, values in table.head(top).iterrows()]}
