"""Imagery in pieces: tiles in any CRS, read as pixels of grid cells in EPSG:4326.

The cells of a block are read through rasterio's ``WarpedVRT``, which reprojects each
tile onto a pixel grid whose edges are the cells' edges: every cell gets
the same whole number of pixels, at about the imagery's native ground resolution (the
width of a pixel in degrees of longitude grows with the latitude, so that a pixel stays
about as wide as it is tall on the ground). Nearest-neighbour resampling: no pixel value
is invented. Where tiles overlap, the first tile (in path order) that holds a pixel gives
it, so that a cell straddling two tiles gets all its pixels. Values are scaled
(``value * scale + offset``, to reflectance for instance) as they are read; missing
pixels are NaN.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from .. import storage
from ..errors import InputError

#: file names taken from a folder of imagery
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
#: the scale of integer imagery when none is set: Sentinel-2 digital numbers to reflectance
INTEGER_SCALE = 1e-4
#: metres in a degree of latitude (and of longitude at the equator), for pixel sizes
METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Tile:
    """One raster file of the imagery: where it lies and how fine its pixels are."""

    path: str
    bounds: tuple[float, float, float, float]  #: west, south, east, north in EPSG:4326
    pixel_metres: float  #: the side of a pixel on the ground, about
    integer: bool  #: whether its values are integers (digital numbers)
    #: (band of the file, band of the imagery) for every band read from the file
    band_map: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Imagery:
    """The tiles of an imagery, the bands read from them and how values are scaled."""

    tiles: tuple[Tile, ...]
    #: the bands, in the order features see them: 1-based numbers in each file, or the
    #: names that fill ``{band}`` in the path where each band is a file of its own
    bands: tuple[int | str, ...]
    scale: float
    offset: float
    nodata: float | None  #: a value that marks a missing pixel, beside the files' own

    @property
    def pixel_metres(self) -> float:
        """The finest tile's pixel size: the resolution cells are read at."""
        return min(tile.pixel_metres for tile in self.tiles)

    def cell_pixels(self, cell_size: float, lat: float) -> tuple[int, int]:
        """Pixels per cell (rows, columns) for cells of ``cell_size`` degrees centred at
        latitude ``lat``: the whole numbers nearest the native resolution."""
        rows = cell_size * METRES_PER_DEGREE / self.pixel_metres
        columns = rows * math.cos(math.radians(lat))
        return max(1, round(rows)), max(1, round(columns))

    def covers(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Whether each point lies inside some tile's extent (as :meth:`tiles_over` a point)."""
        inside = np.zeros(len(lat), dtype=bool)
        for tile in self.tiles:
            west, south, east, north = tile.bounds
            inside |= (west < lon) & (lon < east) & (south < lat) & (lat < north)
        return inside

    def tiles_over(self, west: float, south: float, east: float, north: float) -> list[Tile]:
        return [t for t in self.tiles
                if t.bounds[0] < east and t.bounds[2] > west and t.bounds[1] < north and t.bounds[3] > south]


def find_tiles(path: str) -> list[str]:
    """The raster files ``path`` names: one file, a folder (its files ending in
    :data:`RASTER_SUFFIXES`), or a glob pattern; local or fsspec URLs, sorted."""
    fs, fs_path = storage.filesystem(path)
    if glob.has_magic(fs_path):
        found = sorted(fs.glob(fs_path))
    elif fs.isdir(fs_path):
        found = sorted(p for p in fs.ls(fs_path, detail=False) if p.lower().endswith(RASTER_SUFFIXES))
    elif fs.exists(fs_path):
        found = [fs_path]
    else:
        raise InputError(f"{path}: imagery not found")
    if not found:
        raise InputError(f"{path}: no imagery there (expected files ending in {', '.join(RASTER_SUFFIXES)})")
    return [_as_given(path, fs, p) for p in found]


def _as_given(path: str, fs, found: str) -> str:
    """A found file named as the user named its folder: a URL stays a URL."""
    return fs.unstrip_protocol(found) if storage.is_url(path) else found


def open_imagery(path: str, bands: tuple[int, ...] | tuple[str, ...] | None = None, scale: float | None = None,
                 offset: float = 0.0, nodata: float | None = None) -> Imagery:
    """The imagery ``path`` names (:func:`find_tiles`), every tile's extent and resolution
    read, each checked for a CRS and for the ``bands`` asked for.

    Where ``path`` holds ``{band}`` (``IMG_DATA/*_{band}.jp2``), each band is a file (or
    files) of its own, found by putting each of the ``bands``' names in its place, as
    Sentinel-2 products are made. A STAC ItemCollection (or Item) in a ``.json`` file names
    its files by asset: ``bands`` are asset keys (``[red, green, blue, nir]``), each asset
    a one-band file. Otherwise ``bands`` are numbers of bands in every file (default: every
    band of the first). ``scale`` defaults to :data:`INTEGER_SCALE` for integer imagery, 1
    otherwise.
    """
    if path.lower().endswith(".json"):
        if not bands or not all(isinstance(band, str) for band in bands):
            raise InputError(f"{path}: a STAC ItemCollection needs imagery.bands as asset keys "
                             "(e.g. [red, green, blue, nir])")
        tiles = [_tile(href, ((1, position),)) for href, position in stac_assets(path, bands)]
    elif BAND in path:
        if not bands or not all(isinstance(band, str) for band in bands):
            raise InputError(f"{path}: a path with {BAND} needs imagery.bands as the names that fill it "
                             "(e.g. [B04, B03, B02, B08])")
        tiles = [_tile(found, ((1, position),)) for position, band in enumerate(bands)
                 for found in find_tiles(path.replace(BAND, band))]
    else:
        if bands and not all(isinstance(band, int) for band in bands):
            raise InputError(f"{path}: band names need {BAND} in imagery.path, where each name fills it, or a "
                             "STAC ItemCollection (.json), whose assets they name")
        paths = find_tiles(path)
        if not bands:
            bands = tuple(range(1, _header(paths[0])[3] + 1))
        tiles = [_tile(found, tuple((band, position) for position, band in enumerate(bands))) for found in paths]
    if scale is None:
        scale = INTEGER_SCALE if all(tile.integer for tile in tiles) else 1.0
    return Imagery(tuple(tiles), tuple(bands), float(scale), float(offset), nodata)


#: where a path names each band's files by the band's name
BAND = "{band}"


def stac_assets(path: str, bands: tuple[str, ...]) -> list[tuple[str, int]]:
    """(file, band position) of every asset ``bands`` names in every item of the STAC
    ItemCollection (or single Item) at ``path``, in item order; relative hrefs resolve
    against the file's folder."""
    import json

    try:
        document = json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        raise InputError(f"{path}: imagery not found") from None
    except ValueError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    items = document.get("features") if isinstance(document, dict) and document.get("type") == "FeatureCollection" \
        else [document] if isinstance(document, dict) and document.get("type") == "Feature" else None
    if not items:
        raise InputError(f"{path}: not a STAC ItemCollection or Item with items (expected GeoJSON of type "
                         "FeatureCollection or Feature, with assets)")
    folder = path.rsplit("/", 1)[0] if "/" in path else "."
    found = []
    for number, item in enumerate(items, start=1):
        assets = item.get("assets") if isinstance(item, dict) else None
        name = item.get("id", f"item {number}") if isinstance(item, dict) else f"item {number}"
        for position, band in enumerate(bands):
            href = assets.get(band, {}).get("href") if isinstance(assets, dict) else None
            if not isinstance(href, str):
                keys = ", ".join(sorted(assets)) if isinstance(assets, dict) else "none"
                raise InputError(f"{path}: item {name!r} has no asset {band!r} with an href (its assets: {keys})")
            found.append((href if "://" in href or href.startswith("/") else storage.join(folder, href), position))
    return found


def _tile(path: str, band_map: tuple[tuple[int, int], ...]) -> Tile:
    """A tile's extent and resolution, read from its header; :class:`InputError` if it
    lacks a band of ``band_map``."""
    bounds, pixel, integer, count = _header(path)
    missing = [band for band, _ in band_map if not 1 <= band <= count]
    if missing:
        raise InputError(f"{path}: no band {missing[0]}: the tile has bands 1..{count}")
    return Tile(path, bounds, pixel, integer, band_map)


def _header(path: str) -> tuple[tuple[float, float, float, float], float, bool, int]:
    """A tile's bounds in EPSG:4326, pixel size in metres, whether it holds integers, and
    its band count; :class:`InputError` if it cannot be read or has no CRS."""
    from rasterio.errors import RasterioIOError
    from rasterio.warp import transform_bounds

    try:
        with _open(path) as src:
            if src.crs is None:
                raise InputError(f"{path}: the tile has no CRS: its pixels cannot be placed on the grid")
            bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
            metres = src.crs.linear_units_factor[1] if src.crs.is_projected else METRES_PER_DEGREE
            pixel = min(abs(src.res[0]), abs(src.res[1])) * metres
            integer = all(np.issubdtype(np.dtype(kind), np.integer) for kind in src.dtypes)
            return tuple(bounds), pixel, integer, src.count
    except RasterioIOError as exc:
        raise InputError(f"{path}: cannot read the tile ({str(exc).splitlines()[0]})") from None


@contextmanager
def _open(path: str) -> Iterator:
    import rasterio

    if storage.is_url(path):
        fs, fs_path = storage.filesystem(path)
        with rasterio.open(fs_path, opener=storage.RasterReads(fs)) as src:
            yield src
    else:
        with rasterio.open(path) as src:
            yield src


def read_box(imagery: Imagery, west: float, south: float, east: float, north: float,
               width: int, height: int) -> np.ndarray:
    """The pixels of the box ``west..east`` x ``south..north`` (EPSG:4326) on a grid of
    ``width`` x ``height`` pixels: ``(n_bands, height, width)`` float32, scaled, NaN where
    no tile holds a value."""
    from rasterio.enums import Resampling
    from rasterio.transform import from_bounds
    from rasterio.vrt import WarpedVRT

    pixels = np.full((len(imagery.bands), height, width), np.nan, dtype=np.float32)
    complete = np.zeros(len(imagery.bands), dtype=bool)
    transform = from_bounds(west, south, east, north, width, height)
    with ExitStack() as stack:
        for tile in imagery.tiles_over(west, south, east, north):
            positions = [position for _, position in tile.band_map]
            if complete[positions].all():
                continue
            src = stack.enter_context(_open(tile.path))
            vrt = stack.enter_context(WarpedVRT(
                src, crs="EPSG:4326", transform=transform, width=width, height=height,
                resampling=Resampling.nearest, dtype="float32", nodata=np.nan, src_nodata=src.nodata,
                tolerance=1e-6))  # positions to a millionth of a pixel (0 is refused): the same pixels whatever the box
            values = vrt.read(indexes=[band for band, _ in tile.band_map])
            if imagery.nodata is not None:
                values[values == imagery.nodata] = np.nan
            held = pixels[positions]
            missing = np.isnan(held)
            held[missing] = values[missing]
            pixels[positions] = held
            complete[positions] = ~np.isnan(held).any(axis=(1, 2))
    pixels *= imagery.scale
    pixels += imagery.offset
    return pixels

