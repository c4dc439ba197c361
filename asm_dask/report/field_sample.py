"""Cells for a field team: the estimation sample (with the design that drew it,
``design.json``) and the cells to label next, each as a CSV to fill in and add to the
labels, the same points as GeoJSON (a map layer for QGIS or a web map) and GPX (for a GPS)."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

import pandas as pd

from .. import storage

#: the columns a labels file needs, left empty for the field team, after the sample's own
FIELD_COLUMNS = ("label", "confidence", "mine_type", "proportion_inspected")


def write_sample(folder: str, sample: pd.DataFrame, design: dict, sample_type: str = "random") -> dict[str, str]:
    """Write ``sample`` (``lat``, ``lon``, ``probability`` and the design columns) into
    ``folder`` as ``sample.*`` with ``design.json``; return the files written by kind."""
    # a year's sample says its year: samples of two years, drawn with one seed, go into one labels file
    drawn = f"{design['year']}-{design['seed']}" if "year" in design else f"{design['seed']}"
    table = sample.assign(unique_id=[f"S{drawn}-{i:05d}" for i in range(len(sample))],
                          sample_type=sample_type, **dict.fromkeys(FIELD_COLUMNS, ""))
    table = table[["unique_id", "lon", "lat", "sample_type", *FIELD_COLUMNS, "stratum", "stratum_cells",
                   "inclusion_probability", "probability"]]
    files = write_points(folder, "sample", table, lambda row: f"stratum {row.stratum}, map probability "
                                                               f"{row.probability:.2f}")
    files["design"] = storage.join(folder, "design.json")
    storage.write_text(files["design"], json.dumps(design, indent=1))
    return files


def write_next_labels(folder: str, cells: pd.DataFrame) -> dict[str, str]:
    """Write the cells to label next (:func:`asm_dask.estimation.next_labels.next_labels`)
    as ``next_labels.*``, with ``sample_type: next``: never read as a probability sample."""
    table = cells.assign(unique_id=[f"N-{rank:05d}" for rank in cells["rank"]], sample_type="next",
                         **dict.fromkeys(FIELD_COLUMNS, ""))
    table = table[["unique_id", "rank", "lon", "lat", "sample_type", *FIELD_COLUMNS, "reason", "probability",
                   "uncertainty"]]
    return write_points(folder, "next_labels", table, lambda row: f"{row.reason}, map probability "
                                                                   f"{row.probability:.2f}")


def write_points(folder: str, stem: str, table: pd.DataFrame, describe) -> dict[str, str]:
    """``table`` (``unique_id``, ``lon``, ``lat``...) as ``stem.csv`` to fill in, ``stem.geojson``
    and ``stem.gpx`` (each waypoint described by ``describe(row)``) in ``folder``."""
    import geopandas as gpd

    files = {kind: storage.join(folder, f"{stem}.{kind}") for kind in ("csv", "geojson", "gpx")}
    storage.make_folder(folder)
    storage.write_text(files["csv"], table.to_csv(index=False))
    points = gpd.GeoDataFrame(table.drop(columns=list(FIELD_COLUMNS)),
                              geometry=gpd.points_from_xy(table["lon"], table["lat"]), crs="EPSG:4326")
    storage.write_text(files["geojson"], points.to_json(drop_id=True))
    storage.write_text(files["gpx"], _gpx(table, describe))
    return files


def _gpx(table: pd.DataFrame, describe) -> str:
    """Waypoints a GPS loads: each named by its id, described by ``describe(row)``."""
    points = "\n".join(
        f'  <wpt lat="{row.lat:.6f}" lon="{row.lon:.6f}"><name>{escape(row.unique_id)}</name>'
        f"<desc>{escape(describe(row))}</desc></wpt>"
        for row in table.itertuples())
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<gpx version="1.1" creator="asm-dask" xmlns="http://www.topografix.com/GPX/1/1">\n'
            f"{points}\n</gpx>\n")
