"""Featurize: random convolutional features and pooled statistics against plain
references, imagery read through reprojection and in tiles, and the table it writes read by
a run, on generated rasters in two UTM zones."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import yaml
from builders import cli, grid_features, labels_frame, write_feather
from pyproj import Transformer
from rasterio.transform import from_origin

import asm_dask
from asm_dask.errors import InputError
from asm_dask.featurization.convolve import rcf_features
from asm_dask.featurization.filters import FilterBank, empirical_filters, gaussian_filters, zca_whitened
from asm_dask.featurization.pool import pooled_features
from asm_dask.read.features import FEATURIZATION_KEY
from asm_dask.read.grid import parse_image_ids

# -- the arithmetic, against plain references ------------------------------------------------


def _reference_rcf(pixels: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    """Loops, as the definition reads: every complete window, every filter."""
    n_bands, height, width = pixels.shape
    k = weights.shape[2]
    responses = []
    for i in range(height - k + 1):
        for j in range(width - k + 1):
            window = pixels[:, i:i + k, j:j + k].astype(np.float64)
            if np.isfinite(window).all():
                responses.append([(window * w).sum() for w in weights.astype(np.float64)])
    conv = np.array(responses)
    return np.concatenate([np.maximum(conv - bias, 0).mean(axis=0), np.maximum(-conv - bias, 0).mean(axis=0)])


@pytest.mark.parametrize("bias", [0.0, 0.3])
def test_random_convolutional_features_equal_a_plain_reference(bias):
    rng = np.random.default_rng(3)
    pixels = rng.random((3, 23, 19)).astype(np.float32)
    pixels[:, 4, 7] = np.nan  # a missing pixel: the windows that touch it are left out
    pixels[1, 15, 2] = np.nan
    bank = gaussian_filters(n_filters=7, n_bands=3, kernel_size=3, bias=bias, seed=1)
    np.testing.assert_allclose(rcf_features(pixels, bank), _reference_rcf(pixels, bank.weights, bias),
                               rtol=1e-5, atol=1e-6)
    # more windows than one matrix product takes at once
    large = rng.random((2, 40, 40)).astype(np.float32)
    bank = gaussian_filters(n_filters=5, n_bands=2, kernel_size=2, bias=bias, seed=2)
    np.testing.assert_allclose(rcf_features(large, bank), _reference_rcf(large, bank.weights, bias),
                               rtol=1e-5, atol=1e-6)


def test_the_bias_enters_both_halves_as_a_threshold_as_in_the_paper():
    """ReLU(conv - b) and ReLU(-conv - b); torchgeo's second half, ReLU(-(conv + b)), is
    another feature when b != 0."""
    pixels = np.ones((1, 3, 3), dtype=np.float32)
    bank = FilterBank(np.ones((1, 1, 3, 3), dtype=np.float32), bias=2.0, mode="gaussian", seed=0)
    # one window, conv = 9: ReLU(9 - 2) = 7; ReLU(-9 - 2) = 0 (torchgeo's: ReLU(-(9 + 2)) = 0 too)
    np.testing.assert_array_equal(rcf_features(pixels, bank), [7.0, 0.0])
    bank = FilterBank(-np.ones((1, 1, 3, 3), dtype=np.float32), bias=-2.0, mode="gaussian", seed=0)
    # conv = -9: ReLU(-9 + 2) = 0; ReLU(9 + 2) = 11, where torchgeo's gives ReLU(-(-9 - 2)) = 11 and
    # its first half ReLU(-9 - 2) = 0; with conv = -1 the two differ:
    np.testing.assert_array_equal(rcf_features(pixels, bank), [0.0, 11.0])
    small = FilterBank(np.full((1, 1, 3, 3), 1 / 9, dtype=np.float32), bias=-2.0, mode="gaussian", seed=0)
    # conv = 1: ours ReLU(1 + 2) = 3 and ReLU(-1 + 2) = 1; torchgeo's ReLU(1 - 2) = 0 and ReLU(-(1 - 2)) = 1
    np.testing.assert_allclose(rcf_features(pixels, small), [3.0, 1.0], rtol=1e-6)


def test_whitening_is_the_papers():
    rng = np.random.default_rng(0)
    patches = rng.random((500, 12)) @ rng.random((12, 12))  # correlated
    # the paper's steps, with numpy's general eigensolver as it used
    centred = patches - patches.mean(axis=1, keepdims=True)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    values, vectors = np.linalg.eig(unit.T @ unit / len(unit))
    zca = vectors.real @ np.diag(1 / np.sqrt(values.real + 1e-3)) @ vectors.real.T
    np.testing.assert_allclose(zca_whitened(patches), unit @ zca @ zca.T, rtol=1e-6, atol=1e-8)


def test_empirical_filters_are_whitened_patches_of_the_imagery_and_seeded():
    rng = np.random.default_rng(1)
    images = [rng.random((2, 30, 30)) for _ in range(3)]
    images[0][:, :10] = np.nan
    first = empirical_filters(images, n_filters=20, kernel_size=3, bias=0.0, seed=5, n_patches=1000)
    again = empirical_filters(images, n_filters=20, kernel_size=3, bias=0.0, seed=5, n_patches=1000)
    other = empirical_filters(images, n_filters=20, kernel_size=3, bias=0.0, seed=6, n_patches=1000)
    assert first.weights.shape == (20, 2, 3, 3) and np.isfinite(first.weights).all()
    assert first.fingerprint == again.fingerprint != other.fingerprint
    with pytest.raises(InputError, match="holds 0 patches of 3 x 3 pixels"):
        empirical_filters([np.full((2, 5, 5), np.nan)], n_filters=2, kernel_size=3, bias=0.0, seed=0)


def test_filters_travel_as_metadata_and_a_changed_weight_is_refused():
    bank = gaussian_filters(4, 3, 3, 0.5, seed=9)
    data = json.loads(json.dumps(bank.as_metadata()))
    back = FilterBank.from_metadata(data, "t.parquet")
    np.testing.assert_array_equal(back.weights, bank.weights)
    assert (back.bias, back.mode, back.seed, back.fingerprint) == (0.5, "gaussian", 9, bank.fingerprint)
    changed = gaussian_filters(4, 3, 3, 0.5, seed=10).as_metadata()
    with pytest.raises(InputError, match="t.parquet: the filters' weights do not match their fingerprint"):
        FilterBank.from_metadata({**data, "weights": changed["weights"]}, "t.parquet")
    with pytest.raises(InputError, match="t.parquet: not a filter bank"):
        FilterBank.from_metadata({"shape": [1]}, "t.parquet")


def test_pooled_statistics_skip_pixels_missing_a_band():
    pixels = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    pixels[0, 0, 0] = np.nan
    valid = pixels.reshape(2, -1)[:, 1:].astype(np.float64)
    expected = np.concatenate([valid.mean(axis=1), valid.std(axis=1), valid.min(axis=1), valid.max(axis=1)])
    np.testing.assert_allclose(pooled_features(pixels, ("mean", "std", "min", "max")), expected, rtol=1e-6)


# -- imagery on disk ---------------------------------------------------------------------------

#: a scene straddling 18 degrees east, the edge of UTM zones 33 and 34, just north of the equator
WEST, SOUTH, EAST, NORTH = 17.95, 4.95, 18.05, 5.05
CELL = 0.005
PIXEL_METRES = 20.0


def _mines(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Where the synthetic country is mined: a few round sites."""
    sites = [(17.965, 4.97), (17.99, 5.03), (18.02, 4.99), (18.04, 5.035), (18.005, 5.01)]
    return np.any([np.hypot(lon - x, lat - y) < 0.009 for x, y in sites], axis=0)


