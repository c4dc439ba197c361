"""Join stage: labels to cells, and the rule for labels on shared edges."""

import numpy as np
import pytest

from asm_dask.config import FeaturesConfig, LabelFilters, LabelsConfig
from asm_dask.join import join_labels
from asm_dask.labels import read_labels
from asm_dask.store import open_store
from builders import grid_features, labels_frame, write_feather

LATS = np.array([8.005, 8.015, 8.025])
LONS = np.array([-11.995, -11.985, -11.975])


@pytest.fixture
def store(tmp_path, client):
    path = write_feather(grid_features(LATS, LONS), tmp_path / "f.feather")
    return open_store(FeaturesConfig(path=str(path), rows_per_partition=4), str(tmp_path / "st"), client)


def _join(tmp_path, client, store, points):
    path = tmp_path / "labels.csv"
    labels_frame(points, [i % 2 for i in range(len(points))]).to_csv(path, index=False)
    labels = read_labels(LabelsConfig(path=str(path), filters=LabelFilters(None, (), None)))
    return join_labels(labels, store, client)


def test_each_label_joins_exactly_one_cell_by_the_edge_rule(tmp_path, client, store):
    points = [
        (-11.993, 8.012),  # inside a cell
        (-11.99, 8.013),   # on the edge between two cells side by side: the eastern one
        (-11.983, 8.02),   # on the edge between two cells one above the other: the northern one
        (-11.98, 8.02),    # on the corner of four cells: the north-eastern one
        (-11.98, 8.0),     # on the grid's south border, between two cells: the eastern one
        (-11.97, 8.03),    # on the grid's north-east corner: the one cell there
        (-11.5, 9.0),      # on no cell
    ]
    joined = _join(tmp_path, client, store, points)
    assert joined.rows["label_row"].tolist() == [1, 2, 3, 4, 5, 6]
    cells = list(zip(joined.rows["cell_lat"].round(3), joined.rows["cell_lon"].round(3)))
    assert cells == [(8.015, -11.995), (8.015, -11.985), (8.025, -11.985), (8.025, -11.975),
                     (8.005, -11.975), (8.025, -11.975)]
    assert joined.n_on_shared_edges == 4
    assert joined.unmatched["label_row"].tolist() == [7]


def test_joined_rows_point_at_their_cells_features(tmp_path, client, store):
    from asm_dask.store import gather_rows, read_cells

    joined = _join(tmp_path, client, store, [(-11.975, 8.005), (-11.995, 8.025), (-11.985, 8.015)])
    X = gather_rows(store, joined.rows["partition"].to_numpy(), joined.rows["row"].to_numpy(), client)
    features = grid_features(LATS, LONS)
    for i, (lat, lon) in enumerate([(8.005, -11.975), (8.025, -11.995), (8.015, -11.985)]):
        expected = features.iloc[int(np.argmin(np.abs(np.repeat(LATS, 3) - lat) + np.abs(np.tile(LONS, 3) - lon)))]
        np.testing.assert_array_equal(X[i], expected[[f"feature_{j}" for j in range(6)]].to_numpy(np.float32))
        cells = read_cells(store.partition_path(int(joined.rows["partition"][i])))
        assert cells["cell_id"][int(joined.rows["row"][i])] == joined.rows["cell_id"][i]
