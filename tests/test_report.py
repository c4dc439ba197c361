"""What a person receives: the COG, hotspots, feature importance, district totals, the map
and the report page, checked against the predictions and opened in a real browser."""

from __future__ import annotations

import json
import os
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from builders import chromium
from pyproj import Geod
from shapely.geometry import box

from asm_dask.errors import InputError
from asm_dask.report.districts import district_totals, read_boundaries
from asm_dask.report.hotspots import find_hotspots
from asm_dask.report.importance import PERMUTATION_REPEATS, feature_importance, permutation_auc_drops
from asm_dask.report.raster import CellRaster, rasterize_cells

REPORT_FILES = ["probability.tif", "hotspots.geojson", "hotspots.csv", "feature_importance.csv",
                "admin_summary.csv", "admin_summary.geojson", "map.html", "report.html"]


@pytest.fixture(scope="module")
def districts_file(country, tmp_path_factory):
    """Two districts splitting the country at a longitude, and one far away, in Web
    Mercator (the run must reproject them)."""
    cells = pd.read_csv(country.truth_cells) if str(country.truth_cells).endswith(".csv") \
        else pd.read_parquet(country.truth_cells)
    lon, lat = cells["lon"], cells["lat"]
    split = float(np.round(lon.median(), 2)) + 0.003  # not on a cell edge or centre
    pad = 1.0
    frame = gpd.GeoDataFrame(
        {"district": ["West", "East", "Faraway"]},
        geometry=[box(lon.min() - pad, lat.min() - pad, split, lat.max() + pad),
                  box(split, lat.min() - pad, lon.max() + pad, lat.max() + pad),
                  box(100, 40, 101, 41)], crs="EPSG:4326").to_crs("EPSG:3857")
    path = tmp_path_factory.mktemp("districts") / "districts.gpkg"
    frame.to_file(path)
    return path, split


@pytest.fixture(scope="module")
def report_run(country, districts_file, tmp_path_factory, client):
    import asm_dask

    out = tmp_path_factory.mktemp("report-run") / "out"
    run = asm_dask.run({"labels": {"path": str(country.labels)}, "features": {"path": str(country.features)},
                        "output": str(out), "report": {"hotspot_threshold": 0.4, "boundaries": {
                            "path": str(districts_file[0]), "name_column": "district"}}}, client)
    return out, run.metrics.as_dict()


def _predictions(out) -> gpd.GeoDataFrame:
    return gpd.read_parquet(out / "predictions")


def test_every_report_file_is_written(report_run):
    out, metrics = report_run
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "figures" / "feature_maps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n_hotspots"] == metrics["n_hotspots"] == len(pd.read_csv(out / "hotspots.csv"))
    assert saved["hotspot_threshold"] == 0.4


def test_cog_is_valid_and_reads_back_equal_to_the_predictions(report_run, country):
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    out, _ = report_run
    valid, errors, _ = cog_validate(str(out / "probability.tif"))
    assert valid, errors
    predictions = _predictions(out)
    with rasterio.open(out / "probability.tif") as tif:
        assert tif.crs.to_epsg() == 4326 and tif.dtypes == ("float32",) and np.isnan(tif.nodata)
        assert tif.block_shapes == [(256, 256)]
        assert tif.res == pytest.approx((0.01, 0.01))
        image = tif.read(1)
        # Pixel centres on cell centroids: the pixel holding each centroid is that cell's.
        from rasterio.transform import rowcol, xy

        rows, cols = rowcol(tif.transform, predictions["lon"].to_numpy(), predictions["lat"].to_numpy())
        got = image[np.asarray(rows), np.asarray(cols)]
        np.testing.assert_array_equal(got, predictions["probability"].to_numpy(np.float32))
        centre_x, centre_y = xy(tif.transform, np.asarray(rows), np.asarray(cols))
        np.testing.assert_allclose(centre_x, predictions["lon"], atol=1e-9)
        np.testing.assert_allclose(centre_y, predictions["lat"], atol=1e-9)
        assert np.isfinite(image).sum() == len(predictions) == country.n_cells  # nodata elsewhere


