"""A job of a feature table per year: each label joined to its own year's features, one
model, a map of every year and the changes between them; years that are not one kind of
features on one grid refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from builders import chromium, cli, grid_features, labels_frame, write_feather

import asm_dask
from asm_dask.config import job_from_dict
from asm_dask.errors import InputError
from asm_dask.read.labels import read_labels

LATS = np.round(np.arange(8.005, 8.205, 0.01), 3)
LONS = np.round(np.arange(-11.995, -11.795, 0.01), 3)


def _year_tables(folder, shift: float = 0.0, names: str = "feature_"):
    """The same 20 x 20 cells in 2019 and 2021; ``feature_0`` is the year's own mark (0 in
    2019, 1 in 2021), the others the same random values both years."""
    paths = {}
    for year, mark in ((2019, 0.0), (2021, 1.0)):
        frame = grid_features(LATS + (shift if year == 2021 else 0), LONS, n_features=6, seed=1)
        frame["feature_0"] = np.float32(mark)
        frame.columns = ["image_id"] + [c.replace("feature_", names if year == 2021 else "feature_")
                                        for c in frame.columns[1:]]
        paths[year] = write_feather(frame, folder / f"f{year}.feather")
    return paths


def _labels(folder, with_years=True):
    """The same cell labelled in both years (ASM in 2021 only), and a few others."""
    rng = np.random.default_rng(0)
    lat, lon = rng.choice(LATS, 60), rng.choice(LONS, 60)
    frame = labels_frame(list(zip(lon, lat)), rng.integers(0, 2, 60))
    frame["year"] = np.where(np.arange(60) % 2, 2021, 2019)
    frame.loc[0, ["lon", "lat", "label", "year"]] = [LONS[3], LATS[4], 0, 2019]
    frame.loc[1, ["lon", "lat", "label", "year"]] = [LONS[3], LATS[4], 1, 2021]
    if not with_years:
        frame = frame.drop(columns="year")
    path = folder / "labels.csv"
    frame.to_csv(path, index=False)
    return path


def _job(folder, paths, labels_path, labels=None, **extra):
    return job_from_dict({"labels": {"path": str(labels_path), "filters": None} | (labels or {}),
                          "features": {"years": {year: str(path) for year, path in paths.items()}},
                          "output": str(folder / "out"), **extra})


def test_each_label_is_joined_to_its_own_years_features(tmp_path, client):
    from asm_dask.pipeline.years import join_years, open_years

    job = _job(tmp_path, _year_tables(tmp_path), _labels(tmp_path))
    labels = read_labels(job.labels, (), job.years)
    joined, X = join_years({year: labels.of_year(year) for year in job.years}, open_years(job, client)[0], job,
                           client)
    rows = joined.rows
    assert len(rows) == 60 and sorted(set(rows["year"])) == [2019, 2021]
    # feature_0 is the year's mark: every label saw its own year's features, never the other's
    np.testing.assert_array_equal(X[:, 0], (rows["year"] == 2021).astype(np.float32))
    same_cell = rows[rows["label_row"].isin([1, 2])].sort_values("year")
    assert same_cell["cell_id"].nunique() == 1 and same_cell["label"].tolist() == [0, 1]
    assert X[same_cell.index, 0].tolist() == [0.0, 1.0]


def test_labels_without_a_year_take_the_jobs_year_and_a_missing_one_is_one_line(tmp_path):
    paths = _year_tables(tmp_path)
    labels = _labels(tmp_path, with_years=False)
    job = _job(tmp_path, paths, labels, labels={"year": 2021})
    assert set(read_labels(job.labels, (), job.years).points["year"]) == {2021}
    with pytest.raises(InputError, match=r"labels.csv: row 1: a label without a year \(60 of 60\); .*labels.year"):
        read_labels(_job(tmp_path, paths, labels).labels, (), (2019, 2021))
    frame = pd.read_csv(labels)
    frame["date"] = "2019-03-01"
    frame.loc[5, "date"] = "2020-07-15"
    frame.to_csv(labels, index=False)
    with pytest.raises(InputError, match=r"row 6: a label of 2020, a year without features \(features.years: "
                                         r"2019, 2021\); 1 label\(s\) of year\(s\) 2020 in all"):
        read_labels(job.labels, (), job.years)
    frame.loc[5, "date"] = "sometime"
    frame.to_csv(labels, index=False)
    with pytest.raises(InputError, match=r"row 6: date 'sometime' is not a date"):
        read_labels(job.labels, (), job.years)
    frame["year"] = 2019.5
    frame.to_csv(labels, index=False)
    with pytest.raises(InputError, match=r"row 1: year must be a whole number, got 2019.5"):
        read_labels(job.labels, (), job.years)


@pytest.mark.parametrize(("features", "message"), [
    ({"years": {"twenty": "a.feather"}}, "features.years.twenty: expected a year from 1800 to 2200 as the key"),
    ({"years": {2019: {"path": "a.feather", "cell_size": 0.1}, 2021: "b.feather"}}, r"features.years.2019: unknown key\(s\) "
                                                                  r"\['cell_size'\]"),
    ({"path": "a.feather", "years": {2019: "a.feather", 2021: "b.feather"}}, "features: expected either path .* or years: a table "
                                                          "per year, not both"),
    ({"cell_size": 0.01}, r"features: expected a path \(one table\) or years \(a table per year\)"),
    ({"years": {2019: 5, 2021: "b.feather"}}, "features.years.2019: expected a path, a list of tables joined by "
                                              "cell, or a mapping"),
    ({"years": {2019: "a.feather"}}, r"features.years: expected two years or more, each with its feature table "
                                     r"\(one year's table is features.path\)"),
])
def test_a_wrong_years_setting_is_one_line(features, message):
    with pytest.raises(InputError, match=message):
        job_from_dict({"labels": "l.csv", "features": features, "output": "o"})


def test_years_read_as_one_table_per_year_with_shared_settings():
    job = job_from_dict({"labels": {"path": "l.csv", "year": 2023}, "output": "o",
                         "features": {"cell_size": 0.002, "store": "never",
                                      "years": {2023: "c.parquet", "2019": ["a.parquet", "b.parquet"]}}})
    assert job.years == (2019, 2023)
    first = job.of_year(2019).features
    assert (first.path.endswith("a.parquet") and first.join[0].path.endswith("b.parquet")
            and first.cell_size == 0.002 and first.store == "never" and not first.years)
    assert job.of_year(2023).features.path.endswith("c.parquet")


def test_the_year_of_the_labels_is_a_year_of_the_job_and_only_of_a_years_job(tmp_path):
    paths = {year: str(path) for year, path in _year_tables(tmp_path).items()}
    with pytest.raises(InputError, match=r"labels.year: expected null in a job of one feature table"):
        job_from_dict({"labels": {"path": "l.csv", "year": 2019}, "features": paths[2019], "output": "o"})
    with pytest.raises(InputError, match=r"labels.year: expected one of features.years \(2019, 2021\), got 2020"):
        job_from_dict({"labels": {"path": "l.csv", "year": 2020}, "features": {"years": paths}, "output": "o"})


def test_dates_written_as_numbers_are_years_or_days_not_nanoseconds(tmp_path):
    labels = _labels(tmp_path, with_years=False)
    frame = pd.read_csv(labels)
    frame["date"] = np.where(np.arange(len(frame)) % 2, 2021, 20190630)
    frame.to_csv(labels, index=False)
    job = _job(tmp_path, _year_tables(tmp_path), labels)
    years = read_labels(job.labels, (), job.years).points["year"].to_numpy()
    np.testing.assert_array_equal(years, np.where(np.arange(len(frame)) % 2, 2021, 2019))


def test_a_year_table_named_twice_is_one_line(tmp_path, client):
    from asm_dask.pipeline.years import open_years

    paths = _year_tables(tmp_path)
    with pytest.raises(InputError, match=r"f2019.feather: the table of both 2019 and 2021 \(features.years\)"):
        open_years(_job(tmp_path, {2019: paths[2019], 2021: paths[2019]}, _labels(tmp_path)), client)


def test_a_run_into_the_folder_of_another_kind_of_run_leaves_none_of_its_maps(tmp_path, client):
    paths, labels = _year_tables(tmp_path), _labels(tmp_path)
    out = tmp_path / "out"
    one_table = {"labels": {"path": str(labels), "filters": None}, "features": str(paths[2021]), "output": str(out),
                 "split": {"test_size": 0.3}, "model": {"cv_folds": 3}}
    asm_dask.run(one_table, client)
    assert (out / "predictions").is_dir() and (out / "probability.tif").is_file()
    asm_dask.run({**one_table, "features": {"years": {year: str(path) for year, path in paths.items()}}}, client)
    assert not (out / "predictions").exists() and not (out / "probability.tif").exists()
    assert (out / "years" / "2019" / "predictions").is_dir() and (out / "changes" / "2019-2021").is_dir()
    asm_dask.run(one_table, client)
    assert not (out / "years").exists() and not (out / "changes").exists() and not (out / "years.csv").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"shift": 0.005}, r"f2021.feather: none of its 400 cells is a cell of 2019's table .*: every year's table "
                       "is on one grid"),
    ({"names": "band_"}, r"f2021.feather: the features of 2021 are not those of 2019 .*: 6 columns "
                         r"band_0..band_5 against 6 columns feature_0..feature_5"),
])
def test_years_that_are_not_one_kind_of_features_on_one_grid_are_one_line(tmp_path, client, change, message):
    from asm_dask.pipeline.years import open_years

    job = _job(tmp_path, _year_tables(tmp_path, **change), _labels(tmp_path))
    with pytest.raises(InputError, match=message):
        open_years(job, client)


@pytest.fixture(scope="module")
def two_year_run(tmp_path_factory, client):
    """A run of the small country's features as 2019 and, with a block of cells made to
    look like the likeliest mine, as 2021."""
    from asm_dask.demo import make_country

    folder = tmp_path_factory.mktemp("two-years")
    files = make_country(folder / "data", n_cells=1500, n_features=40, n_labels=700, seed=3)
    labels = pd.read_csv(files.labels)
    labels["year"] = np.where(np.arange(len(labels)) % 3, 2019, 2021)
    labels.to_csv(folder / "labels.csv", index=False)
    later = folder / "features_2021.feather"  # the same features, in a file of that year's
    later.write_bytes(files.features.read_bytes())
    job = {"labels": str(folder / "labels.csv"), "output": str(folder / "out"),
           "features": {"years": {2019: str(files.features), 2021: str(later)}},
           "report": {"boundaries": {"path": str(files.districts), "name_column": "name"}}}
    return asm_dask.run(job, client), job, files


def test_a_run_of_two_years_maps_each_and_compares_them(two_year_run):
    run, _, files = two_year_run
    out = run.folder
    assert run.years == (2019, 2021)
    metrics = json.loads(open(f"{out}/metrics.json").read())
    assert set(metrics["years"]) == {"2019", "2021"}
    assert sum(year["n_labels_joined"] for year in metrics["years"].values()) == metrics["n_labels_joined"]
    # the same features both years: the same map, no change
    first, second = (pd.read_parquet(f"{out}/years/{year}/predictions").sort_values("cell_id") for year in run.years)
    np.testing.assert_array_equal(first["probability"].to_numpy(), second["probability"].to_numpy())
    change = json.loads(open(f"{out}/changes/2019-2021/change.json").read())
    assert change["n_new_cells"] == change["n_abandoned_cells"] == 0 and change["n_cells_compared"] == len(first)
    assert metrics["changes"] == [change]
    # a cell's labels of both years are on one side of the split
    cells = pd.read_csv(f"{out}/labelled_cells.csv")
    assert set(cells["year"]) == {2019, 2021}
    assert (cells.groupby("cell_id")["split"].nunique() == 1).all()
    assert (cells.groupby("cell_id")["year"].nunique() > 1).any()
    series = pd.read_csv(f"{out}/years.csv")
    assert series["year"].tolist() == [2019, 2021] and series["expected_asm_km2"].nunique() == 1
    districts = pd.read_csv(f"{out}/district_years.csv")
    assert len(districts) == 2 * 9 and districts.groupby("year")["expected_asm_km2"].sum().round(6).nunique() == 1
    assert np.isclose(districts["expected_asm_km2"].sum() / 2, series["expected_asm_km2"][0])
    report = open(f"{out}/report.html").read()
    assert 'id="years"' in report and 'id="changes"' in report and 'id="district-years"' in report
    page = open(f"{out}/map.html").read()
    assert "ASM probability 2019" in page and "ASM probability 2021" in page


def test_every_year_resumes_on_its_own_and_its_map_is_a_prediction(two_year_run, client):
    run, job, files = two_year_run
    again = asm_dask.run(job, client)
    for year in run.years:
        manifest = json.loads(open(f"{again.folder}/years/{year}/manifest.json").read())
        assert manifest["resumed_partitions"] == manifest["n_partitions"] > 0
        assert manifest["model_hash"] == again.manifest["model_hash"]
    with pytest.raises(InputError, match="a run of a map per year"):
        asm_dask.change(run.folder, f"{run.folder}/years/2021")
    with pytest.raises(InputError, match=r"changes/2019-2021: is .*out, or in it; the change goes to a folder of its"):
        asm_dask.change(f"{run.folder}/years/2019", f"{run.folder}/years/2021", out=f"{run.folder}/changes/2019-2021")
    with pytest.raises(InputError, match=r"years/2021: the map of 2021 of the run in .*out; give the run's folder"):
        asm_dask.predict(f"{run.folder}/years/2021", files.features, out=f"{run.folder}-p", client=client)
    year = run.year(2021)
    assert year.kind == "run year" and year.metrics.n_cells == run.metrics.n_cells
    assert len(run.predictions().compute()) == run.metrics.n_cells
    # the model on a year the job did not map: a prediction, as of any run's model
    later = asm_dask.predict(run, files.features, out=f"{run.folder}-2025", client=client)
    assert later.metrics.n_cells == run.metrics.n_cells
    assert later.model_card["model"]["model_hash"] == run.manifest["model_hash"]
    change = asm_dask.change(year, later, out=f"{run.folder}-change").change.counts
    assert change["n_new_cells"] == change["n_abandoned_cells"] == 0


@pytest.fixture(scope="module")
def spreading_country(tmp_path_factory, client):
    """A country whose mining spreads over 2019, 2021 and 2023 (rivers worked further each
    year, clusters that open and stop), run as one job of a table per year."""
    from asm_dask.demo.years import make_country_years

    folder = tmp_path_factory.mktemp("spreading")
    files = make_country_years(folder / "data", n_cells=5000, n_features=200, seed=0)
    run = asm_dask.run({"labels": str(files.labels), "output": str(folder / "out"),
                        "features": {"years": {year: str(path) for year, path in files.features.items()}},
                        "report": {"boundaries": {"path": str(files.districts), "name_column": "name"}}}, client)
    return run, files


def test_a_field_sample_is_drawn_from_the_last_years_map_or_the_year_given(spreading_country):
    """A run of a table per year has a map per year: the sample for the field is drawn from
    the last one's, or from the year whose map is given (``run.year(...)`` or its folder)."""
    run, _ = spreading_country
    parent = run.folder.rstrip("/").rsplit("/", 1)[0]
    for given, year in ((run, 2023), (run.year(2019), 2019)):
        drawn = asm_dask.sample(given, n=40, seed=3)
        assert drawn.design["year"] == year and drawn.design["run"] == run.folder
        assert drawn.files["csv"] == f"{parent}/sample_{year}_3/sample.csv"
        assert pd.read_csv(drawn.files["csv"])["unique_id"].iloc[0] == f"S{year}-3-00000"  # apart from other years
        probability = pd.read_parquet(f"{run.folder}/years/{year}/predictions").set_index(["lat", "lon"])["probability"]
        assert np.array_equal(drawn.cells["probability"], probability.loc[list(zip(drawn.cells.lat, drawn.cells.lon))])
    done = cli("sample", f"{run.folder}/years/2021", "--n", 30, "--out", f"{parent}/sample_cli")
    assert done.returncode == 0, done.stderr
    assert json.loads(open(f"{parent}/sample_cli/design.json").read())["year"] == 2021


