"""One task of a featurization: the cells of a block, read from the imagery and turned
into features by a method (random convolutional features, or pooled band statistics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.numerics import one_blas_thread
from .convolve import rcf_features
from .filters import FilterBank
from .imagery import Imagery, read_box
from .pool import covered_fraction, pooled_features


@dataclass(frozen=True)
class RandomConvolution:
    """MOSAIKS random convolutional features (:mod:`.convolve`) of a :class:`FilterBank`."""

    bank: FilterBank

    @property
    def n_features(self) -> int:
        return self.bank.n_features

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return rcf_features(pixels, self.bank)


@dataclass(frozen=True)
class PooledStatistics:
    """Each band's statistics over a cell's pixels (:mod:`.pool`)."""

    stats: tuple[str, ...]
    n_bands: int

    @property
    def n_features(self) -> int:
        return len(self.stats) * self.n_bands

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return pooled_features(pixels, self.stats)


Method = RandomConvolution | PooledStatistics


def featurize_block(imagery: Imagery, lat: np.ndarray, lon: np.ndarray, cell_size: float, method: Method,
                    min_coverage: float) -> pd.DataFrame:
    """The features of the cells centred at ``lat``, ``lon``, in their order, with each
    cell's ``covered`` fraction; cells covered less than ``min_coverage`` keep NaN
    features. The pixels of cells of the same pixel shape are read at once; BLAS runs on
    one thread: the same bits on any cluster."""
    half = cell_size / 2
    features = np.full((len(lat), method.n_features), np.nan, dtype=np.float32)
    covered = np.zeros(len(lat))
    shapes = [imagery.cell_pixels(cell_size, float(row_lat)) for row_lat in lat]
    with one_blas_thread():
        for shape in sorted(set(shapes)):
            rows, columns = shape
            group = np.flatnonzero([s == shape for s in shapes])
            west, north = float(lon[group].min()) - half, float(lat[group].max()) + half
            n_across = round((float(lon[group].max()) + half - west) / cell_size)
            n_down = round((north - float(lat[group].min()) + half) / cell_size)
            box = read_box(imagery, west, north - n_down * cell_size, west + n_across * cell_size, north,
                           n_across * columns, n_down * rows)
            for i in group:
                top = round((north - lat[i] - half) / cell_size) * rows
                left = round((lon[i] - half - west) / cell_size) * columns
                pixels = box[:, top:top + rows, left:left + columns]
                covered[i] = covered_fraction(pixels)
                if covered[i] >= min_coverage and covered[i] > 0:
                    features[i] = method.features(pixels)
    frame = pd.DataFrame(features, columns=[f"feature_{j}" for j in range(method.n_features)])
    frame.insert(0, "covered", covered)
    frame.insert(0, "lon", lon)
    frame.insert(0, "lat", lat)
    return frame


def sample_pixels(imagery: Imagery, lat: np.ndarray, lon: np.ndarray, cell_size: float) -> list[np.ndarray]:
    """The pixels of a few cells, each ``(n_bands, rows, columns)``: what empirical filters
    are drawn from."""
    half = cell_size / 2
    samples = []
    for cell_lat, cell_lon in zip(lat, lon):
        rows, columns = imagery.cell_pixels(cell_size, float(cell_lat))
        samples.append(read_box(imagery, cell_lon - half, cell_lat - half, cell_lon + half, cell_lat + half,
                                  columns, rows))
    return samples
