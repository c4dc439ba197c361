"""Hotspots: connected clusters of likely cells, the places to look at and visit.

A hotspot is a set of cells at or above a probability threshold, connected through
their edges or corners (8 neighbours), dissolved into one (multi)polygon. Hotspots are
ranked by their expected number of ASM cells, the sum of their probabilities: a large
cluster of fairly likely cells outranks a single very likely one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..read.grid import cell_area_km2
from .raster import CellRaster

EARTH_RADIUS_KM = 6371.0088
COLUMNS = ["hotspot_id", "rank", "n_cells", "area_km2", "expected_asm_cells", "mean_probability",
           "max_probability", "n_asm_labels", "distance_to_nearest_asm_label_km", "lat", "lon",
           "peak_lat", "peak_lon", "field_validation_candidate"]


def find_hotspots(probability: CellRaster, threshold: float, asm_lat: np.ndarray,
                  asm_lon: np.ndarray):
    """Hotspots of ``probability`` at or above ``threshold``, ranked.

    Parameters
    ----------
    probability : CellRaster
        Calibrated probability per cell, NaN where there is no cell.
    threshold : float
        Cells at or above it belong to hotspots.
    asm_lat, asm_lon : numpy.ndarray
        Known ASM labels: the points themselves.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per hotspot (:data:`COLUMNS`), EPSG:4326 polygons. ``n_asm_labels``
        counts the labels inside; ``distance_to_nearest_asm_label_km`` is the great-circle
        distance from the hotspot's nearest cell centre to the nearest label (0 when one is
        inside, NaN when there are no labels); ``lat``/``lon`` is the mean of its cell
        centres and ``peak_lat``/``peak_lon`` its most likely cell.
    """
    import geopandas as gpd
    from scipy import ndimage

    values = probability.values
    mask = np.nan_to_num(values, nan=-1.0) >= threshold
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return gpd.GeoDataFrame(columns=COLUMNS, geometry=[], crs="EPSG:4326")
    rows, cols = np.nonzero(mask)
    ids = labelled[rows, cols]
    p = values[rows, cols].astype(np.float64)
    n_cells = np.bincount(ids, minlength=n + 1)[1:]
    expected = np.bincount(ids, weights=p, minlength=n + 1)[1:]
    lat, lon = probability.centres(rows, cols)
    mean_lat = np.bincount(ids, weights=lat, minlength=n + 1)[1:] / n_cells
    mean_lon = np.bincount(ids, weights=lon, minlength=n + 1)[1:] / n_cells
    # The first cell of each hotspot in (id, -probability) order is its peak.
    order = np.lexsort((-p, ids))
    first = order[np.r_[0, np.flatnonzero(np.diff(ids[order])) + 1]]
    area = np.bincount(ids, weights=cell_areas_km2(probability)[rows], minlength=n + 1)[1:]
    n_labels, distance = _labels_near(probability, labelled, ids, lat, lon, n,
                                      np.asarray(asm_lat, float), np.asarray(asm_lon, float))
    table = pd.DataFrame({
        "hotspot_id": np.arange(1, n + 1), "n_cells": n_cells, "area_km2": area,
        "expected_asm_cells": expected, "mean_probability": expected / n_cells,
        "max_probability": p[first], "n_asm_labels": n_labels,
        "distance_to_nearest_asm_label_km": distance, "lat": mean_lat, "lon": mean_lon,
        "peak_lat": lat[first], "peak_lon": lon[first]})
    table["field_validation_candidate"] = table["n_asm_labels"] == 0
    table = table.round({"lat": 6, "lon": 6, "peak_lat": 6, "peak_lon": 6, "area_km2": 4})
    table = table.sort_values(["expected_asm_cells", "max_probability", "hotspot_id"],
                              ascending=[False, False, True], kind="stable")
    table.insert(1, "rank", np.arange(1, n + 1))
    geometry = cluster_polygons(probability, labelled, mask)
    return gpd.GeoDataFrame(table[COLUMNS].reset_index(drop=True),
                            geometry=geometry.loc[table["hotspot_id"]].to_numpy(), crs="EPSG:4326")


def cluster_polygons(raster: CellRaster, labelled: np.ndarray, mask: np.ndarray):
    """Each cluster's cells (``labelled``: its id per cell) dissolved into one
    (multi)polygon, indexed by id.

    Traced with 4-connectivity, then dissolved per id: cells meeting only at a corner
    become a valid MultiPolygon rather than a polygon touching itself.
    """
    import shapely
    from rasterio.features import shapes
    from shapely.geometry import shape

    pieces: dict[int, list] = {}
    for geometry, value in shapes(labelled.astype(np.int32), mask=mask, connectivity=4,
                                  transform=raster.transform()):
        pieces.setdefault(int(value), []).append(shape(geometry))
    return pd.Series({i: shapely.union_all(parts) for i, parts in pieces.items()})


def cell_areas_km2(raster: CellRaster) -> np.ndarray:
    """Geodesic area (WGS84) of one cell in each row of ``raster``."""
    rows = np.arange(raster.shape[0])
    return cell_area_km2(raster.centres(rows, np.zeros_like(rows))[0], raster.cell_size)


def _labels_near(raster: CellRaster, labelled: np.ndarray, ids: np.ndarray, lat: np.ndarray,
                 lon: np.ndarray, n: int, asm_lat: np.ndarray,
                 asm_lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels inside each hotspot, and each hotspot's distance to the nearest label."""
    if len(asm_lat) == 0:
        return np.zeros(n, dtype=np.int64), np.full(n, np.nan)
    from scipy.spatial import cKDTree

    # Cells are closed south and west, open north and east, as in the join; rounded so
    # that a label on an edge is on it, not a rounding error to one side.
    row = (np.ceil(np.round((raster.north - asm_lat) / raster.cell_size, 9)) - 1).astype(np.int64)
    col = np.floor(np.round((asm_lon - raster.west) / raster.cell_size, 9)).astype(np.int64)
    inside = (row >= 0) & (row < raster.shape[0]) & (col >= 0) & (col < raster.shape[1])
    holder = np.zeros(len(asm_lat), dtype=np.int64)
    holder[inside] = labelled[row[inside], col[inside]]
    n_labels = np.bincount(holder, minlength=n + 1)[1:]
    # The nearest label on the sphere is the nearest by straight chord between points on
    # the unit sphere: a k-d tree finds it on every core, where a haversine ball tree
    # took 6 s on one for a DR Congo-size map.
    chord, _ = cKDTree(_unit_vectors(asm_lat, asm_lon)).query(_unit_vectors(lat, lon), k=1, workers=-1)
    per_hotspot = pd.Series(2 * np.arcsin(np.minimum(chord / 2, 1.0)) * EARTH_RADIUS_KM).groupby(ids).min()
    distance = per_hotspot.reindex(np.arange(1, n + 1)).to_numpy(copy=True)
    distance[n_labels > 0] = 0.0
    return n_labels, distance


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the unit sphere, one row (x, y, z) per latitude and longitude in degrees."""
    lat, lon = np.deg2rad(lat), np.deg2rad(lon)
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