def _scene(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Three bands of digital numbers: mined ground is bright and rough, the rest smooth."""
    mined = _mines(lon, lat)
    rough = np.sin(lon * 40_000) * np.cos(lat * 37_000)
    base = 1500 + 300 * np.sin(lon * 300) * np.cos(lat * 250)
    bands = [base + mined * (900 + 700 * rough), base * 0.8 + mined * (400 - 600 * rough), base * 0.6]
    return np.stack(bands).astype(np.uint16)


#: how far beyond the scene's box a tile reaches, so that its edges, skewed in EPSG:4326, miss no cell
MARGIN = 0.01


def _write_utm(path, epsg: int, west: float, east: float, pixel: float = PIXEL_METRES) -> str:
    """The scene between longitudes ``west`` and ``east`` in a UTM zone, as a GeoTIFF
    reaching :data:`MARGIN` beyond the box (nodata outside ``west..east``)."""
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    box_w, box_e = max(west, WEST - MARGIN), min(east, EAST + MARGIN)
    xs, ys = to_utm.transform([box_w, box_e, box_w, box_e], [SOUTH - MARGIN] * 2 + [NORTH + MARGIN] * 2)
    left, right, bottom, top = min(xs), max(xs), min(ys), max(ys)
    width, height = int((right - left) // pixel), int((top - bottom) // pixel)
    transform = from_origin(left, top, pixel, pixel)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x, y = transform @ (cols, rows)
    lon, lat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(x, y)
    inside = (lon >= west) & (lon < east)
    data = np.where(inside, _scene(lon, lat), 0).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint16",
                       crs=f"EPSG:{epsg}", transform=transform, nodata=0, tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        dst.write(data)
    return str(path)


def _write_geographic(path, pixel_degrees: float) -> str:
    width, height = round((EAST - WEST) / pixel_degrees), round((NORTH - SOUTH) / pixel_degrees)
    transform = from_origin(WEST, NORTH, pixel_degrees, pixel_degrees)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = transform @ (cols, rows)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint16",
                       crs="EPSG:4326", transform=transform, nodata=0) as dst:
        dst.write(_scene(lon, lat))
    return str(path)


@pytest.fixture(scope="module")
def two_zones(tmp_path_factory):
    """The scene in two Cloud-Optimized GeoTIFFs: west of 18 E in UTM 33N, east of it in UTM 34N."""
    import rasterio.shutil

    folder, drafts = tmp_path_factory.mktemp("two_zones"), tmp_path_factory.mktemp("drafts")
    # neighbouring tiles overlap, as Sentinel-2's do: a cell on the seam is whole in one or the other
    for name, epsg, west, east in (("a_zone33.tif", 32633, WEST - MARGIN, 18.002),
                                   ("b_zone34.tif", 32634, 17.998, EAST + MARGIN)):
        draft = _write_utm(drafts / name, epsg, west, east)
        rasterio.shutil.copy(draft, folder / name, driver="COG", blocksize=256, compress="DEFLATE")
    return folder


def _featurize(client, imagery, output, method, **settings):
    job = {"imagery": imagery, "grid": {"cell_size": CELL, "bbox": [WEST, SOUTH, EAST, NORTH]},
           "method": method, "output": str(output), **settings}
    return asm_dask.featurize(job, client)


def test_pooled_means_equal_rasterio_over_each_cell(tmp_path, client):
    """On a raster in EPSG:4326 whose pixels tile the cells, a cell's mean is the mean of
    the pixels rasterio's mask keeps for the cell's square."""
    import rasterio.mask
    import shapely

    raster = _write_geographic(tmp_path / "geo.tif", CELL / 25)
    result = _featurize(client, {"path": raster, "scale": 1}, tmp_path / "pooled.parquet", {"name": "pool"})
    table = pd.read_parquet(result.output)
    assert result.n_featurized == len(table) == 400 and result.n_outside_imagery == 0
    with rasterio.open(raster) as src:
        for _, cell in table.sample(12, random_state=0).iterrows():
            square = shapely.box(cell.lon - CELL / 2, cell.lat - CELL / 2, cell.lon + CELL / 2, cell.lat + CELL / 2)
            shrunk = square.buffer(-CELL / 100)  # pixel centres inside the square, none on its edge
            pixels, _ = rasterio.mask.mask(src, [shrunk], crop=True, filled=False)
            expected = pixels.reshape(3, -1).mean(axis=1)
            np.testing.assert_allclose(cell[["feature_0", "feature_1", "feature_2"]].to_numpy(float), expected,
                                       rtol=1e-6)


def test_a_raster_in_utm_gives_the_features_of_the_same_raster_in_4326(tmp_path, two_zones, client):
    geographic = _write_geographic(tmp_path / "geo.tif", CELL / 28)
    method = {"name": "pool", "stats": ["mean", "std"]}
    utm = pd.read_parquet(_featurize(client, {"path": str(two_zones)}, tmp_path / "utm.parquet", method).output)
    geo = pd.read_parquet(_featurize(client, {"path": geographic}, tmp_path / "geo.parquet", method).output)
    both = utm.merge(geo, on=["lat", "lon"], suffixes=("_utm", "_geo"))
    assert len(both) == len(utm) == len(geo) == 400
    for j in range(3):
        utm_mean, geo_mean = both[f"feature_{j}_utm"], both[f"feature_{j}_geo"]
        assert np.corrcoef(utm_mean, geo_mean)[0, 1] > 0.995
        assert np.median(np.abs(utm_mean - geo_mean) / geo_mean) < 0.01


def test_tiles_give_the_features_of_the_whole_and_a_cell_across_tiles_gets_all_its_pixels(tmp_path, client):
    whole = _write_utm(tmp_path / "whole.tif", 32633, WEST - MARGIN, EAST + MARGIN)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    with rasterio.open(whole) as src:
        half_w, half_h = src.width // 2 + 7, src.height // 2 - 5  # cuts through cells
        for name, window in {"nw": ((0, half_h), (0, half_w)), "ne": ((0, half_h), (half_w, src.width)),
                             "sw": ((half_h, src.height), (0, half_w)),
                             "se": ((half_h, src.height), (half_w, src.width))}.items():
            window = rasterio.windows.Window.from_slices(*window)
            profile = {**src.profile, "width": window.width, "height": window.height,
                       "transform": src.window_transform(window)}
            with rasterio.open(tiles / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
    method = {"name": "rcf", "n_features": 16, "mode": "gaussian"}
    from_whole = pd.read_parquet(_featurize(client, {"path": whole}, tmp_path / "whole.parquet", method).output)
    from_tiles = pd.read_parquet(_featurize(client, {"path": str(tiles / "*.tif")}, tmp_path / "tiles.parquet",
                                            method).output)
    pd.testing.assert_frame_equal(from_tiles, from_whole)
    # and in blocks of another size: the same pixels, the same features
    other_blocks = pd.read_parquet(_featurize(client, {"path": str(tiles)}, tmp_path / "blocks.parquet", method,
                                              block_cells=3).output)
    pd.testing.assert_frame_equal(other_blocks.sort_values(["lat", "lon"], ignore_index=True),
                                  from_whole.sort_values(["lat", "lon"], ignore_index=True))


def test_featurize_then_run_in_two_utm_zones_sees_the_mines(tmp_path, two_zones, client):
    for tile in two_zones.glob("*.tif"):
        with rasterio.open(tile) as src:
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and src.overviews(1)
    out = tmp_path / "features.parquet"
    result = _featurize(client, {"path": str(two_zones), "bands": [1, 2, 3]}, out,
                        {"name": "rcf", "n_features": 64, "kernel_size": 3, "mode": "empirical", "seed": 4})
    assert result.n_cells == 400 and result.n_featurized == 400 and result.n_features == 64
    table = pq.read_table(out)
    assert table.column_names[:3] == ["lat", "lon", "covered"]
    assert table.column_names[3:] == [f"feature_{j}" for j in range(64)]
    assert pq.ParquetFile(out).metadata.num_row_groups > 1  # a row group per block of cells
    description = json.loads(table.schema.metadata[FEATURIZATION_KEY])
    assert description["filters"]["fingerprint"] == result.filters_fingerprint
    assert description["counts"] == {"n_featurized": 400, "n_outside_imagery": 0, "n_under_covered": 0}
    # cells on both sides of 18 E, every one covered: a cell on the zones' edge gets all its pixels
    cells = table.select(["lat", "lon", "covered"]).to_pandas()
    assert (cells.covered == 1).all() and (cells.lon < 18).any() and (cells.lon > 18).any()

    # labels at the cells' centres, from where the mines are
    labels = tmp_path / "labels.csv"
    labels_frame(list(zip(cells.lon, cells.lat)), _mines(cells.lon.to_numpy(), cells.lat.to_numpy()).astype(int)) \
        .to_csv(labels, index=False)
    run = asm_dask.run({"labels": str(labels), "features": {"path": str(out), "cell_size": CELL},
                        "output": str(tmp_path / "run")}, client)
    assert run.metrics.n_cells == 400
    assert run.metrics.test_auc_calibrated > 0.95, run.metrics.test_auc_calibrated
    assert not [w for w in run.warnings if "not read" in w]  # the covered column needs no note
    assert run.manifest["inputs"]["features_filters"] == result.filters_fingerprint

    # the saved model on features of other filters: refused before any work, in one line
    other = _featurize(client, {"path": str(two_zones)}, tmp_path / "other.parquet",
                       {"name": "rcf", "n_features": 64, "kernel_size": 3, "mode": "empirical", "seed": 5})
    with pytest.raises(InputError) as refused:
        asm_dask.predict(run, other.output, out=tmp_path / "other_map", client=client)
    assert str(refused.value) == (
        f"{other.output}: made with the filters {other.filters_fingerprint}; the model was trained on features "
        f"made with the filters {result.filters_fingerprint} ({tmp_path / 'run' / 'manifest.json'}): other "
        f"filters make other features; featurize with --filters {out}")
    assert not (tmp_path / "other_map").exists()
    # ... and on features made with its own filters, mapped
    same = asm_dask.featurize({"imagery": {"path": str(two_zones)}, "grid": {"like": str(out)},
                               "output": str(tmp_path / "same.parquet")}, client, filters=out)
    mapped = asm_dask.predict(run, same.output, out=tmp_path / "same_map", client=client)
    assert mapped.metrics.n_cells == 400


def test_grid_area_featurizes_the_cells_that_overlap_its_polygons(tmp_path, two_zones, client):
    """A triangle in UTM 33N (a country's outline, say) as a GeoPackage: its cells are
    those of the box whose squares it overlaps, with the box's features."""
    import geopandas as gpd
    import shapely

    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
    corners = [to_utm.transform(lon, lat) for lon, lat in ((17.96, 4.96), (18.04, 4.97), (17.99, 5.04))]
    gpd.GeoDataFrame({"name": ["area"]}, geometry=[shapely.Polygon(corners)], crs="EPSG:32633") \
        .to_file(tmp_path / "area.gpkg")
    method = {"name": "pool"}
    box = pd.read_parquet(_featurize(client, {"path": str(two_zones)}, tmp_path / "box.parquet", method).output)
    area = asm_dask.featurize({"imagery": {"path": str(two_zones)}, "method": method,
                               "grid": {"cell_size": CELL, "area": str(tmp_path / "area.gpkg")},
                               "output": str(tmp_path / "area.parquet")}, client)
    squares = gpd.GeoDataFrame(box, geometry=shapely.box(box.lon - CELL / 2, box.lat - CELL / 2, box.lon + CELL / 2,
                                                         box.lat + CELL / 2), crs="EPSG:4326")
    outline = gpd.read_file(tmp_path / "area.gpkg").to_crs("EPSG:4326")
    overlapping = gpd.sjoin(squares, outline, predicate="intersects").index.difference(
        gpd.sjoin(squares, outline, predicate="touches").index)  # a square touching the outline lies outside
    expected = pd.DataFrame(box.loc[overlapping])
    expected = expected.sort_values(["lat", "lon"], ignore_index=True)
    got = pd.read_parquet(area.output).sort_values(["lat", "lon"], ignore_index=True)
    assert 0 < area.n_cells == len(got) < len(box)
    pd.testing.assert_frame_equal(got, expected)


def test_predict_refuses_a_source_made_otherwise_even_of_the_same_width(tmp_path, two_zones, client):
    """Two pooled sources of three columns each, given to predict in the wrong order:
    the names match, how they were made does not."""
    colour = _featurize(client, {"path": str(two_zones)}, tmp_path / "colour.parquet", {"name": "pool"})
    spread = _featurize(client, {"path": str(two_zones), "bands": [1]}, tmp_path / "spread.parquet",
                        {"name": "pool", "stats": ["mean", "std", "max"]})
    cells = pd.read_parquet(colour.output, columns=["lat", "lon"])
    labels_frame(list(zip(cells.lon, cells.lat)), _mines(cells.lon.to_numpy(), cells.lat.to_numpy()).astype(int)) \
        .to_csv(tmp_path / "labels.csv", index=False)
    run = asm_dask.run({"labels": str(tmp_path / "labels.csv"), "output": str(tmp_path / "run"),
                        "features": [{"path": colour.output, "cell_size": CELL}, spread.output]}, client)
    assert run.metrics.n_features == 6
    with pytest.raises(InputError) as refused:
        asm_dask.predict(run, [spread.output, colour.output], out=tmp_path / "swapped", client=client)
    assert str(refused.value).startswith(
        f"{spread.output}: made by asm-dask featurize otherwise than {colour.output}, the table the model was "
        f"trained on ({tmp_path / 'run' / 'manifest.json'}): method {{'name': 'pool', 'stats': ['mean', 'std', "
        "'max']} where the model's had {'name': 'pool', 'stats': ['mean']}; bands [1] where the model's had [1, 2, 3]")
    assert not (tmp_path / "swapped").exists()
    again = asm_dask.predict(run, [colour.output, spread.output], out=tmp_path / "again", client=client)
    assert again.metrics.n_cells == 400


def test_reused_filters_give_identical_features(tmp_path, two_zones, client):
    method = {"name": "rcf", "n_features": 32, "mode": "empirical", "seed": 11}
    first = _featurize(client, {"path": str(two_zones)}, tmp_path / "first.parquet", method)
    with pytest.warns(UserWarning, match=r"used as they are, not method.seed 12 \(theirs: 11\)$"):
        again = asm_dask.featurize({"imagery": {"path": str(two_zones)},
                                    "grid": {"like": first.output},
                                    "method": {**method, "seed": 12},  # the filters given, not drawn
                                    "output": str(tmp_path / "again.parquet")}, client, filters=first.output)
    assert again.filters_fingerprint == first.filters_fingerprint
    pd.testing.assert_frame_equal(pd.read_parquet(again.output), pd.read_parquet(first.output))
    drawn = _featurize(client, {"path": str(two_zones)}, tmp_path / "drawn.parquet", {**method, "seed": 12})
    assert drawn.filters_fingerprint != first.filters_fingerprint
    with pytest.raises(InputError, match="random convolutional filters; method.name: pool uses none"):
        asm_dask.featurize({"imagery": {"path": str(two_zones)}, "grid": {"like": first.output},
                            "method": {"name": "pool"}, "output": str(tmp_path / "pooled.parquet")}, client,
                           filters=first.output)
    assert not (tmp_path / "pooled.parquet").exists()


def test_a_stac_item_collection_of_cloud_optimized_band_files_gives_the_features_of_the_tiles(tmp_path, two_zones,
                                                                                                client):
    """Each zone's tile as three one-band COGs, listed as the assets of two STAC items."""
    import rasterio.shutil

    items = []
    (tmp_path / "cogs").mkdir()
    for tile in sorted(two_zones.glob("*.tif")):
        assets = {}
        with rasterio.open(tile) as src:
            for band, name in enumerate(["red", "green", "blue"], start=1):
                plain = tmp_path / f"{tile.stem}_{name}_plain.tif"
                with rasterio.open(plain, "w", **{**src.profile, "count": 1}) as dst:
                    dst.write(src.read(band), 1)
                rasterio.shutil.copy(plain, tmp_path / "cogs" / f"{tile.stem}_{name}.tif", driver="COG")
                assets[name] = {"href": f"cogs/{tile.stem}_{name}.tif", "type": "image/tiff; application=geotiff"}
        items.append({"type": "Feature", "stac_version": "1.0.0", "id": tile.stem, "geometry": None,
                      "properties": {}, "assets": assets})
    (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    with rasterio.open(tmp_path / "cogs" / "a_zone33_red.tif") as cog:
        assert cog.overviews(1) and cog.profile["tiled"]  # cloud-optimized: tiled, with overviews
    method = {"name": "rcf", "n_features": 16, "mode": "gaussian"}
    stac = _featurize(client, {"path": str(tmp_path / "items.json"), "bands": ["red", "green", "blue"]},
                      tmp_path / "stac.parquet", method)
    files = _featurize(client, {"path": str(two_zones), "bands": [1, 2, 3]}, tmp_path / "files.parquet", method)
    pd.testing.assert_frame_equal(pd.read_parquet(stac.output), pd.read_parquet(files.output))
    with pytest.raises(InputError, match=r"items.json: item 'a_zone33' has no asset 'nir' with an href \(its "
                                         r"assets: blue, green, red\)"):
        _featurize(client, {"path": str(tmp_path / "items.json"), "bands": ["red", "nir"]},
                   tmp_path / "nir.parquet", method)


def test_the_same_features_on_one_worker_as_on_two(tmp_path, two_zones, client):
    import distributed

    job = {"imagery": {"path": str(two_zones)}, "grid": {"cell_size": CELL, "bbox": [WEST, SOUTH, EAST, NORTH]},
           "method": {"name": "rcf", "n_features": 64, "mode": "empirical", "seed": 2}, "block_cells": 4}
    on_two = asm_dask.featurize({**job, "output": str(tmp_path / "two.parquet")}, client)
    assert len(client.scheduler_info()["workers"]) == 2
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as one, \
            distributed.Client(one) as single:
        on_one = asm_dask.featurize({**job, "output": str(tmp_path / "one.parquet")}, single)
    pd.testing.assert_frame_equal(pd.read_parquet(on_one.output), pd.read_parquet(on_two.output))


def test_grid_like_keeps_an_existing_tables_cells_exactly(tmp_path, two_zones, client):
    """A table whose centroids are not those of the box grid (the demo's) keeps its own."""
    lats = np.round(np.arange(4.9525, 5.05, 0.005), 4)[:6]
    lons = np.round(np.arange(17.9525, 18.05, 0.005), 4)[:5]
    existing = write_feather(grid_features(lats, lons), tmp_path / "existing.feather")
    result = asm_dask.featurize({"imagery": {"path": str(two_zones)}, "grid": {"like": str(existing)},
                                 "method": {"name": "pool"}, "output": str(tmp_path / "like.parquet")}, client)
    made = pd.read_parquet(result.output)
    lat, lon = parse_image_ids(pa.array(grid_features(lats, lons)["image_id"]), "existing")
    np.testing.assert_array_equal(made.lat.to_numpy(), lat)
    np.testing.assert_array_equal(made.lon.to_numpy(), lon)


# -- bad input: one line, nothing written ----------------------------------------------------


def test_bad_featurize_input_is_one_line_and_writes_nothing(tmp_path, two_zones, client):
    tile = str(two_zones / "a_zone33.tif")
    base = {"imagery": {"path": tile}, "grid": {"cell_size": CELL, "bbox": [WEST, SOUTH, EAST, NORTH]},
            "method": {"name": "pool"}, "output": str(tmp_path / "out.parquet")}

    def refused(job, match, **kwargs):
        with pytest.raises(InputError, match=match):
            asm_dask.featurize(job, client, **kwargs)
        assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "out.parquet.parts").exists()

    refused({**base, "grid": {"cell_size": CELL, "bbox": [WEST, SOUTH, EAST, NORTH], "like": tile}},
            "grid: expected one of area, bbox or like")
    refused({**base, "grid": {"bbox": [WEST, SOUTH, EAST, NORTH]}}, "grid.cell_size: expected a number > 0")
    refused({**base, "method": {"name": "pool", "n_features": 8}},
            "method.n_features: expected no n_features with method.name: pool \\(a setting of rcf\\), got 8")
    refused({**base, "grid": {"cell_size": CELL, "bbox": [EAST, SOUTH, WEST, NORTH]}}, "grid.bbox: expected")
    refused({**base, "imagery": {"path": tile, "bands": [2, 5]}},
            f"{tile}: no band 5: the tile has bands 1..3")
    refused({**base, "imagery": {"path": str(tmp_path / "nowhere" / "*.tif")}}, "no imagery there|not found")
    refused({**base, "grid": {"cell_size": CELL, "bbox": [20.0, 0.0, 20.1, 0.1]}},
            "the imagery covers none of the grid's 400 cells")
    refused({**base, "method": {"name": "rcf", "n_features": 8, "kernel_size": 9}, "grid": {
        "cell_size": 0.001, "bbox": [WEST, SOUTH, EAST, NORTH]}}, "fewer than the kernel's 9")
    refused({**base, "output": tile}, "the output is an input of the featurization")
    refused({**base, "output": str(tmp_path / "features") + "/"},
            "output: expected a path of a Parquet file, not of a folder")
    assert not (tmp_path / "features").exists()
    no_crs = tmp_path / "no_crs.tif"
    with rasterio.open(no_crs, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 4, 4), dtype=np.uint8))
    refused({**base, "imagery": {"path": str(no_crs)}}, f"{no_crs}: the tile has no CRS")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not really a tiff")
    refused({**base, "imagery": {"path": str(broken)}}, f"{broken}: cannot read the tile")
    import geopandas as gpd
    import shapely

    points = tmp_path / "points.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.Point(18, 5)], crs="EPSG:4326").to_file(points)
    refused({**base, "grid": {"cell_size": CELL, "area": str(points)}}, f"{points}: no polygons \\(found \\['Point'\\]\\)")
    refused({**base, "grid": {"cell_size": CELL, "area": str(broken)}}, f"{broken}: cannot read grid.area")
    refused({**base, "grid": {"cell_size": CELL, "bbox": [WEST, SOUTH, EAST]}},
            "grid.bbox: expected \\[west, south, east, north\\] in degrees: 4 numbers, not 3")
    refused({**base, "method": {"name": "rcf"}}, "missing.parquet: not found \\(the filters to reuse",
            filters=str(tmp_path / "missing.parquet"))
    pd.DataFrame({"lat": [5.0], "lon": [18.0], "X_0": [1.0]}).to_parquet(tmp_path / "api.parquet")
    refused({**base, "method": {"name": "rcf"}}, "api.parquet: holds no filters \\(not a feature table of asm-dask",
            filters=str(tmp_path / "api.parquet"))


