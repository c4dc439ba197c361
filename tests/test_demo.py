"""Tests of the synthetic country generator (asm_dask.demo)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from asm_dask.demo import DemoFiles, make_country
from asm_dask.demo import country as demo_country

LABEL_COLUMNS = ["lon", "lat", "unique_id", "country", "sample_type", "mine_type",
                 "confidence", "label", "proportion_inspected"]
SIZE = 0.01


@pytest.fixture(scope="module")
def country(tmp_path_factory) -> DemoFiles:
    return make_country(tmp_path_factory.mktemp("sle") / "nested" / "dir", n_cells=800,
                        n_features=32, seed=3, rows_per_batch=100)


def _read(files: DemoFiles) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(files.labels), pd.read_feather(files.features)


def _centroids(image_id: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The notebook's parsing of ``lat_8--405__lon_-11--235``."""
    parts = image_id.str.split("__", expand=True)
    lat = parts[0].str.replace("lat_", "").str.replace("--", ".").astype(float)
    lon = parts[1].str.replace("lon_", "").str.replace("--", ".").astype(float)
    return lon.to_numpy(), lat.to_numpy()


def _cell_keys(lon: np.ndarray, lat: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(np.floor(lon / SIZE).astype(int).tolist(),
                   np.floor(lat / SIZE).astype(int).tolist()))


def _squares_hit(labels: pd.DataFrame, features: pd.DataFrame) -> pd.Series:
    """Squares each label intersects, with the notebook's buffered-centroid squares."""
    lon, lat = _centroids(features["image_id"])
    centres = gpd.points_from_xy(lon, lat)
    squares = gpd.GeoDataFrame(geometry=centres.buffer(SIZE / 2, cap_style="square"))
    points = gpd.GeoDataFrame(labels, geometry=gpd.points_from_xy(labels.lon, labels.lat))
    joined = gpd.sjoin(points, squares, how="left", predicate="intersects")
    return joined.groupby("unique_id")["index_right"].count()


def test_columns_and_types(country):
    labels, features = _read(country)
    assert list(labels.columns) == LABEL_COLUMNS
    assert list(features.columns) == ["image_id"] + [f"feature_{i}" for i in range(32)]
    schema = ipc.open_file(country.features).schema
    assert schema.field("image_id").type == pa.string()
    assert all(schema.field(f"feature_{i}").type == pa.float32() for i in range(32))
    assert len(features) == country.n_cells and abs(country.n_cells - 800) <= 40
    assert len(labels) == country.n_labels == 200
    assert sorted(p.name for p in country.labels.parent.iterdir()) == [
        "SLE_features.feather", "SLE_mines.csv", "districts.gpkg", "truth_cells.parquet",
        "truth_labels.csv"]  # no temporary files left behind


def test_features_non_negative_with_zeros(country):
    values = _read(country)[1].drop(columns="image_id").to_numpy()
    assert values.dtype == np.float32
    assert values.min() == 0 and 0.05 < (values == 0).mean() < 0.95


def test_record_batches_and_compression(country):
    reader = ipc.open_file(country.features)
    assert reader.num_record_batches == math.ceil(country.n_cells / 100)
    assert all(reader.get_batch(i).num_rows <= 100 for i in range(reader.num_record_batches))
    assert ipc.open_file(country.features).read_all().num_rows == country.n_cells
    # Compressed Arrow buffers are LZ4 frames, each opening with the frame magic number.
    frames = country.features.read_bytes().count(b"\x04\x22\x4d\x18")
    assert frames >= 32 * reader.num_record_batches


def test_image_ids_are_grid_centroids_in_raster_order(country):
    features = _read(country)[1]
    assert features["image_id"].str.fullmatch(r"lat_-?\d+--\d{3}__lon_-?\d+--\d{3}").all()
    lon, lat = _centroids(features["image_id"])
    for v in (lon, lat):
        offset = v / SIZE - 0.5
        assert np.allclose(offset, np.round(offset), atol=1e-6)
    assert 6 < lat.min() < lat.max() < 11 and -14 < lon.min() < lon.max() < -10
    assert len(_cell_keys(lon, lat)) == len(lon)
    # Rows go north to south and west to east within a row.
    assert (np.diff(lat) <= 0).all()
    same_row = np.diff(lat) == 0
    assert (np.diff(lon)[same_row] > 0).all()
    # Not a filled rectangle: the bounding box holds clearly more cells than land.
    box = (round((lon.max() - lon.min()) / SIZE) + 1) * (round((lat.max() - lat.min()) / SIZE) + 1)
    assert box > 1.1 * len(lon)