def _raster_from_cells(cells: dict[tuple[int, int], float], shape=(8, 10)) -> CellRaster:
    values = np.full(shape, np.nan, np.float32)
    values[:] = 0.1
    for (row, col), p in cells.items():
        values[row, col] = p
    values[7, 9] = np.nan  # no cell here
    return CellRaster(values, west=10.0, north=5.0, cell_size=0.01)


def test_hotspots_on_a_grid_with_known_clusters():
    # A: an L of three cells plus one meeting it only at a corner (8-neighbour: one hotspot).
    # B: one very likely cell. C: two cells, just at the threshold. A 0.49 cell is not one.
    raster = _raster_from_cells({(1, 1): 0.6, (1, 2): 0.7, (2, 1): 0.8, (3, 2): 0.9,
                                 (4, 9): 0.95, (5, 5): 0.5, (5, 6): 0.5, (0, 9): 0.49})
    centre = lambda r, c: (5.0 - (r + 0.5) * 0.01, 10.0 + (c + 0.5) * 0.01)  # noqa: E731
    # One label inside A, one on the shared edge between B's cell and the one north of it
    # (cells are open to the north, so it lies in B's northern neighbour, not in B), one far.
    a_lat, a_lon = centre(2, 1)
    b_edge_lat = 5.0 - 4 * 0.01
    labels_lat = np.array([a_lat + 0.001, b_edge_lat, 4.0])
    labels_lon = np.array([a_lon, centre(4, 9)[1], 10.0])
    hot = find_hotspots(raster, 0.5, labels_lat, labels_lon)
    assert list(hot["rank"]) == [1, 2, 3]
    assert list(hot["n_cells"]) == [4, 2, 1]
    np.testing.assert_allclose(hot["expected_asm_cells"], [3.0, 1.0, 0.95], rtol=1e-6)
    np.testing.assert_allclose(hot["mean_probability"], [0.75, 0.5, 0.95], rtol=1e-6)
    np.testing.assert_allclose(hot["max_probability"], [0.9, 0.5, 0.95], rtol=1e-6)
    assert list(hot["n_asm_labels"]) == [1, 0, 0]
    assert list(hot["field_validation_candidate"]) == [False, True, True]
    assert hot["distance_to_nearest_asm_label_km"].iloc[0] == 0
    # B's nearest label is on its northern edge: half a cell (0.005 degrees) from its centre.
    assert hot["distance_to_nearest_asm_label_km"].iloc[2] == pytest.approx(0.005 * 111.195, rel=1e-3)
    # Geometry: A is the union of its four squares, two pieces meeting at a corner.
    a = hot.geometry.iloc[0]
    expected = shapely.union_all([box(10 + c * 0.01, 5 - (r + 1) * 0.01, 10 + (c + 1) * 0.01, 5 - r * 0.01)
                                  for r, c in [(1, 1), (1, 2), (2, 1), (3, 2)]])
    assert a.is_valid and a.geom_type == "MultiPolygon" and a.symmetric_difference(expected).area < 1e-12
    assert all(g.is_valid for g in hot.geometry)
    # Geodesic area: four cells of about 1.1 x 1.1 km near the equator.
    geod = Geod(ellps="WGS84")
    assert hot["area_km2"].iloc[0] == pytest.approx(abs(geod.geometry_area_perimeter(expected)[0]) / 1e6,
                                                    rel=1e-4)
    assert hot["lat"].iloc[2] == pytest.approx(centre(4, 9)[0]) and hot["peak_lon"].iloc[0] == pytest.approx(
        centre(3, 2)[1])


def test_no_cell_at_the_threshold_means_no_hotspot():
    hot = find_hotspots(_raster_from_cells({}), 0.5, np.array([]), np.array([]))
    assert len(hot) == 0 and "rank" in hot.columns


