"""The probability grid as an image, and as a Cloud-Optimized GeoTIFF.

One pixel per cell, pixel centres on the cell centroids, row 0 to the north, NaN where
there is no cell. Only the predictions' ``lat``, ``lon`` and ``probability`` columns are
read; the image itself is 4 bytes a pixel (DR Congo: about 16 MB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..storage import writing

#: tile side of the GeoTIFF, in pixels
COG_BLOCK_SIZE = 256


@dataclass(frozen=True)
class CellRaster:
    """Values on the cell grid: ``values[row, col]`` is the cell centred on
    (``north - (row + 0.5) * cell_size``, ``west + (col + 0.5) * cell_size``)."""

    values: np.ndarray
    west: float
    north: float
    cell_size: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the outer cell edges."""
        rows, cols = self.values.shape
        return (self.west, self.north - rows * self.cell_size, self.west + cols * self.cell_size, self.north)

    def transform(self):
        from rasterio.transform import from_origin

        return from_origin(self.west, self.north, self.cell_size, self.cell_size)

    def pixel_of(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the cells centred at (``lat``, ``lon``)."""
        row = np.rint((self.north - np.asarray(lat)) / self.cell_size - 0.5).astype(np.int64)
        col = np.rint((np.asarray(lon) - self.west) / self.cell_size - 0.5).astype(np.int64)
        return row, col

    def centres(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latitude and longitude of the centres of the given pixels."""
        return self.north - (row + 0.5) * self.cell_size, self.west + (col + 0.5) * self.cell_size

    def like(self, values: np.ndarray) -> CellRaster:
        return CellRaster(values, self.west, self.north, self.cell_size)

    def thinned(self, pixels: int) -> CellRaster:
        """Every k-th cell each way (the middle one of each k x k block), k the smallest
        step that leaves at most ``pixels`` on the longer side: what an image ``pixels``
        wide shows of the raster when it is resampled to the nearest cell anyway."""
        step = -(-max(self.shape) // max(pixels, 1))
        if step <= 1:
            return self
        return CellRaster(self.values[step // 2::step, step // 2::step], self.west, self.north, self.cell_size * step)


def rasterize_cells(lat: np.ndarray, lon: np.ndarray, values: np.ndarray, cell_size: float,
                    frame: CellRaster | None = None) -> CellRaster:
    """Cells' values as a :class:`CellRaster` spanning the cells, or on ``frame``'s grid
    (cells outside it left out)."""
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    if frame is None:
        if len(lat) == 0:
            raise ValueError("no cells to draw")
        half = cell_size / 2
        rows = int(np.rint((lat.max() - lat.min()) / cell_size)) + 1
        cols = int(np.rint((lon.max() - lon.min()) / cell_size)) + 1
        frame = CellRaster(np.empty((rows, cols), np.float32), float(lon.min() - half),
                           float(lat.max() + half), cell_size)
    image = np.full(frame.shape, np.nan, dtype=np.float32)
    row, col = frame.pixel_of(lat, lon)
    inside = (row >= 0) & (row < frame.shape[0]) & (col >= 0) & (col < frame.shape[1])
    image[row[inside], col[inside]] = np.asarray(values)[inside]
    return frame.like(image)


def probability_raster(grid: pd.DataFrame, cell_size: float) -> CellRaster:
    """The calibrated probability of every predicted cell (``grid``: ``lat``, ``lon``,
    ``probability``)."""
    return rasterize_cells(grid["lat"].to_numpy(), grid["lon"].to_numpy(),
                           grid["probability"].to_numpy(), cell_size)


def write_cog(raster: CellRaster, path: str, description: str = "calibrated ASM probability") -> None:
    """``raster`` as a Cloud-Optimized GeoTIFF: EPSG:4326, float32, NaN as nodata,
    256-pixel tiles, DEFLATE, and averaged overviews down to one tile."""
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    height, width = raster.shape
    profile = {"driver": "GTiff", "height": height, "width": width, "count": 1, "dtype": "float32",
               "crs": "EPSG:4326", "transform": raster.transform(), "nodata": float("nan")}
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(raster.values.astype(np.float32, copy=False), 1)
            dataset.set_band_description(1, description)
        with memory.open() as source, writing(path) as tmp:
            # The COG driver only copies: it lays out tiles, overviews and headers in the
            # order a reader over HTTP needs, which writing in place cannot.
            rasterio.shutil.copy(source, str(tmp), driver="COG", BLOCKSIZE=COG_BLOCK_SIZE,
                                 COMPRESS="DEFLATE", PREDICTOR=3, OVERVIEWS="AUTO",
                                 RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER")
