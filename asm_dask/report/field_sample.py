"""A sample of cells for a field team: the CSV to fill in and add to the labels, the same
points as GeoJSON (a map layer for QGIS or a web map) and GPX (for a GPS), and the
design that drew them (``design.json``)."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

import pandas as pd

from .. import storage

#: the columns a labels file needs, left empty for the field team, after the sample's own
FIELD_COLUMNS = ("label", "confidence", "mine_type", "proportion_inspected")


def write_sample(folder: str, sample: pd.DataFrame, design: dict, sample_type: str = "random") -> dict[str, str]:
    """Write ``sample`` (``lat``, ``lon``, ``probability`` and the design columns) into
    ``folder``; return the files written by kind."""
    import geopandas as gpd

    table = sample.assign(unique_id=[f"S{design['seed']}-{i:05d}" for i in range(len(sample))],
                          sample_type=sample_type, **dict.fromkeys(FIELD_COLUMNS, ""))
    table = table[["unique_id", "lon", "lat", "sample_type", *FIELD_COLUMNS, "stratum", "stratum_cells",
                   "inclusion_probability", "probability"]]
    files = {"csv": storage.join(folder, "sample.csv"), "geojson": storage.join(folder, "sample.geojson"),
             "gpx": storage.join(folder, "sample.gpx"), "design": storage.join(folder, "design.json")}
    storage.make_folder(folder)
    storage.write_text(files["csv"], table.to_csv(index=False))
    points = gpd.GeoDataFrame(table.drop(columns=list(FIELD_COLUMNS)),
                              geometry=gpd.points_from_xy(table["lon"], table["lat"]), crs="EPSG:4326")
    storage.write_text(files["geojson"], points.to_json(drop_id=True))
    storage.write_text(files["gpx"], _gpx(table))
    storage.write_text(files["design"], json.dumps(design, indent=1))
    return files


def _gpx(table: pd.DataFrame) -> str:
    """Waypoints a GPS loads: each named by its id, described by its stratum and the map's probability."""
    points = "\n".join(
        f'  <wpt lat="{row.lat:.6f}" lon="{row.lon:.6f}"><name>{escape(row.unique_id)}</name>'
        f"<desc>stratum {row.stratum}, map probability {row.probability:.2f}</desc></wpt>"
        for row in table.itertuples())
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<gpx version="1.1" creator="asm-dask" xmlns="http://www.topografix.com/GPX/1/1">\n'
            f"{points}\n</gpx>\n")
