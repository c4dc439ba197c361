"""``map.html``: an interactive map that opens where the network is poor.

Leaflet through folium-offline, which inlines Leaflet's scripts and styles: the data
layers (probability, hotspots, labels, districts) show without network access; only the
basemap tiles need it. The probability is drawn as one image, reprojected to Web
Mercator first so that every cell lands where it is (Leaflet stretches an image
linearly between its corners, in Mercator).
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pandas as pd

from ..storage import writing
from .raster import CellRaster

#: hotspots drawn on the map (the best ranked); all of them are in hotspots.geojson
MAX_MAP_HOTSPOTS = 1000
#: labels drawn on the map, spread over the classes
MAX_MAP_LABELS = 20_000
#: longest side of the probability image: keeps a continent-sized map light
MAX_IMAGE_SIDE = 4096
COLORMAP = "viridis"
#: Web Mercator ends here
MERCATOR_MAX_LAT = 85.0
#: district outlines are simplified to about this many degrees (~100 m)
DISTRICT_TOLERANCE_DEG = 0.001


def write_map(path: str, probability: CellRaster, hotspots, labels: pd.DataFrame,
              districts=None, title: str = "ASM probability", earlier: dict[str, CellRaster] | None = None,
              changes: dict[str, object] | None = None, layer_name: str = "ASM probability") -> None:
    """Write ``map.html``.

    Parameters
    ----------
    probability : CellRaster
        Calibrated probability per cell.
    hotspots : geopandas.GeoDataFrame
        Ranked hotspots (see :func:`asm_dask.report.hotspots.find_hotspots`).
    labels : pandas.DataFrame
        Labels kept by the filters: ``lat``, ``lon``, ``label`` and, if known, ``mine_type``.
    districts : geopandas.GeoDataFrame, optional
        District totals (see :func:`asm_dask.report.districts.district_totals`).
    earlier : dict of str to CellRaster, optional
        Maps of earlier years, by name: a layer each, off at first.
    changes : dict of str to geopandas.GeoDataFrame, optional
        Change clusters between maps, by name (see :func:`asm_dask.report.change.map_change`):
        a layer each, the last on at first.
    layer_name : str
        The name of ``probability``'s layer.
    """
    import offlinefolium as folium

    west, south, east, north = probability.bounds
    fmap = folium.Map(location=[(south + north) / 2, (west + east) / 2], tiles=None,
                      control_scale=True, prefer_canvas=False)
    folium.TileLayer("OpenStreetMap", name="OpenStreetMap (needs network)").add_to(fmap)
    for name, raster in (earlier or {}).items():
        image, image_bounds = _mercator_image(raster)
        folium.raster_layers.ImageOverlay(image=image, bounds=image_bounds, name=f"ASM probability {name}",
                                          opacity=0.75, interactive=False, zindex=1, show=False,
                                          className="asm-probability-earlier").add_to(fmap)
    image, image_bounds = _mercator_image(probability)
    folium.raster_layers.ImageOverlay(image=image, bounds=image_bounds, name=layer_name, opacity=0.75,
                                      interactive=False, zindex=1, className="asm-probability").add_to(fmap)
    if districts is not None and len(districts):
        _add_districts(folium, fmap, districts)
    if len(hotspots):
        _add_hotspots(folium, fmap, hotspots)
    if len(labels):
        _add_labels(folium, fmap, labels)
    changes = {name: clusters for name, clusters in (changes or {}).items() if len(clusters)}
    for i, (name, clusters) in enumerate(changes.items()):
        _add_changes(folium, fmap, name, clusters, show=i == len(changes) - 1)
    folium.LayerControl(collapsed=False).add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]])
    fmap.get_root().html.add_child(folium.Element(_legend(title, len(hotspots), districts is not None,
                                                          bool(changes))))
    with writing(path) as tmp:
        fmap.save(str(tmp))


def _mercator_image(raster: CellRaster) -> tuple[str, list[list[float]]]:
    """The probability as a PNG data URL in Web Mercator, and its corners in lat/lon."""
    from matplotlib import colormaps
    from matplotlib.image import imsave
    from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

    west, south, east, north = raster.bounds
    south, north = max(south, -MERCATOR_MAX_LAT), min(north, MERCATOR_MAX_LAT)
    height, width = raster.shape
    scale = max(1.0, max(height, width) / MAX_IMAGE_SIDE)
    transform, out_width, out_height = calculate_default_transform(
        "EPSG:4326", "EPSG:3857", width, height, west, south, east, north,
        dst_width=int(np.ceil(width / scale)),
        dst_height=int(np.ceil(height / scale * _mercator_stretch(south, north))))
    target = np.full((out_height, out_width), np.nan, dtype=np.float32)
    reproject(raster.values, target, src_transform=raster.transform(), src_crs="EPSG:4326",
              src_nodata=np.nan, dst_transform=transform, dst_crs="EPSG:3857", dst_nodata=np.nan,
              resampling=Resampling.nearest)
    rgba = colormaps[COLORMAP](np.nan_to_num(target, nan=0.0), bytes=True)
    rgba[np.isnan(target), 3] = 0
    buffer = io.BytesIO()
    imsave(buffer, rgba, format="png")
    left, bottom = transform @ (0, out_height)
    right, top = transform @ (out_width, 0)
    lon0, lat0, lon1, lat1 = transform_bounds("EPSG:3857", "EPSG:4326", left, bottom, right, top)
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return url, [[lat0, lon0], [lat1, lon1]]


def _mercator_stretch(south: float, north: float) -> float:
    """How much taller the span is in Mercator than in degrees: keeps cells square."""
    y = lambda lat: np.log(np.tan(np.pi / 4 + np.deg2rad(lat) / 2))  # noqa: E731
    return float((y(north) - y(south)) / np.deg2rad(north - south)) if north > south else 1.0


def _add_hotspots(folium, fmap, hotspots) -> None:
    shown = hotspots.head(MAX_MAP_HOTSPOTS).copy()
    for column in ("area_km2", "expected_asm_cells", "mean_probability", "max_probability",
                   "distance_to_nearest_asm_label_km"):
        shown[column] = shown[column].round(3)
    shown["field_validation_candidate"] = np.where(shown["field_validation_candidate"], "yes", "no")
    fields = ["rank", "n_cells", "area_km2", "expected_asm_cells", "mean_probability", "max_probability",
              "n_asm_labels", "distance_to_nearest_asm_label_km", "field_validation_candidate"]
    aliases = ["rank", "cells", "area (km²)", "expected ASM cells", "mean probability", "max probability",
               "ASM labels inside", "nearest ASM label (km)", "candidate for field validation"]
    name = f"Hotspots (top {len(shown)} of {len(hotspots)})" if len(shown) < len(hotspots) else "Hotspots"
    folium.GeoJson(
        json.loads(shown[fields + ["geometry"]].to_json(na="null")), name=name,
        style_function=lambda feature: {"color": "#e31a1c", "weight": 2, "fillOpacity": 0.05,
                                        "className": "asm-hotspot"},
        popup=folium.GeoJsonPopup(fields=fields, aliases=aliases, localize=True),
        tooltip=folium.GeoJsonTooltip(fields=["rank", "expected_asm_cells"],
                                      aliases=["hotspot rank", "expected ASM cells"]),
    ).add_to(fmap)


#: colours of the change clusters: where ASM became likely, where it stopped
CHANGE_COLOURS = {"new": "#d7301f", "abandoned": "#2c7fb8"}


def _add_changes(folium, fmap, name: str, clusters, show: bool) -> None:
    shown = clusters.head(MAX_MAP_HOTSPOTS).copy()
    shown["mean_probability_change"] = shown["mean_probability_change"].round(3)
    fields = ["rank", "kind", "from_map", "to_map", "n_cells", "area_km2", "mean_probability_change"]
    aliases = ["rank", "change", "from", "to", "cells", "area (km²)", "mean change of probability"]
    folium.GeoJson(
        json.loads(shown[fields + ["geometry"]].to_json(na="null")), name=f"Change {name}", show=show,
        style_function=lambda feature: {"color": CHANGE_COLOURS[feature["properties"]["kind"]], "weight": 2,
                                        "fillOpacity": 0.3, "className": "asm-change"},
        popup=folium.GeoJsonPopup(fields=fields, aliases=aliases, localize=True),
        tooltip=folium.GeoJsonTooltip(fields=["kind", "area_km2"], aliases=["change", "area (km²)"]),
    ).add_to(fmap)


def _add_labels(folium, fmap, labels: pd.DataFrame) -> None:
    import geopandas as gpd

    shown = labels.sample(n=min(len(labels), MAX_MAP_LABELS), random_state=0) \
        if len(labels) > MAX_MAP_LABELS else labels
    columns = ["label"] + (["mine_type"] if "mine_type" in shown.columns else [])
    for value, name, colour in ((1, "ASM labels", "#ff7f00"), (0, "Not-ASM labels", "#1f78b4")):
        chosen = shown[shown["label"] == value]
        if chosen.empty:
            continue
        points = gpd.GeoDataFrame(chosen[columns].astype({"label": int}).fillna(""),
                                  geometry=gpd.points_from_xy(chosen["lon"], chosen["lat"]), crs="EPSG:4326")
        folium.GeoJson(
            json.loads(points.to_json()), name=f"{name} ({len(chosen):,})",
            marker=folium.CircleMarker(radius=3, weight=1, fill=True, fill_opacity=0.9),
            style_function=lambda feature, colour=colour: {"color": "#222222", "fillColor": colour,
                                                           "className": "asm-label"},
            tooltip=folium.GeoJsonTooltip(fields=columns, aliases=["class", "mine type"][:len(columns)]),
        ).add_to(fmap)


def _add_districts(folium, fmap, districts) -> None:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    shown = districts.copy()
    shown["geometry"] = shown.geometry.simplify(DISTRICT_TOLERANCE_DEG, preserve_topology=True)
    top = float(np.nanmax(shown["mean_probability"])) if shown["n_cells"].sum() else 1.0
    shown["colour"] = [to_hex(colormaps["Reds"](0.15 + 0.85 * (m / top if top > 0 else 0)))
                       if np.isfinite(m) else "#cccccc" for m in shown["mean_probability"]]
    for column in ("mean_probability", "expected_asm_cells", "area_km2"):
        shown[column] = shown[column].round(3)
    fields = ["name", "rank", "n_cells", "mean_probability", "expected_asm_cells", "area_km2"]
    folium.GeoJson(
        json.loads(shown[fields + ["colour", "geometry"]].to_json(na="null")),
        name="Districts (mean probability)", show=False,
        style_function=lambda feature: {"color": "#444444", "weight": 1, "fillOpacity": 0.5,
                                        "fillColor": feature["properties"]["colour"],
                                        "className": "asm-district"},
        tooltip=folium.GeoJsonTooltip(fields=fields, aliases=["district", "rank", "cells", "mean probability",
                                                              "expected ASM cells", "area (km²)"]),
    ).add_to(fmap)


def _legend(title: str, n_hotspots: int, with_districts: bool, with_changes: bool = False) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    stops = ", ".join(to_hex(colormaps[COLORMAP](v)) for v in np.linspace(0, 1, 9))
    notes = "<div>districts: shaded by mean probability (layer off by default)</div>" if with_districts else ""
    if with_changes:
        notes += (f'<div><span style="color: {CHANGE_COLOURS["new"]};">&#9632;</span> ASM newly likely &nbsp;'
                      f'<span style="color: {CHANGE_COLOURS["abandoned"]};">&#9632;</span> no longer likely</div>')
    return f"""
<div id="asm-legend" style="position: fixed; bottom: 24px; left: 12px; z-index: 1000; background: white;
     padding: 8px 10px; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,.4); font: 12px sans-serif;">
  <div style="font-weight: bold; margin-bottom: 4px;">{title}</div>
  <div style="width: 200px; height: 12px; background: linear-gradient(to right, {stops});"></div>
  <div style="display: flex; justify-content: space-between; width: 200px;">
    <span>0</span><span>0.5</span><span>1</span></div>
  <div><span style="color: #e31a1c;">&#9634;</span> hotspot ({n_hotspots:,}); click for details</div>
  <div><span style="color: #ff7f00;">&#9679;</span> ASM label &nbsp;
       <span style="color: #1f78b4;">&#9679;</span> not-ASM label</div>
  {notes}
</div>"""
