"""The 0.01 degree grid: cell centroids, cell ids and cell squares (EPSG:4326)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from ..errors import InputError

CRS = "EPSG:4326"

# Edges are rounded to this many decimals so that two neighbouring cells share exactly
# the same float edge (8.405 + 0.005 and 8.415 - 0.005 differ in the last bit otherwise,
# which would leave a label on that edge in a sliver between the cells, or in neither).
EDGE_DECIMALS = 9

_IMAGE_ID = r"^lat_(?P<lat>-?\d+(?:--\d+)?)__lon_(?P<lon>-?\d+(?:--\d+)?)$"


def parse_image_ids(image_ids: pa.Array | pa.ChunkedArray, source: str,
                    first_row: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centroid latitude and longitude from ids like ``lat_8--405__lon_-11--235``.

    ``--`` stands for the decimal point. Raises :class:`InputError` naming the first row
    (counted from 1 after the header, offset by ``first_row``) whose id does not parse.
    """
    if pa.types.is_dictionary(image_ids.type):  # a pandas categorical column
        image_ids = image_ids.cast(pa.string())
    parts = pc.extract_regex(image_ids, _IMAGE_ID)
    bad = pc.is_null(parts, nan_is_null=True)
    if pc.any(bad).as_py():
        row = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        value = image_ids[row].as_py()
        raise InputError(f"{source}: row {first_row + row + 1}: cannot parse image_id "
                         f"{value!r} (expected like 'lat_8--405__lon_-11--235')")
    coords = []
    for name in ("lat", "lon"):
        text = pc.replace_substring(pc.struct_field(parts, name), "--", ".")
        coords.append(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False))
    return coords[0], coords[1]


def check_coordinates(lat: np.ndarray, lon: np.ndarray, source: str, first_row: int = 0,
                      what: str = "row") -> None:
    """Raise :class:`InputError` for the first missing or out-of-range coordinate."""
    bad = ~((np.abs(lat) <= 90) & (np.abs(lon) <= 180))  # also catches NaN
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{source}: {what} {first_row + row + 1}: coordinates out of range "
                         f"or missing (lat={lat[row]}, lon={lon[row]}); "
                         "expected -90..90 and -180..180 degrees")


def decimal_coordinates(column: pa.Array) -> np.ndarray:
    """A coordinate column in float64. Stored in float32 (or float16), 8.615 is
    8.61499977...: each value is taken as the shortest decimal that reads back to the same
    float32, the number that was written (else centroids 0.01 apart would be 0.00999928
    apart, and off the grid the labels are joined on)."""
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype.itemsize >= 8 or not np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float64)
    narrow = values.astype(np.float32)
    wide = narrow.astype(np.float64)
    shortest = wide.copy()
    found = ~np.isfinite(narrow)
    for decimals in range(10):  # float32 holds 9 significant digits at most
        rounded = np.round(wide, decimals)
        hit = ~found & (rounded.astype(np.float32) == narrow)
        shortest[hit] = rounded[hit]
        found |= hit
        if found.all():
            break
    return shortest


def cell_ids(lat: np.ndarray, lon: np.ndarray, cell_size: float) -> np.ndarray:
    """A stable int64 id per cell, from its centroid.

    Centroids are quantised to half a cell, so the id works whatever the grid's offset
    (MOSAIKS centroids sit at x.xx5) and two centroids get the same id only if they are
    less than half a cell apart, i.e. if they describe the same cell.
    """
    step = cell_size / 2
    n_cols = int(round(360 / step)) + 1
    row = np.rint((np.asarray(lat, dtype=np.float64) + 90) / step).astype(np.int64)
    col = np.rint((np.asarray(lon, dtype=np.float64) + 180) / step).astype(np.int64)
    return row * n_cols + col


