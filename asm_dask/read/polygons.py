"""Read stage, polygons: a file of areas (districts, a country's outline) in any CRS,
checked and brought to EPSG:4326."""

from __future__ import annotations

from typing import Any

from ..errors import InputError


def read_polygons(path: str, what: str) -> Any:
    """The polygons of the file at ``path`` (GeoJSON, GeoPackage, Shapefile...) as a
    GeoDataFrame in EPSG:4326, each made valid; other geometries are left out.

    Raises
    ------
    InputError
        The file cannot be read as ``what`` (``boundaries``, ``grid.area``), holds no
        polygon, or has no coordinate reference system.
    """
    import geopandas as gpd
    import shapely

    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio names the file and the format problem
        raise InputError(f"{path}: cannot read {what} ({str(exc).strip().splitlines()[0]})") from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame.columns:
        raise InputError(f"{path}: no geometry; expected polygons (GeoJSON, GeoPackage or Shapefile)")
    polygonal = frame.geometry.notna() & frame.geom_type.isin(["Polygon", "MultiPolygon"])
    if not polygonal.any():
        raise InputError(f"{path}: no polygons (found {sorted(set(frame.geom_type.dropna()))})")
    if frame.crs is None:
        raise InputError(f"{path}: no coordinate reference system; save it with one (e.g. a .prj file)")
    frame = frame[polygonal].to_crs("EPSG:4326")
    return frame.set_geometry(shapely.make_valid(frame.geometry.to_numpy()), crs="EPSG:4326")