def test_deterministic_for_a_seed(tmp_path):
    kwargs = dict(n_cells=300, n_features=8, rows_per_batch=64)
    a = make_country(tmp_path / "a", seed=7, **kwargs)
    b = make_country(tmp_path / "b", seed=7, **kwargs)
    c = make_country(tmp_path / "c", seed=8, **kwargs)
    assert a.labels.read_bytes() == b.labels.read_bytes()
    assert a.features.read_bytes() == b.features.read_bytes()
    assert a.labels.read_bytes() != c.labels.read_bytes()
    assert a.features.read_bytes() != c.features.read_bytes()


def test_label_values(country):
    labels = _read(country)[0]
    assert labels["unique_id"].is_unique and labels["unique_id"].str.fullmatch(r"SLE-\d{6}").all()
    assert (labels["country"] == "SLE").all()
    assert set(labels["sample_type"]) == {"random", "targeted"}
    assert set(labels["mine_type"]) <= {"artisanal", "commercial", "none"}
    assert set(labels["label"]) == {0, 1} and 0.2 < labels["label"].mean() < 0.5
    assert labels["confidence"].between(1, 5).all() and (labels["confidence"] < 3).any()
    assert labels["proportion_inspected"].between(0, 1).all()
    assert (labels["proportion_inspected"] < 0.2).any()
    uncommercial = labels[labels["mine_type"] != "commercial"]
    expected = np.where(uncommercial["label"] == 1, "artisanal", "none")
    assert (uncommercial["mine_type"] == expected).all()


def test_labels_on_shared_edges_and_in_the_sea(country):
    labels, features = _read(country)
    cells = _cell_keys(*_centroids(features["image_id"]))
    on_edge = 0
    for lon, lat in zip(labels["lon"], labels["lat"]):
        for k, v in ((0, lon), (1, lat)):
            edge = round(v / SIZE)
            if round(edge * SIZE, 9) == v:  # exactly on a grid line, as parsed from the CSV
                other = lat if k == 0 else lon
                inner = math.floor(other / SIZE)
                pair = ([(edge - 1, inner), (edge, inner)] if k == 0
                        else [(inner, edge - 1), (inner, edge)])
                on_edge += all(p in cells for p in pair)
    assert on_edge >= 2
    hits = _squares_hit(labels, features)
    assert (hits >= 2).any()  # the notebook's inner join duplicates these labels
    assert (hits == 4).any()  # corner shared by four cells
    assert 1 <= (hits == 0).sum() <= 0.05 * len(labels)  # labels in the sea match no cell
    assert (hits == 1).mean() > 0.9  # the rest lie inside one land cell


def test_notebook_filters_keep_both_classes(country):
    labels = _read(country)[0]
    kept = labels[(labels["proportion_inspected"] >= 0.2) | (labels["label"] == 1)]
    kept = kept[kept["mine_type"] != "commercial"]
    kept = kept[kept["confidence"] >= 3]
    assert 0.45 * len(labels) <= len(kept) <= 0.8 * len(labels)
    assert set(kept["label"]) == {0, 1}


def test_ridge_learns_the_planted_signal(tmp_path):
    files = make_country(tmp_path, n_cells=3000, n_features=32, n_labels=1000, seed=0)
    labels, features = _read(files)
    lon, lat = _centroids(features["image_id"])
    row_of = {key: i for i, key in enumerate(zip(np.floor(lon / SIZE).astype(int).tolist(),
                                                 np.floor(lat / SIZE).astype(int).tolist()))}
    keys = zip(np.floor(labels["lon"] / SIZE).astype(int).tolist(),
               np.floor(labels["lat"] / SIZE).astype(int).tolist())
    rows = np.array([row_of.get(key, -1) for key in keys])
    matched = rows >= 0
    x = features.drop(columns="image_id").to_numpy()[rows[matched]]
    y = labels["label"].to_numpy()[matched]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=1991)
    model = RidgeClassifier(alpha=0.01).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.decision_function(x_test))
    assert 0.65 < auc < 0.99


def test_failed_write_leaves_no_files(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(demo_country, "_write_features", fail)
    with pytest.raises(OSError, match="disk full"):
        make_country(tmp_path, n_cells=200, n_features=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SLE_mines.csv", "truth_labels.csv"]


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_country(tmp_path, n_cells=10)
    with pytest.raises(ValueError):
        make_country(tmp_path, rows_per_batch=0)


def test_ci_runs_the_readmes_test_command_as_written():
    root = Path(__file__).parents[1]
    section = (root / "README.md").read_text().split("## The two commands")[1].split("\n## ")[0]
    demo, tests = re.findall(r"```console\n(.*)\n```", section)
    assert demo.startswith("python3 -m venv .venv && ") and tests.startswith("python3 -m venv .venv && ")
    assert tests in (root / ".ci" / "run").read_text().splitlines()