def _changed_cells(run, first: int, second: int) -> pd.DataFrame:
    """Every cell of both years' maps with the kind of change cluster its centre lies in."""
    import geopandas as gpd

    cells = pd.read_parquet(f"{run.folder}/years/{first}/predictions", columns=["lat", "lon"])
    points = gpd.GeoDataFrame(cells, geometry=gpd.points_from_xy(cells.lon, cells.lat), crs=4326)
    inside = gpd.sjoin(points, run.change(first, second)[["kind", "geometry"]], predicate="within")
    cells["kind"] = inside["kind"].reindex(cells.index).fillna("")
    return cells


def test_the_change_clusters_find_where_mining_spread_and_stopped(spreading_country):
    """Measured (precision, recall of the cells in change clusters): 2019-2021 new 0.83,
    0.66, abandoned 0.64, 0.77; 2021-2023 new 0.72, 0.72, abandoned 0.64, 0.51; 2019-2023
    new 0.86, 0.70, abandoned 0.79, 0.59. Plain scikit-learn ridge on the same labels:
    0.57 to 0.89 (asm_dask/demo/years.py)."""
    from sklearn.metrics import roc_auc_score

    from asm_dask.demo.years import score_change

    run, files = spreading_country
    years = sorted(files.features)
    scores = {(a, b): score_change(_changed_cells(run, a, b), files, a, b) for a, b in
              [(years[0], years[1]), (years[1], years[2]), (years[0], years[2])]}
    for pair, found in scores.items():
        for kind, score in found.items():
            assert score["n_true"] > 20 and score["precision"] > 0.45 and score["recall"] > 0.45, (pair, kind, score)
    first_to_last = scores[(years[0], years[2])]
    assert min(first_to_last["new"]["recall"], first_to_last["abandoned"]["recall"]) > 0.55
    assert min(first_to_last["new"]["precision"], first_to_last["abandoned"]["precision"]) > 0.7
    # the held-out labels, of every year, told apart nearly as well as their true probabilities do
    cells = pd.read_csv(f"{run.folder}/labelled_cells.csv")
    test = cells[cells["split"] == "test"].merge(pd.read_csv(files.truth_labels), on=["unique_id", "year"])
    truth_auc = roc_auc_score(test["label"], test["true_probability"])
    assert set(test["year"]) == set(years) and run.metrics.test_auc_calibrated > truth_auc - 0.05, \
        (run.metrics.test_auc_calibrated, truth_auc)
    # the map's expected ASM area grows as the planted mining does
    series = pd.read_csv(f"{run.folder}/years.csv")
    planted = [float(pd.read_parquet(files.truth_cells[year])["true_probability"].mean()) for year in years]
    assert np.all(np.diff(planted) > 0) and np.all(np.diff(series["expected_asm_km2"]) > 0)


