"""Join stage: labels to cells, and the rule for labels on shared edges, with the
features read in place and from the store."""

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from builders import grid_features, labels_frame, write_feather

from asm_dask.config import FeaturesConfig, LabelFilters, LabelsConfig
from asm_dask.read.grid import cell_squares
from asm_dask.read.labels import read_labels
from asm_dask.read.table import gather_rows, open_table
from asm_dask.spatial.join import join_labels

LATS = np.array([8.005, 8.015, 8.025])
LONS = np.array([-11.995, -11.985, -11.975])


def _table(tmp_path, client, frame, store, rows):
    path = write_feather(frame, tmp_path / "f.feather", chunksize=rows)
    config = FeaturesConfig(path=str(path), store=store, store_path=str(tmp_path / "st"), rows_per_partition=rows)
    return open_table(config, str(tmp_path / "out"), client)


@pytest.fixture(params=["never", "always"])
def table(request, tmp_path, client):
    """Nine cells in partitions of four rows: read in place, or from the store."""
    return _table(tmp_path, client, grid_features(LATS, LONS), request.param, 4)


def _join(tmp_path, client, table, points):
    path = tmp_path / "labels.csv"
    labels_frame(points, [i % 2 for i in range(len(points))]).to_csv(path, index=False)
    labels = read_labels(LabelsConfig(path=str(path), filters=LabelFilters(None, (), None)))
    return join_labels(labels, table, client)


def test_each_label_joins_exactly_one_cell_by_the_edge_rule(tmp_path, client, table):
    points = [
        (-11.993, 8.012),  # inside a cell
        (-11.99, 8.013),   # on the edge between two cells side by side: the eastern one
        (-11.983, 8.02),   # on the edge between two cells one above the other: the northern one
        (-11.98, 8.02),    # on the corner of four cells: the north-eastern one
        (-11.98, 8.0),     # on the grid's south border, between two cells: the eastern one
        (-11.97, 8.03),    # on the grid's north-east corner: the one cell there
        (-11.5, 9.0),      # on no cell
    ]
    joined = _join(tmp_path, client, table, points)
    assert joined.rows["label_row"].tolist() == [1, 2, 3, 4, 5, 6]
    cells = list(zip(joined.rows["cell_lat"].round(3), joined.rows["cell_lon"].round(3)))
    assert cells == [(8.015, -11.995), (8.015, -11.985), (8.025, -11.985), (8.025, -11.975),
                     (8.005, -11.975), (8.025, -11.975)]
    assert joined.n_on_shared_edges == 4
    assert joined.unmatched["label_row"].tolist() == [7]


def test_joined_rows_point_at_their_cells_features(tmp_path, client, table):
    joined = _join(tmp_path, client, table, [(-11.975, 8.005), (-11.995, 8.025), (-11.985, 8.015)])
    X = gather_rows(table, joined.rows["partition"].to_numpy(), joined.rows["row"].to_numpy(), client)
    features = grid_features(LATS, LONS)
    for i, (lat, lon) in enumerate([(8.005, -11.975), (8.025, -11.995), (8.015, -11.985)]):
        expected = features.iloc[int(np.argmin(np.abs(np.repeat(LATS, 3) - lat) + np.abs(np.tile(LONS, 3) - lon)))]
        np.testing.assert_array_equal(X[i], expected[[f"feature_{j}" for j in range(6)]].to_numpy(np.float32))
        cells = table.partitions[int(joined.rows["partition"][i])].cells()
        assert cells["cell_id"][int(joined.rows["row"][i])] == joined.rows["cell_id"][i]


@pytest.mark.parametrize("store", ["never", "always"])
def test_pruned_join_equals_a_join_against_every_cell(tmp_path, client, store):
    """Only partitions holding labels are read, and only cells near a label become
    squares; the result equals a plain geopandas join against every cell's square,
    labels on edges and corners shared across partitions included."""
    lats = np.round(8.005 + 0.01 * np.arange(12), 3)
    lons = np.round(-11.995 + 0.01 * np.arange(12), 3)
    table = _table(tmp_path, client, grid_features(lats, lons), store, 10)  # rows cut across partitions
    rng = np.random.default_rng(3)
    # Labels on the lattice of cell edges and corners (x.xx0), inside cells (x.xx3), and
    # on no cell, in the southern half of the grid only, so that northern partitions go unread.
    edges = [(round(-12.0 + 0.01 * rng.integers(0, 13), 2), round(8.0 + 0.01 * rng.integers(0, 6), 2))
             for _ in range(40)]
    inside = [(-11.987, 8.013), (-11.903, 8.043)]
    points = edges + inside + [(-11.5, 9.0)]
    joined = _join(tmp_path, client, table, points)

    cells = pd.concat([p.cells() for p in table.partitions], ignore_index=True)
    squares = gpd.GeoDataFrame(cells, geometry=cell_squares(cells["lat"].to_numpy(), cells["lon"].to_numpy(),
                                                            0.01), crs="EPSG:4326")
    labels = gpd.GeoDataFrame({"label_row": np.arange(1, len(points) + 1)},
                              geometry=gpd.points_from_xy(*zip(*points)), crs="EPSG:4326")
    full = gpd.sjoin(labels, squares, predicate="intersects")
    n_shared = int((full["label_row"].value_counts() > 1).sum())
    full = full.sort_values(["label_row", "lat", "lon"], ascending=[True, False, False])
    expected = full.drop_duplicates("label_row").set_index("label_row")["cell_id"]

    assert joined.rows.set_index("label_row")["cell_id"].sort_index().equals(expected.sort_index())
    assert joined.n_on_shared_edges == n_shared > 10
    assert joined.unmatched["label_row"].tolist() == [len(points)]
    assert 0 < joined.n_partitions_read < len(table.partitions)
