"""District totals: how much likely mining each district (chiefdom, province...) holds.

Each cell belongs to the district its centroid falls in (a centroid on a shared border
goes to the first district in the file). Districts are ranked by their expected number of
ASM cells, the sum of their cells' probabilities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import BoundariesConfig
from ..errors import InputError
from ..read.polygons import read_polygons

#: cells assigned to districts per step: bounds the points held at once
CELLS_PER_STEP = 250_000
COLUMNS = ["rank", "name", "n_cells", "mean_probability", "expected_asm_cells", "area_km2"]


def read_boundaries(config: BoundariesConfig, cells_bounds: list[tuple[float, float, float, float]]):
    """The district polygons in EPSG:4326, checked before any work is done.

    ``cells_bounds`` holds (west, south, east, north) boxes that contain every cell: a
    boundary file none of whose polygons meets one of them overlaps no cell.
    """
    import geopandas as gpd
    import shapely

    path = config.path
    frame = read_polygons(path, "boundaries")
    if config.name_column not in frame.columns:
        raise InputError(f"{path}: no column {config.name_column!r} (report.boundaries.name_column); "
                         f"columns: {[c for c in frame.columns if c != frame.geometry.name]}")
    frame = gpd.GeoDataFrame({"name": frame[config.name_column].astype(str).to_numpy()},
                             geometry=frame.geometry.to_numpy(), crs="EPSG:4326")
    boxes = shapely.box(*np.asarray(cells_bounds, dtype=float).T)
    if not shapely.STRtree(boxes).query(frame.geometry.to_numpy(), predicate="intersects").size:
        west, south, east, north = (min(b[0] for b in cells_bounds), min(b[1] for b in cells_bounds),
                                    max(b[2] for b in cells_bounds), max(b[3] for b in cells_bounds))
        raise InputError(f"{path}: its {len(frame)} polygons overlap no cell of the features "
                         f"(cells span lon {west:.2f}..{east:.2f}, lat {south:.2f}..{north:.2f})")
    return frame.reset_index(drop=True)


def district_of(boundaries, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The row of ``boundaries`` each point (a cell's centroid) falls in, -1 for none; the
    first district in the file wins a point on a shared border."""
    import shapely

    tree = shapely.STRtree(boundaries.geometry.to_numpy())
    found = np.full(len(lon), -1, dtype=np.int64)
    for start in range(0, len(lon), CELLS_PER_STEP):
        points = shapely.points(lon[start:start + CELLS_PER_STEP], lat[start:start + CELLS_PER_STEP])
        point, district = tree.query(points, predicate="intersects")
        order = np.lexsort((district, point))
        point, district = point[order], district[order]
        first = np.ones(len(point), dtype=bool)
        first[1:] = point[1:] != point[:-1]
        found[start + point[first]] = district[first]
    return found


def district_totals(boundaries, grid: pd.DataFrame) -> tuple[object, np.ndarray]:
    """Per district: cells, mean and summed probability, geodesic area; ranked.

    Returns the districts (a GeoDataFrame with :data:`COLUMNS`) and the row of that table
    each cell of ``grid`` lies in (-1 for none: its centroid is in no district).
    """
    import geopandas as gpd
    from pyproj import Geod

    n_districts = len(boundaries)
    district = district_of(boundaries, grid["lon"].to_numpy(), grid["lat"].to_numpy())
    inside = district >= 0
    n_cells = np.bincount(district[inside], minlength=n_districts)
    total = np.bincount(district[inside], weights=grid["probability"].to_numpy()[inside], minlength=n_districts)
    geod = Geod(ellps="WGS84")
    area = np.array([abs(geod.geometry_area_perimeter(g)[0]) / 1e6 for g in boundaries.geometry])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_cells > 0, total / n_cells, np.nan)
    table = pd.DataFrame({"name": boundaries["name"].to_numpy(), "n_cells": n_cells,
                          "mean_probability": mean, "expected_asm_cells": total, "area_km2": area})
    order = table.sort_values(["expected_asm_cells", "name"], ascending=[False, True], kind="stable").index
    table = table.loc[order]
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    ranked = np.empty(n_districts, dtype=np.int64)
    ranked[order.to_numpy()] = np.arange(n_districts)
    return gpd.GeoDataFrame(table, geometry=boundaries.geometry.loc[order].to_numpy(),
                            crs="EPSG:4326").reset_index(drop=True), np.where(inside, ranked[district], -1)