def test_an_output_that_is_someone_elses_file_is_left_alone(tmp_path, two_zones, client):
    theirs = tmp_path / "theirs.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(theirs)
    before = theirs.read_bytes()
    with pytest.raises(InputError, match="exists and is not a table of asm-dask featurize"):
        _featurize(client, {"path": str(two_zones)}, theirs, {"name": "pool"})
    assert theirs.read_bytes() == before
    # an earlier featurization's table is replaced
    first = _featurize(client, {"path": str(two_zones)}, tmp_path / "ours.parquet", {"name": "pool"})
    again = _featurize(client, {"path": str(two_zones)}, tmp_path / "ours.parquet", {"name": "pool", "stats": ["max"]})
    assert first.output == again.output and pd.read_parquet(again.output).shape[1] == 3 + 3


# -- the command line: one line on bad input; a killed featurization resumes -----------------


def _featurize_file(folder, two_zones, **settings) -> str:
    path = folder / "featurize.yaml"
    path.write_text(yaml.safe_dump({
        "imagery": {"path": str(two_zones)}, "grid": {"cell_size": CELL, "bbox": [WEST, SOUTH, EAST, NORTH]},
        "method": {"name": "rcf", "n_features": 64, "mode": "empirical", "seed": 3}, "block_cells": 2,
        "output": "features.parquet", **settings}))
    return str(path)


