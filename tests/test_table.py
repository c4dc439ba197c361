"""Read stage: the input read in place equals the feature store, for every stage."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import asm_dask
import asm_dask.read.features
from asm_dask.config import FeaturesConfig, LabelsConfig, job_from_dict
from asm_dask.errors import InputError
from asm_dask.read.grid import parse_image_ids
from asm_dask.read.labels import read_labels
from asm_dask.read.table import gather_rows, open_table


def _predictions(out) -> pd.DataFrame:
    frame = pd.read_parquet(out / "predictions", columns=["cell_id", "lat", "lon", "score", "probability"])
    return frame.sort_values("cell_id").reset_index(drop=True)


def _config(country, tmp_path, store, **settings):
    return FeaturesConfig(path=str(country.features), store=store, store_path=str(tmp_path / "store"), **settings)


@pytest.fixture
def narrow_column_groups(monkeypatch):
    """Column groups of three features: a partition is read in many pieces whose sums
    are added as a tree (more than ``SUM_FAN_IN`` of them)."""
    monkeypatch.setattr(asm_dask.read.features, "COLUMN_GROUP_BYTES", 4 * 600 * 3)


def test_in_place_and_store_tables_hold_the_same_cells_and_rows(country, tmp_path, client,
                                                                 narrow_column_groups):
    in_place = open_table(_config(country, tmp_path, "never"), str(tmp_path / "out"), client)
    store = open_table(_config(country, tmp_path, "always", rows_per_partition=250), str(tmp_path / "out"), client)
    assert (in_place.kind, store.kind) == ("file", "store") and in_place.key != store.key
    assert in_place.n_rows == store.n_rows == country.n_cells
    assert len(in_place.partitions) == 3 and len(in_place.partitions[0].column_groups(40)) == 14

    def cells(table):
        return pd.concat([p.cells().assign(partition=i, row=np.arange(p.n_rows))
                          for i, p in enumerate(table.partitions)]).sort_values("cell_id").reset_index(drop=True)

    a, b = cells(in_place), cells(store)
    pd.testing.assert_frame_equal(a[["cell_id", "lat", "lon"]], b[["cell_id", "lat", "lon"]])
    rng = np.random.default_rng(0)
    pick = rng.choice(len(a), 200, replace=False)
    np.testing.assert_array_equal(
        gather_rows(in_place, a["partition"].to_numpy()[pick], a["row"].to_numpy()[pick], client),
        gather_rows(store, b["partition"].to_numpy()[pick], b["row"].to_numpy()[pick], client))


def test_predictions_read_in_place_equal_the_stores(country, tmp_path, client, narrow_column_groups):
    results = {}
    for store in ("never", "always"):
        job = job_from_dict({"labels": str(country.labels), "output": str(tmp_path / store),
                             "features": {"path": str(country.features), "store": store,
                                          "store_path": str(tmp_path / "store")}})
        results[store] = asm_dask.run(job, client).metrics.as_dict()
    assert results["never"]["features_read"] == "in place"
    assert results["always"]["features_read"] == "feature store"
    in_place, stored = _predictions(tmp_path / "never"), _predictions(tmp_path / "always")
    pd.testing.assert_frame_equal(in_place[["cell_id", "lat", "lon"]], stored[["cell_id", "lat", "lon"]])
    np.testing.assert_allclose(in_place["score"], stored["score"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(in_place["probability"], stored["probability"], rtol=0, atol=1e-6)
    for key in ("best_alpha", "cv_auc", "test_auc_calibrated", "n_cells", "n_labels_joined"):
        assert results["never"][key] == pytest.approx(results["always"][key], rel=1e-6)


def test_nonfinite_rows_read_in_place_are_left_out_like_the_stores(country, tmp_path, client):
    """A label in a cell with a non-finite feature joins no cell either way."""
    frame = pd.read_feather(country.features)
    labels = read_labels(LabelsConfig(path=str(country.labels))).points
    lat, lon = parse_image_ids(pa.array(frame["image_id"]), "test")
    labels = labels[[np.abs(lat - y).min() + np.abs(lon - x).min() < 0.004  # well inside a cell
                     for x, y in zip(labels.geometry.x, labels.geometry.y)]]
    labelled = [int(np.argmin(np.hypot(lat - y, lon - x))) for x, y in zip(labels.geometry.x[:3], labels.geometry.y[:3])]
    frame.loc[labelled, "feature_3"] = np.nan
    frame.loc[len(frame) - 1, "feature_7"] = np.inf
    path = tmp_path / "holes.feather"
    frame.to_feather(path, chunksize=600)
    metrics = {}
    for store in ("never", "always"):
        job = job_from_dict({"labels": str(country.labels), "output": str(tmp_path / store),
                             "features": {"path": str(path), "store": store, "store_path": str(tmp_path / "st")}})
        metrics[store] = asm_dask.run(job, client).metrics.as_dict()
        assert metrics[store]["n_cells_dropped_nonfinite"] == 4
        assert metrics[store]["n_cells"] == len(frame) - 4
        assert len(_predictions(tmp_path / store)) == len(frame) - 4
    for key in ("n_labels_joined", "n_labels_unmatched"):
        assert metrics["never"][key] == metrics["always"][key]
    unmatched = {store: set(pd.read_csv(tmp_path / store / "unmatched_labels.csv")["unique_id"])
                 for store in ("never", "always")}
    assert unmatched["never"] == unmatched["always"]
    assert set(labels["unique_id"][:3]) <= unmatched["never"]


def test_csv_features_cannot_be_read_in_place(tmp_path, client):
    path = tmp_path / "f.csv"
    path.write_text("lat,lon,X_0,X_1\n8.005,-11.995,1,2\n")
    with pytest.raises(InputError, match="f.csv: a CSV file cannot be read in place"):
        open_table(FeaturesConfig(path=str(path), store="never"), str(tmp_path / "out"), client)
    assert open_table(FeaturesConfig(path=str(path)), str(tmp_path / "out"), client).kind == "store"