def test_hotspots_file_matches_the_predictions(report_run):
    out, metrics = report_run
    predictions = _predictions(out)
    hot = gpd.read_file(out / "hotspots.geojson")
    csv = pd.read_csv(out / "hotspots.csv")
    assert len(hot) == len(csv) == metrics["n_hotspots"] > 0
    likely = predictions[predictions["probability"] >= 0.4]
    # Every likely cell's centroid is in exactly one hotspot, and no other cell's is.
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(predictions["lon"], predictions["lat"]), crs=4326)
    joined = gpd.sjoin(points, hot[["rank", "geometry"]], predicate="within")
    assert sorted(joined.index) == sorted(likely.index)
    sums = predictions.loc[joined.index, "probability"].groupby(joined["rank"].to_numpy()).sum()
    np.testing.assert_allclose(sums.sort_index().to_numpy(), csv.sort_values("rank")["expected_asm_cells"],
                               rtol=1e-5)
    assert csv["expected_asm_cells"].is_monotonic_decreasing


def test_district_sums_equal_the_predictions(report_run, districts_file):
    out, metrics = report_run
    split = districts_file[1]
    predictions = _predictions(out)
    summary = pd.read_csv(out / "admin_summary.csv").set_index("name")
    west = predictions["lon"] < split
    for name, cells in (("West", predictions[west]), ("East", predictions[~west])):
        assert summary.loc[name, "n_cells"] == len(cells)
        assert summary.loc[name, "expected_asm_cells"] == pytest.approx(cells["probability"].sum(), rel=1e-9)
        assert summary.loc[name, "mean_probability"] == pytest.approx(cells["probability"].mean(), rel=1e-9)
    assert summary.loc["Faraway", "n_cells"] == 0 and metrics["n_cells_outside_districts"] == 0
    assert list(summary["rank"]) == [1, 2, 3] and summary["expected_asm_cells"].is_monotonic_decreasing
    # A 1 x 1 degree box at 40-41 N, 100 E: about 9,400 km2 on the ellipsoid.
    assert 9_300 < summary.loc["Faraway", "area_km2"] < 9_500
    assert len(gpd.read_file(out / "admin_summary.geojson")) == 3


def test_boundaries_overlapping_no_cell_or_without_the_name_column(tmp_path):
    from asm_dask.config import BoundariesConfig

    path = tmp_path / "elsewhere.geojson"
    gpd.GeoDataFrame({"NAME_2": ["A"]}, geometry=[box(100, 40, 101, 41)], crs=4326).to_file(path)
    with pytest.raises(InputError, match=r"elsewhere.geojson: its 1 polygons overlap no cell"):
        read_boundaries(BoundariesConfig(str(path), "NAME_2"), [(-12, 7, -10, 9)])
    with pytest.raises(InputError, match=r"no column 'district'.*\['NAME_2'\]"):
        read_boundaries(BoundariesConfig(str(path), "district"), [(-12, 7, -10, 9)])


def test_a_boundary_file_overlapping_no_cell_stops_the_run_before_any_output(country, tmp_path):
    from builders import cli, write_job

    path = tmp_path / "elsewhere.geojson"
    gpd.GeoDataFrame({"n": ["A"]}, geometry=[box(100, 40, 101, 41)], crs=4326).to_file(path)
    job = write_job(tmp_path, country.labels, country.features,
                    report={"boundaries": {"path": str(path), "name_column": "n"}})
    done = cli("run", job)
    assert done.returncode == 2, done.stderr
    assert "overlap no cell" in done.stderr and "Traceback" not in done.stderr
    assert os.listdir(tmp_path / "out") == ["asm-dask.log"]  # found reading the data: only the log


def test_district_totals_count_cells_outside_every_district():
    grid = pd.DataFrame({"lat": [0.005, 0.005, 0.015], "lon": [0.005, 0.015, 0.005],
                         "probability": [0.2, 0.4, 0.9]})
    # Two districts sharing the border x = 0.01 exactly, through no centroid; one cell outside.
    boundaries = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[box(0, 0, 0.01, 0.01), box(0.01, 0, 0.02, 0.01)],
                                  crs=4326)
    table, cell_district = district_totals(boundaries, grid)
    outside = int((cell_district < 0).sum())
    assert outside == 1
    assert dict(zip(table["name"], table["n_cells"])) == {"a": 1, "b": 1}
    assert list(table["name"]) == ["b", "a"]  # ranked by expected ASM cells
    assert cell_district.tolist() == [1, 0, -1]  # each cell's row of the ranked table