def test_the_command_line_says_bad_input_in_one_line(tmp_path, two_zones):
    job = _featurize_file(tmp_path, two_zones, imagery={"path": str(two_zones), "bands": [7]})
    done = cli("featurize", job)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"asm-dask: error: {two_zones / 'a_zone33.tif'}: no band 7: the tile has bands 1..3 (details: ")
    assert not (tmp_path / "features.parquet").exists()
    done = cli("featurize", _featurize_file(tmp_path, two_zones, method={"name": "wavelets"}))
    assert done.returncode == 2
    assert "method.name: expected 'rcf' or 'pool', got 'wavelets'" in done.stderr.strip().splitlines()[-1]


def test_a_killed_featurization_resumes_with_the_blocks_it_wrote(tmp_path, two_zones, client):
    job = _featurize_file(tmp_path, two_zones)
    parts = tmp_path / "features.parquet.parts"
    process = subprocess.Popen([sys.executable, "-m", "asm_dask.cli", "featurize", job], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list(parts.glob("block-*.parquet"))) < 10:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no block written"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its local cluster, as a crash would
    process.wait()
    written = {p.name: p.stat().st_mtime_ns for p in parts.glob("block-*.parquet")}
    assert 10 <= len(written) < 100 and not (tmp_path / "features.parquet").exists()

    again = cli("featurize", job)
    assert again.returncode == 0, again.stderr
    resumed = int(re.search(r"resuming: (\d+) of 100 blocks already featurized", again.stderr).group(1))
    assert resumed >= len(written)
    assert not parts.exists()
    asm_dask.featurize(_featurize_file(tmp_path, two_zones, output="uninterrupted.parquet"), client)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "features.parquet"),
                                  pd.read_parquet(tmp_path / "uninterrupted.parquet"))
    assert "400 cells x 64 features in" in again.stdout and "filters " in again.stdout
