"""The cells to featurize, and the blocks of cells that are featurized together.

Cells come from an area (polygons) or a box, on the grid whose edges are whole multiples of the cell size (the
MOSAIKS grid: 0.01 degree cells centred at x.xx5), or from an existing feature table,
whose centroids are kept exactly as it holds them, so that the new table's cells are its
cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..read.csv_chunks import iter_csv_chunks
from ..read.features import chunk_sizes, detect_layout, read_chunk
from ..read.grid import EDGE_DECIMALS, check_cell_size, grid_spacing
from ..read.polygons import read_polygons


@dataclass(frozen=True, eq=False)
class Cells:
    """Cell centroids (EPSG:4326) and the side of the cells, in degrees."""

    lat: np.ndarray
    lon: np.ndarray
    cell_size: float

    def __len__(self) -> int:
        return len(self.lat)


def cells_in_box(west: float, south: float, east: float, north: float, cell_size: float) -> Cells:
    """Every cell of the grid of ``cell_size`` that overlaps the box."""
    rows = np.arange(math.floor(south / cell_size), math.ceil(north / cell_size))
    columns = np.arange(math.floor(west / cell_size), math.ceil(east / cell_size))
    lat = np.round((rows[::-1] + 0.5) * cell_size, EDGE_DECIMALS)
    lon = np.round((columns + 0.5) * cell_size, EDGE_DECIMALS)
    lat, lon = np.meshgrid(lat, lon, indexing="ij")
    return Cells(lat.ravel(), lon.ravel(), cell_size)


def cells_in_area(path: str, cell_size: float) -> Cells:
    """Every cell of the grid of ``cell_size`` whose square overlaps the polygons in the
    file at ``path`` (any CRS)."""
    import shapely

    area = read_polygons(path, "grid.area")
    outline = shapely.union_all(area.geometry.to_numpy())
    box = cells_in_box(*outline.bounds, cell_size)
    half = cell_size / 2
    shapely.prepare(outline)
    squares = shapely.box(box.lon - half, box.lat - half, box.lon + half, box.lat + half)
    # as with a box: a cell whose square only touches the outline lies outside
    inside = shapely.intersects(outline, squares) & ~shapely.touches(outline, squares)
    if not inside.any():
        raise InputError(f"{path}: its polygons overlap no cell of {cell_size:g} degrees")
    return Cells(box.lat[inside], box.lon[inside], cell_size)


def cells_like(path: str, cell_size: float | None = None) -> Cells:
    """The cells of the feature table at ``path`` (any format ``asm-dask run`` reads), in
    its order; the cell size from its grid's spacing unless given."""
    layout = detect_layout(path)
    if layout.format == "csv":
        chunks = iter_csv_chunks(layout)
    else:
        firsts = np.cumsum([0] + chunk_sizes(layout)).tolist()
        chunks = (read_chunk(layout, i, first, features=()) for i, first in enumerate(firsts[:-1]))
    lat, lon = [], []
    for chunk in chunks:
        lat.append(chunk.lat)
        lon.append(chunk.lon)
    lat = np.concatenate(lat) if lat else np.empty(0)
    lon = np.concatenate(lon) if lon else np.empty(0)
    if not len(lat):
        raise InputError(f"{path}: no cells (grid.like needs a table with rows)")
    spacing = grid_spacing(lat, lon)
    if cell_size is None:
        if spacing is None:
            raise InputError(f"{path}: a single cell tells no cell size; set grid.cell_size")
        cell_size = spacing.degrees
    check_cell_size(path, spacing, cell_size, "grid.cell_size")
    return Cells(lat, lon, float(cell_size))


def blocks_of(cells: Cells, block_cells: int) -> list[np.ndarray]:
    """Cell indexes grouped in square blocks of ``block_cells`` x ``block_cells`` cells
    of the grid, north to south and west to east; within a block, in the cells' order."""
    side = block_cells * cells.cell_size
    block_row = np.floor(-cells.lat / side).astype(np.int64)  # north first
    block_column = np.floor(cells.lon / side).astype(np.int64)
    order = np.lexsort((block_column, block_row))
    keys = np.stack([block_row[order], block_column[order]], axis=1)
    starts = np.flatnonzero(np.r_[True, (np.diff(keys, axis=0) != 0).any(axis=1)])
    return [np.sort(part) for part in np.split(order, starts[1:])]
