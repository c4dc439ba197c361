"""Tests of the synthetic country whose mining changes over the years (asm_dask.demo.years)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import RidgeClassifier

from asm_dask.demo import make_country
from asm_dask.demo.years import YearsFiles, make_country_years, score_change, true_change

LABEL_COLUMNS = ["lon", "lat", "unique_id", "country", "sample_type", "mine_type",
                 "confidence", "label", "proportion_inspected", "year"]
YEARS = (2019, 2021, 2023)
KWARGS = dict(n_cells=1500, n_features=32, n_labels=300, seed=3, rows_per_batch=500)
SIZE = 0.01


@pytest.fixture(scope="module")
def country(tmp_path_factory) -> YearsFiles:
    return make_country_years(tmp_path_factory.mktemp("years"), years=(2023, 2019, 2021), **KWARGS)


def _features(files: YearsFiles, year: int) -> pd.DataFrame:
    return pd.read_feather(files.features[year])


def _cell_keys(lon: np.ndarray, lat: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(np.floor(lon / SIZE).astype(int).tolist(), np.floor(lat / SIZE).astype(int).tolist()))


def test_files_and_sizes(country):
    assert sorted(country.features) == sorted(country.truth_cells) == list(YEARS)  # sorted, whatever the order given
    assert sorted(p.name for p in country.labels.parent.iterdir()) == sorted(
        ["SLE_mines.csv", "truth_labels.csv", "districts.gpkg"]
        + [f"SLE_features_{y}.feather" for y in YEARS] + [f"truth_cells_{y}.parquet" for y in YEARS])
    assert abs(country.n_cells - 1500) <= 30 and country.n_labels == 3 * 300
    assert set(gpd.read_file(country.districts)["name"]) == {f"{r}{c} district" for r in "NCS" for c in "WCE"}


def test_deterministic_for_a_seed(country, tmp_path):
    again = make_country_years(tmp_path / "again", years=YEARS, **KWARGS)
    for a, b in [(country.labels, again.labels), (country.truth_labels, again.truth_labels),
                 *((country.features[y], again.features[y]) for y in YEARS),
                 *((country.truth_cells[y], again.truth_cells[y]) for y in YEARS)]:
        assert a.read_bytes() == b.read_bytes(), a.name
    # A GeoPackage stamps the time it was written: compare what it holds.
    assert gpd.read_file(country.districts).equals(gpd.read_file(again.districts))
    other = make_country_years(tmp_path / "other", years=YEARS, **{**KWARGS, "seed": 4})
    assert other.labels.read_bytes() != country.labels.read_bytes()
    assert other.features[2019].read_bytes() != country.features[2019].read_bytes()


def test_same_cells_and_features_every_year(country, tmp_path):
    first = _features(country, 2019)
    assert list(first.columns) == ["image_id"] + [f"feature_{i}" for i in range(32)]
    assert len(first) == country.n_cells
    for year in YEARS:
        features, truth = _features(country, year), pd.read_parquet(country.truth_cells[year])
        assert list(features.columns) == list(first.columns)
        assert features["image_id"].equals(first["image_id"])
        assert features.drop(columns="image_id").dtypes.eq(np.float32).all()
        assert (features.drop(columns="image_id").to_numpy() >= 0).all()
        assert truth[["lat", "lon"]].equals(pd.read_parquet(country.truth_cells[2019])[["lat", "lon"]])
    # The land is make_country's for the same seed.
    single = make_country(tmp_path, n_cells=1500, n_features=4, seed=3)
    assert pd.read_feather(single.features)["image_id"].equals(first["image_id"])


def test_truth_changes_where_planted(country):
    for earlier, later in [(2019, 2021), (2021, 2023), (2019, 2023)]:
        change = true_change(country, earlier, later)
        assert list(change.columns) == ["lat", "lon", "true_from", "true_to", "kind"]
        assert len(change) == country.n_cells
        counts = change["kind"].value_counts()
        assert counts.get("new", 0) > 5 and counts.get("abandoned", 0) > 5, (earlier, later, counts)
        new, gone = change[change["kind"] == "new"], change[change["kind"] == "abandoned"]
        assert (new["true_from"] < 0.5).all() and (new["true_to"] >= 0.5).all()
        assert (gone["true_from"] >= 0.5).all() and (gone["true_to"] < 0.5).all()
    # Most of the country keeps its truth: the changes are where they were planted.
    change = true_change(country, 2019, 2023)
    assert (change["kind"] == "").mean() > 0.8
    assert (np.abs(change["true_to"] - change["true_from"]) < 0.05).mean() > 0.5


def test_labels_carry_their_years(country):
    labels, truth = pd.read_csv(country.labels), pd.read_csv(country.truth_labels)
    assert list(labels.columns) == LABEL_COLUMNS and labels["year"].dtype == np.int64
    assert labels["year"].value_counts().to_dict() == {y: 300 for y in YEARS}
    assert labels["unique_id"].is_unique
    assert (labels["unique_id"].str.slice(4, 8).astype(int) == labels["year"]).all()
    assert truth["unique_id"].equals(labels["unique_id"]) and truth["year"].equals(labels["year"])
    assert truth["true_probability"].between(0.04, 0.9).all()
    uncommercial = labels[labels["mine_type"] != "commercial"]
    assert (uncommercial["mine_type"] == np.where(uncommercial["label"] == 1, "artisanal", "none")).all()
    land = set(_cell_keys(*_centroids(_features(country, 2019))))
    for year, group in labels.groupby("year"):
        assert set(group["label"]) == {0, 1}
        keys = _cell_keys(group["lon"].to_numpy(), group["lat"].to_numpy())
        assert 1 <= sum(k not in land for k in keys) <= 0.05 * len(group), year  # some at sea
        on_edge = np.isclose(group["lon"] / SIZE, np.round(group["lon"] / SIZE), rtol=0, atol=1e-6)
        assert on_edge.any(), year  # some on the edge between two cells


def test_later_years_reinspect_earlier_points(country):
    labels = pd.read_csv(country.labels)
    point = labels["lon"].astype(str) + "," + labels["lat"].astype(str)
    first_year = labels.groupby(point)["year"].transform("min")
    revisits = labels[labels["year"] > first_year]
    assert revisits["year"].value_counts().to_dict() == {2021: 30, 2023: 30}
    assert len(labels[labels["year"] == 2019]) == point[labels["year"] == 2019].nunique()


def _centroids(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    parts = features["image_id"].str.split("__", expand=True)
    lat = parts[0].str.replace("lat_", "").str.replace("--", ".").astype(float)
    lon = parts[1].str.replace("lon_", "").str.replace("--", ".").astype(float)
    return lon.to_numpy(), lat.to_numpy()


def test_features_of_unchanged_cells_stay_close(country):
    change = true_change(country, 2019, 2023)
    before = _features(country, 2019).drop(columns="image_id").to_numpy()
    after = _features(country, 2023).drop(columns="image_id").to_numpy()
    drift = np.abs(after - before).mean(axis=1)
    unchanged = np.abs(change["true_to"] - change["true_from"]).to_numpy() < 1e-3
    changed = np.abs(change["true_to"] - change["true_from"]).to_numpy() > 0.4
    assert unchanged.sum() > 100 and changed.sum() > 10
    scale = before.mean()
    assert 0 < drift[unchanged].mean() < 0.25 * scale  # each year's own noise, small
    assert drift[changed].mean() > 2 * drift[unchanged].mean()


def test_a_model_of_all_years_sees_the_change(country):
    labels = pd.read_csv(country.labels)
    features = {y: _features(country, y) for y in YEARS}
    row_of = {key: i for i, key in enumerate(_cell_keys(*_centroids(features[2019])))}
    rows = np.array([row_of.get(k, -1) for k in _cell_keys(labels["lon"].to_numpy(), labels["lat"].to_numpy())])
    ok = rows >= 0
    x = np.vstack([features[y].iloc[[r], 1:].to_numpy() for y, r in zip(labels["year"][ok], rows[ok])])
    model = RidgeClassifier(alpha=1.0).fit(x, labels["label"][ok])
    score = {y: model.decision_function(features[y].iloc[:, 1:].to_numpy()) for y in YEARS}
    change = true_change(country, 2019, 2023)
    delta = score[2023] - score[2019]
    assert delta[change["kind"] == "new"].mean() > 0.2 > -0.2 > delta[change["kind"] == "abandoned"].mean()


def test_score_change(country):
    change = true_change(country, 2019, 2023)
    perfect = score_change(change[["lat", "lon", "kind"]], country, 2019, 2023)
    for kind in ("new", "abandoned"):
        n = int((change["kind"] == kind).sum())
        assert perfect[kind] == {"precision": 1.0, "recall": 1.0, "n_true": n, "n_predicted": n}
    # Only the cells predicted to change listed, half of the new ones and a wrong one.
    new = change[change["kind"] == "new"]
    wrong = change[change["kind"] == ""].iloc[:1].assign(kind="new")
    half = pd.concat([new.iloc[: len(new) // 2], wrong])[["lat", "lon", "kind"]]
    half["lat"] += 0.001  # off the centroid, still in the cell
    scores = score_change(half, country, 2019, 2023)
    assert scores["new"]["n_predicted"] == len(new) // 2 + 1
    assert scores["new"]["precision"] == pytest.approx((len(new) // 2) / (len(new) // 2 + 1))
    assert scores["new"]["recall"] == pytest.approx((len(new) // 2) / len(new))
    assert scores["abandoned"]["n_predicted"] == 0 and np.isnan(scores["abandoned"]["precision"])
    assert scores["abandoned"]["recall"] == 0
    with pytest.raises(ValueError, match="more than once"):
        score_change(pd.concat([half, half]), country, 2019, 2023)
    with pytest.raises(ValueError, match="not in the country"):
        score_change(half.assign(lat=half["lat"] + 50), country, 2019, 2023)
    with pytest.raises(ValueError, match="kind"):
        score_change(half.assign(kind="spread"), country, 2019, 2023)


def test_rejects_bad_arguments(tmp_path):
    for kwargs in (dict(years=(2019,)), dict(years=(2019, 2019)), dict(n_cells=10), dict(year_noise=-1),
                   dict(revisit_share=2), dict(n_labels=5)):
        with pytest.raises(ValueError):
            make_country_years(tmp_path, **kwargs)
