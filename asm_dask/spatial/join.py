"""Join stage: each label to the one grid cell it falls in, with dask-geopandas.

The join costs what the labels cost, not the country: only partitions whose extent
holds a label are read, and in each only the cells near a label (the 5 x 5 half-cell
steps around it, a superset of the cells it can touch) become squares. The labels are
few, so they form one partition; dask-geopandas joins it to each cell partition whose
extent it overlaps, with the exact ``intersects`` predicate deciding.

Edge rule: a label on an edge or corner shared by several cells intersects all of them.
It is kept once, in the cell with the northernmost centroid, and among those the
easternmost: the same as treating every cell as closed on its south and west edges and
open on its north and east edges, where a neighbour exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.dataframe as dd
import dask_geopandas
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from distributed import Client

from ..read.grid import CRS, cell_ids, cell_squares
from ..read.labels import Labels
from ..read.table import FeatureTable, Partition
from ..runtime.progress import wait_with_progress

CELL_COLUMNS = ["cell_id", "cell_lat", "cell_lon", "partition", "row"]
#: half-cell steps around a label within which the cells it may touch are looked for;
#: a label touches cells at most one step away, the second step absorbs rounding
NEAR_STEPS = 2


@dataclass(frozen=True)
class JoinedLabels:
    """Labels with the cell each fell in, and the labels that fell in none."""

    rows: pd.DataFrame  #: label columns plus ``CELL_COLUMNS``, one row per matched label
    unmatched: pd.DataFrame  #: label columns of the labels that fall on no cell
    n_on_shared_edges: int  #: matched labels that touched more than one cell
    n_partitions_read: int  #: table partitions that held a label and were read


def join_labels(labels: Labels, table: FeatureTable, client: Client) -> JoinedLabels:
    """Spatially join ``labels`` to the cells of ``table`` (inner, ``intersects``)."""
    points = labels.points
    lon, lat = points.geometry.x.to_numpy(), points.geometry.y.to_numpy()
    wanted, near = [], []
    for index, bounds in enumerate(table.bounds):
        inside = _within(lon, lat, bounds, table.cell_size)
        if inside.any():
            wanted.append(index)
            near.append(_near_cell_ids(lat[inside], lon[inside], table.cell_size))
    if wanted:
        cells = dd.from_map(_cells_near, [table.partitions[i] for i in wanted], wanted, near,
                            cell_size=table.cell_size, meta=_cell_squares(_no_cells(), 0, table.cell_size),
                            enforce_metadata=False)
        cells = dask_geopandas.from_dask_dataframe(cells, geometry="geometry")
        cells.spatial_partitions = gpd.GeoSeries(shapely.box(*np.array([table.bounds[i] for i in wanted]).T),
                                                 crs=CRS)
        left = dask_geopandas.from_geopandas(points, npartitions=1)
        left.calculate_spatial_partitions()
        joining = client.compute(dask_geopandas.sjoin(left, cells, predicate="intersects"))
        [joined] = wait_with_progress(client, [joining], "join labels to cells")
        joined = pd.DataFrame(joined.drop(columns=["index_right", "geometry"]))
    else:
        joined = pd.DataFrame(columns=[*points.columns.drop("geometry"), *CELL_COLUMNS])
    n_shared = int((joined["label_row"].value_counts() > 1).sum())
    joined = joined.sort_values(["label_row", "cell_lat", "cell_lon"], ascending=[True, False, False])
    joined = joined.drop_duplicates("label_row", keep="first")
    unmatched = pd.DataFrame(points.loc[~points["label_row"].isin(joined["label_row"])]
                             .drop(columns="geometry"))
    return JoinedLabels(rows=joined.reset_index(drop=True), unmatched=unmatched.reset_index(drop=True),
                        n_on_shared_edges=n_shared, n_partitions_read=len(wanted))


def _within(lon: np.ndarray, lat: np.ndarray, bounds: tuple[float, ...] | None,
            cell_size: float) -> np.ndarray:
    """Points inside ``bounds`` widened by a little, so that rounding never drops one."""
    if bounds is None:
        return np.zeros(len(lon), dtype=bool)
    slack = cell_size / 100
    return ((lon >= bounds[0] - slack) & (lon <= bounds[2] + slack)
            & (lat >= bounds[1] - slack) & (lat <= bounds[3] + slack))


def _near_cell_ids(lat: np.ndarray, lon: np.ndarray, cell_size: float) -> np.ndarray:
    """Ids of every cell centroid position within ``NEAR_STEPS`` half-cells of a point.

    Cell ids number half-cell positions (:func:`asm_dask.read.grid.cell_ids`), so these are
    the ids of the point's own position shifted by up to ``NEAR_STEPS`` steps each way.
    """
    step = cell_size / 2
    shifts = np.arange(-NEAR_STEPS, NEAR_STEPS + 1) * step
    dlat, dlon = np.meshgrid(shifts, shifts)
    return np.unique(cell_ids(lat[:, None] + dlat.ravel(), lon[:, None] + dlon.ravel(), cell_size))


def _cells_near(partition: Partition, index: int, near: np.ndarray, cell_size: float) -> gpd.GeoDataFrame:
    cells = partition.cells()
    return _cell_squares(cells, index, cell_size, np.flatnonzero(np.isin(cells["cell_id"].to_numpy(), near)))


def _no_cells() -> pd.DataFrame:
    return pd.DataFrame({"cell_id": np.empty(0, np.int64), "lat": np.empty(0), "lon": np.empty(0)})


def _cell_squares(cells: pd.DataFrame, partition: int, cell_size: float,
                  rows: np.ndarray | None = None) -> gpd.GeoDataFrame:
    rows = np.arange(len(cells), dtype=np.int64) if rows is None else rows
    lat, lon = cells["lat"].to_numpy()[rows], cells["lon"].to_numpy()[rows]
    frame = pd.DataFrame({"cell_id": cells["cell_id"].to_numpy()[rows], "cell_lat": lat, "cell_lon": lon,
                          "partition": np.full(len(rows), partition, dtype=np.int64),
                          "row": rows.astype(np.int64)})
    return gpd.GeoDataFrame(frame, geometry=cell_squares(lat, lon, cell_size), crs=CRS)