def test_permutation_importance_equals_rescoring_each_permuted_feature():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    coef = np.array([2.0, -1.0, 0.0, 0.5, 0.0, 0.1])
    y = (X @ coef + rng.normal(size=120) > 0).astype(int)
    drops = permutation_auc_drops(coef, X, y, seed=7)
    base = roc_auc_score(y, X.astype(np.float64) @ coef)
    order = np.random.default_rng(7).permutation(120)
    for j in range(6):
        permuted = X.astype(np.float64).copy()
        permuted[:, j] = permuted[order, j]
        assert drops[0, j] == pytest.approx(base - roc_auc_score(y, permuted @ coef), abs=1e-12)
    assert np.all(drops[:, [2, 4]] == 0)  # a feature with no weight changes nothing
    table = feature_importance([f"f{j}" for j in range(6)], coef, X, X, y, seed=7)
    assert list(table["feature"][:2]) == ["f0", "f1"] and list(table["rank"]) == list(range(1, 7))
    np.testing.assert_allclose(table.set_index("feature").loc["f3", "standardized_coefficient"],
                               0.5 * X[:, 3].std(dtype=np.float64))
    assert drops.shape == (PERMUTATION_REPEATS, 6)


def test_feature_importance_file_ranks_every_feature(report_run, country):
    out, metrics = report_run
    table = pd.read_csv(out / "feature_importance.csv")
    model = json.loads((out / "model.json").read_text())
    assert len(table) == metrics["n_features"] and sorted(table["feature"]) == sorted(model["feature_names"])
    coef = dict(zip(model["feature_names"], model["coef"]))
    np.testing.assert_allclose(table["coefficient"], table["feature"].map(coef))
    assert table["permutation_auc_drop"].is_monotonic_decreasing or table["permutation_auc_drop"].iloc[0] > 0


def test_rasterize_cells_on_a_frame_leaves_outside_cells_out():
    frame = CellRaster(np.zeros((2, 2), np.float32), west=0.0, north=0.02, cell_size=0.01)
    raster = rasterize_cells([0.005, 0.015, 0.5], [0.005, 0.015, 0.5], [1, 2, 3], 0.01, frame=frame)
    assert raster.values[1, 0] == 1 and raster.values[0, 1] == 2 and np.isnan(raster.values).sum() == 2


# --- in a real browser -------------------------------------------------------------------------------

def _screenshot_colours(path, tmp_path, size: str) -> np.ndarray:
    from matplotlib.image import imread

    png = tmp_path / "shot.png"
    done = chromium(f"--window-size={size}", f"--screenshot={png}", f"file://{path}", tmp_path=tmp_path)
    assert png.exists(), done.stderr[-2000:]
    return imread(png)[..., :3]


def test_map_renders_its_data_layers_offline(report_run, tmp_path):
    out, metrics = report_run
    done = chromium("--dump-dom", f"file://{out / 'map.html'}", tmp_path=tmp_path)
    dom = done.stdout
    assert done.returncode == 0 and dom, done.stderr[-2000:]
    # The probability image layer, Mercator-projected, embedded.
    assert re.search(r'<img[^>]*src="data:image/png;base64,[^"]{100,}"[^>]*class="[^"]*leaflet-image-layer', dom) \
        or re.search(r'<img[^>]*class="[^"]*leaflet-image-layer[^"]*"[^>]*src="data:image/png', dom)
    # One outline per hotspot, one marker per label, one shape per district.
    assert len(re.findall(r'<path[^>]*class="[^"]*asm-hotspot', dom)) == metrics["n_hotspots"]
    assert len(re.findall(r'<path[^>]*class="[^"]*asm-label', dom)) == metrics["n_labels_kept"]
    assert 'id="asm-legend"' in dom and "ASM labels" in dom and "Districts" in dom
    assert not re.search(r'<script[^>]*src="https?://', dom)  # Leaflet itself is inlined
    pixels = _screenshot_colours(out / "map.html", tmp_path, "1000,800")
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50  # not blank