def cell_edges(lat: np.ndarray, lon: np.ndarray,
               cell_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each cell's west, south, east and north edges: its centroid plus or minus half a
    cell, rounded so that neighbours share an edge exactly."""
    half = cell_size / 2
    return (np.round(lon - half, EDGE_DECIMALS), np.round(lat - half, EDGE_DECIMALS),
            np.round(lon + half, EDGE_DECIMALS), np.round(lat + half, EDGE_DECIMALS))


def cell_squares(lat: np.ndarray, lon: np.ndarray, cell_size: float) -> np.ndarray:
    """Each cell's square: its centroid buffered by half a cell with square caps."""
    return shapely.box(*cell_edges(lat, lon, cell_size))


def cell_area_km2(lat: np.ndarray, cell_size: float) -> np.ndarray:
    """The geodesic area (WGS84) of the cell square centred at each latitude ``lat``: cells
    shrink towards the poles, and a cell's area depends on its latitude alone."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    half = cell_size / 2
    rows, where = np.unique(np.round(np.asarray(lat, dtype=np.float64), EDGE_DECIMALS), return_inverse=True)
    areas = np.array([abs(geod.polygon_area_perimeter([0, cell_size, cell_size, 0],
                                                      [row - half, row - half, row + half, row + half])[0])
                      for row in rows]) / 1e6
    return areas[where]


def check_unique_cells(source: str, ids: np.ndarray, input_rows: np.ndarray) -> None:
    """Raise :class:`InputError` naming two input rows (0-based ``input_rows``) that
    describe the same cell, if any do."""
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(repeated):
        first, second = sorted((int(input_rows[order[repeated[0]]]), int(input_rows[order[repeated[0] + 1]])))
        raise InputError(f"{source}: rows {first + 1} and {second + 1} describe the same cell "
                         f"(duplicate cell id; {len(repeated)} duplicate(s) in all)")


@dataclass(frozen=True)
class Spacing:
    """The nearest two distinct centroid latitudes, or longitudes, of a table: ``degrees``
    apart, the grid's cell size or a multiple of it where cells are missing; held by its
    ``rows`` (0-based; ``None`` where they are not the input's), as ``values``."""

    degrees: float
    axis: str  #: "latitudes" or "longitudes"
    rows: tuple[int, int] | None
    values: tuple[float, float]

    def of_rows(self, rows: np.ndarray | None) -> Spacing:
        """The same, its rows taken through ``rows`` (positions -> the input's rows);
        ``None``: positions that are no input's rows (a store's, a join's)."""
        if rows is None or self.rows is None:
            return dataclasses.replace(self, rows=None)
        return dataclasses.replace(self, rows=(int(rows[self.rows[0]]), int(rows[self.rows[1]])))

    def where(self) -> str:
        held = "" if self.rows is None else f" of rows {self.rows[0] + 1} and {self.rows[1] + 1}"
        return f"the {self.axis} {self.values[0]:g} and {self.values[1]:g}{held}"


def grid_spacing(lat: np.ndarray, lon: np.ndarray) -> Spacing | None:
    """The nearest two distinct centroid latitudes or longitudes; ``None`` for a single cell."""
    nearest = None
    for axis, values in (("latitudes", lat), ("longitudes", lon)):
        distinct, first = np.unique(np.round(np.asarray(values, dtype=np.float64), EDGE_DECIMALS), return_index=True)
        if len(distinct) < 2:
            continue
        i = int(np.argmin(np.diff(distinct)))
        degrees = float(np.round(distinct[i + 1] - distinct[i], EDGE_DECIMALS))
        if nearest is None or degrees < nearest.degrees:
            nearest = Spacing(degrees, axis, (int(first[i]), int(first[i + 1])),
                              (float(distinct[i]), float(distinct[i + 1])))
    return nearest


def nearest(spacings: list[Spacing | None]) -> Spacing | None:
    """The smallest of several tables' (or parts') spacings."""
    return min((s for s in spacings if s is not None), key=lambda s: s.degrees, default=None)


def cells_apart(spacing: float, cell_size: float) -> int | None:
    """How many cells of ``cell_size`` the nearest centroids, ``spacing`` degrees apart
    (:func:`grid_spacing`), are apart: a whole number >= 1 on a grid of such cells (more
    than 1 where cells are missing); ``None`` where they are not: closer than a cell
    (cells that overlap) or not a whole number of cells (cells that do not tile)."""
    steps = spacing / cell_size
    if steps < 1 - 1e-6 or abs(steps - round(steps)) > 1e-6:
        return None
    return round(steps)


def check_cell_size(source: str, spacing: Spacing | None, cell_size: float,
                    key: str = "features.cell_size") -> str | None:
    """Refuse a cell size its centroids cannot hold; a note if no two cells touch.

    Cells that would overlap, or would not tile, are an :class:`InputError` naming
    the setting ``key``: labels would join to the wrong squares. Centroids never closer
    than two cells may be a sparse grid, or a cell size set too small (most labels then
    fall between cells): the note returned says so.
    """
    if spacing is None:
        return None
    degrees = spacing.degrees
    apart = cells_apart(degrees, cell_size)
    if apart is None:
        how = "overlap" if degrees < cell_size else "not tile"
        raise InputError(f"{source}: cell centroids are {degrees:g} degrees apart ({spacing.where()}), where "
                         f"cells of {key}={cell_size:g} degrees would {how}; set {key} to the side of the grid's "
                         "cells")
    if apart == 1:
        return None
    return (f"{source}: no two cells touch: the nearest centroids are {degrees:g} degrees apart, {apart} cells of "
            f"{cell_size:g} degrees; if the grid's cells are {degrees:g} degrees wide, set {key}: "
            f"{degrees:g}")
