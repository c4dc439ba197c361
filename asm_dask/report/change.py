"""Where mining spread, and where it stopped: two maps made by one model compared cell by
cell.

* ``change.tif``: the change of each cell's calibrated probability (later minus earlier),
  a Cloud-Optimized GeoTIFF on the cell grid;
* ``change_hotspots.geojson`` / ``.csv``: connected clusters (edges or corners) of cells
  whose probability rose to the hotspot threshold or above (``new``: ASM likely where it
  was not) or fell below it (``abandoned``), ranked by area, each with the two maps'
  names, its cells, area, mean change and centre;
* ``change.json``: the counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import storage
from .hotspots import cell_areas_km2, cluster_polygons
from .raster import rasterize_cells, write_cog

#: the change hotspots' columns, in order
COLUMNS = ["rank", "kind", "from_map", "to_map", "n_cells", "area_km2", "mean_probability_change", "lat", "lon"]


@dataclass(frozen=True)
class Change:
    """Two maps compared: the change clusters and the counts of ``change.json``."""

    hotspots: object  #: a GeoDataFrame of :data:`COLUMNS`
    counts: dict


def map_change(earlier: pd.DataFrame, later: pd.DataFrame, cell_size: float, threshold: float,
               names: tuple[str, str]) -> tuple[object, Change]:
    """The change raster and clusters from ``earlier`` to ``later`` (each ``cell_id``,
    ``lat``, ``lon``, ``probability``), over the cells both hold."""
    import geopandas as gpd
    from scipy import ndimage

    both = earlier.merge(later[["cell_id", "probability"]], on="cell_id", suffixes=("_from", "_to"))
    delta = both["probability_to"].to_numpy() - both["probability_from"].to_numpy()
    raster = rasterize_cells(both["lat"].to_numpy(), both["lon"].to_numpy(), delta, cell_size)
    before = rasterize_cells(both["lat"].to_numpy(), both["lon"].to_numpy(), both["probability_from"].to_numpy(),
                             cell_size, frame=raster).values
    after = before + np.nan_to_num(raster.values)
    areas = cell_areas_km2(raster)
    tables, geometries = [], []
    changed = {"new": (before < threshold) & (after >= threshold),
               "abandoned": (before >= threshold) & (after < threshold)}
    for kind, mask in changed.items():
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if not n:
            continue
        rows, cols = np.nonzero(mask)
        ids = labelled[rows, cols]
        n_cells = np.bincount(ids, minlength=n + 1)[1:]
        lat, lon = raster.centres(rows, cols)
        tables.append(pd.DataFrame({
            "id": np.arange(1, n + 1), "kind": kind, "from_map": names[0], "to_map": names[1], "n_cells": n_cells,
            "area_km2": np.bincount(ids, weights=areas[rows], minlength=n + 1)[1:].round(4),
            "mean_probability_change": np.bincount(ids, weights=raster.values[rows, cols], minlength=n + 1)[1:]
            / n_cells,
            "lat": (np.bincount(ids, weights=lat, minlength=n + 1)[1:] / n_cells).round(6),
            "lon": (np.bincount(ids, weights=lon, minlength=n + 1)[1:] / n_cells).round(6)}))
        geometries.append(cluster_polygons(raster, labelled, mask).loc[np.arange(1, n + 1)].to_numpy())
    if tables:
        table = pd.concat(tables, ignore_index=True)
        geometry = np.concatenate(geometries)
        order = table.sort_values(["area_km2", "n_cells"], ascending=False, kind="stable").index
        table, geometry = table.loc[order].reset_index(drop=True), geometry[order]
        table.insert(0, "rank", np.arange(1, len(table) + 1))
        hotspots = gpd.GeoDataFrame(table[COLUMNS], geometry=geometry, crs="EPSG:4326")
    else:
        hotspots = gpd.GeoDataFrame(columns=COLUMNS, geometry=[], crs="EPSG:4326")
    new, gone = changed["new"], changed["abandoned"]
    area_of = areas[:, None] * np.ones(raster.shape[1])
    counts = {"from_map": names[0], "to_map": names[1], "hotspot_threshold": threshold,
              "n_cells_compared": len(both), "n_cells_only_in_one_map": len(earlier) + len(later) - 2 * len(both),
              "n_new_cells": int(new.sum()), "n_abandoned_cells": int(gone.sum()),
              "new_area_km2": float(area_of[new].sum()), "abandoned_area_km2": float(area_of[gone].sum()),
              "n_new_clusters": int((hotspots["kind"] == "new").sum()),
              "n_abandoned_clusters": int((hotspots["kind"] == "abandoned").sum()),
              "mean_probability_change": float(delta.mean()) if len(delta) else float("nan")}
    return raster, Change(hotspots, counts)


def write_change(folder: str, raster: object, change: Change) -> dict[str, str]:
    """``change.tif``, ``change_hotspots.geojson``/``.csv`` and ``change.json`` in ``folder``."""
    files = {"change_tif": storage.join(folder, "change.tif"),
             "change_hotspots_geojson": storage.join(folder, "change_hotspots.geojson"),
             "change_hotspots_csv": storage.join(folder, "change_hotspots.csv"),
             "change_json": storage.join(folder, "change.json")}
    storage.make_folder(folder)
    write_cog(raster, files["change_tif"], "change of the calibrated ASM probability")
    storage.write_text(files["change_hotspots_geojson"], change.hotspots.to_json(na="null", drop_id=True))
    storage.write_text(files["change_hotspots_csv"], change.hotspots.drop(columns="geometry").to_csv(index=False))
    storage.write_text(files["change_json"], json.dumps(change.counts, indent=1))
    return files