def test_report_page_is_self_contained_and_renders(report_run, tmp_path):
    out, metrics = report_run
    html = (out / "report.html").read_text()
    assert not re.search(r'<(img|script|link)[^>]*(src|href)="(?!data:)', html)  # nothing beside it
    done = chromium("--dump-dom", f"file://{out / 'report.html'}", tmp_path=tmp_path)
    dom = done.stdout
    assert len(re.findall(r'<img[^>]*src="data:image/png;base64,', dom)) == 7  # the sample's map among them
    # the labels hold random ones: the estimates, with the figure to quote in words
    estimates = metrics["estimates"]
    assert re.search(r'<table id="estimates">(.*?)</table>', dom, re.S).group(1).count("<tr>") == 4
    quoted = estimates["area_km2"][estimates["quote"]]
    assert f"{quoted['estimate']:,.0f} km² of ASM, 95% interval {quoted['ci95'][0]:,.0f} to " \
           f"{quoted['ci95'][1]:,.0f} km²" in dom
    hotspot_rows = re.search(r'<table id="hotspots">(.*?)</table>', dom, re.S).group(1)
    assert hotspot_rows.count("<tr>") == 1 + min(20, metrics["n_hotspots"])
    assert re.search(r'<table id="districts">.*West.*East.*Faraway', dom, re.S)
    assert f"{metrics['test_auc_calibrated']:.3f}" in dom and "field validation" in dom
    pixels = _screenshot_colours(out / "report.html", tmp_path, "1100,2000")
    assert pixels.std() > 0.05 and len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 100


def test_district_totals_when_a_step_of_cells_meets_no_district(monkeypatch):
    import asm_dask.report.districts as districts

    monkeypatch.setattr(districts, "CELLS_PER_STEP", 2)
    grid = pd.DataFrame({"lat": [0.005, 0.005, 0.015], "lon": [0.005, 0.015, 0.005],
                         "probability": [0.2, 0.4, 0.9]})
    boundaries = gpd.GeoDataFrame({"name": ["far"]}, geometry=[box(5, 5, 6, 6)], crs=4326)
    table, cell_district = district_totals(boundaries, grid)
    outside = int((cell_district < 0).sum())
    assert outside == 3 and table["n_cells"].tolist() == [0]


def test_boundaries_without_geometry_are_one_line(tmp_path):
    from asm_dask.config import BoundariesConfig

    path = tmp_path / "names.csv"
    path.write_text("name,x\nA,1\n")
    with pytest.raises(InputError, match=r"names.csv: no geometry"):
        read_boundaries(BoundariesConfig(str(path), "name"), [(-12, 7, -10, 9)])


def test_a_country_raster_is_thinned_to_the_pixels_a_figure_shows():
    """A figure shows a whole country's raster at most one cell per pixel: the middle cell
    of each block is kept, as the nearest-cell resampling would keep one, in place."""
    values = np.arange(2400 * 1500, dtype=np.float64).reshape(2400, 1500)
    raster = CellRaster(values, west=12.0, north=10.5, cell_size=0.01)
    thinned = raster.thinned(1080)
    assert thinned.shape == (800, 500) and thinned.cell_size == pytest.approx(0.03)
    assert thinned.values[0, 0] == values[1, 1] and thinned.values[-1, -1] == values[2398, 1498]
    lat, lon = thinned.centres(np.array([5]), np.array([7]))
    assert raster.values[raster.pixel_of(lat, lon)] == thinned.values[5, 7]  # each kept cell where it was
    np.testing.assert_allclose(thinned.bounds, raster.bounds)
    small = CellRaster(values[:300, :330], west=12.0, north=10.5, cell_size=0.01)
    assert small.thinned(1080) is small  # Sierra Leone's size: every cell drawn