def test_the_map_and_the_report_show_every_year_and_change_in_a_browser(spreading_country, tmp_path):
    import re

    run, files = spreading_country
    out = run.folder
    done = chromium("--dump-dom", f"file://{out}/map.html", tmp_path=tmp_path)
    dom = done.stdout
    assert done.returncode == 0 and dom, done.stderr[-2000:]
    for layer in ("ASM probability 2019", "ASM probability 2021", "ASM probability 2023", "Change 2019 to 2021",
                  "Change 2021 to 2023", "Change 2019 to 2023"):
        assert layer in dom, layer
    # the first-to-last change is on at first: a shape per cluster
    assert len(re.findall(r'<path[^>]*class="[^"]*asm-change', dom)) == len(run.change(2019, 2023))
    assert "ASM newly likely" in dom
    done = chromium("--dump-dom", f"file://{out}/report.html", tmp_path=tmp_path)
    dom = done.stdout
    assert re.search(r'<table id="years">(.*?)</table>', dom, re.S).group(1).count("<tr>") == 1 + 3
    assert re.search(r'<table id="changes">(.*?)</table>', dom, re.S).group(1).count("<tr>") == 1 + 3
    new = run.change(2019, 2023).query("kind == 'new'")
    rows = re.search(r'<table id="new-hotspots">(.*?)</table>', dom, re.S).group(1)
    assert rows.count("<tr>") == 1 + min(20, len(new)) and f"{new['area_km2'].iloc[0]:.2f}" in rows
    assert re.search(r'<table id="district-years">(.*?)</table>', dom, re.S).group(1).count("<tr>") == 1 + 9
    assert 'alt="ASM area by year" src="data:image/png;base64,' in dom


def test_ingest_builds_every_years_store_and_checks_the_years_alike(tmp_path):
    import yaml

    labels = _labels(tmp_path)
    job = tmp_path / "job.yaml"
    for names, expected in (("feature_", 0), ("band_", 2)):
        paths = _year_tables(tmp_path, names=names)
        job.write_text(yaml.safe_dump({"labels": str(labels), "output": str(tmp_path / "out"),
                                       "features": {"store": "always",
                                                    "years": {year: str(path) for year, path in paths.items()}}}))
        done = cli("ingest", job)
        assert done.returncode == expected, done.stderr[-2000:]
        if not expected:
            assert set(json.loads(done.stdout)) == {"2019.f2019", "2021.f2021"}
    last = done.stderr.strip().splitlines()[-1]
    assert "f2021.feather: the features of 2021 are not those of 2019" in last
