"""Join stage: each label to the one grid cell it falls in, with dask-geopandas.

The cells are a dask-geopandas GeoDataFrame with one partition per store partition,
built from three columns of the store (the 4000 features are never read here). The
labels are few, so they form one partition that is joined to every cell partition.

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
from distributed import Client

from .grid import CRS, cell_squares
from .labels import Labels
from .store import FeatureStore, read_cells

CELL_COLUMNS = ["cell_id", "cell_lat", "cell_lon", "partition", "row"]


@dataclass(frozen=True)
class JoinedLabels:
    """Labels with the cell each fell in, and the labels that fell in none."""

    rows: pd.DataFrame  #: label columns plus ``CELL_COLUMNS``, one row per matched label
    unmatched: pd.DataFrame  #: label columns of the labels that fall on no cell
    n_on_shared_edges: int  #: matched labels that touched more than one cell


def cells_frame(store: FeatureStore) -> dask_geopandas.GeoDataFrame:
    """The store's cells as squares, one dask-geopandas partition per store partition."""
    meta = _cell_squares(pd.DataFrame({"cell_id": np.empty(0, np.int64), "lat": np.empty(0),
                                       "lon": np.empty(0)}), 0, store.cell_size)
    return dd.from_map(_read_cell_squares, [store.partition_path(i) for i in range(len(store.partitions))],
                       range(len(store.partitions)), cell_size=store.cell_size, meta=meta,
                       enforce_metadata=False)


def join_labels(labels: Labels, store: FeatureStore, client: Client) -> JoinedLabels:
    """Spatially join ``labels`` to the cells of ``store`` (inner, ``intersects``)."""
    points = labels.points
    joined = client.compute(dask_geopandas.sjoin(points, cells_frame(store), predicate="intersects")).result()
    joined = pd.DataFrame(joined.drop(columns=["index_right", "geometry"]))
    n_shared = int((joined["label_row"].value_counts() > 1).sum())
    joined = joined.sort_values(["label_row", "cell_lat", "cell_lon"], ascending=[True, False, False])
    joined = joined.drop_duplicates("label_row", keep="first")
    unmatched = pd.DataFrame(points.loc[~points["label_row"].isin(joined["label_row"])]
                             .drop(columns="geometry"))
    return JoinedLabels(rows=joined.reset_index(drop=True), unmatched=unmatched.reset_index(drop=True),
                        n_on_shared_edges=n_shared)


def _read_cell_squares(path: str, partition: int, cell_size: float) -> gpd.GeoDataFrame:
    return _cell_squares(read_cells(path), partition, cell_size)


def _cell_squares(cells: pd.DataFrame, partition: int, cell_size: float) -> gpd.GeoDataFrame:
    lat, lon = cells["lat"].to_numpy(), cells["lon"].to_numpy()
    frame = pd.DataFrame({"cell_id": cells["cell_id"].to_numpy(), "cell_lat": lat, "cell_lon": lon,
                          "partition": np.full(len(cells), partition, dtype=np.int64),
                          "row": np.arange(len(cells), dtype=np.int64)})
    return gpd.GeoDataFrame(frame, geometry=cell_squares(lat, lon, cell_size), crs=CRS)
