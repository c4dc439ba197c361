"""One task of a featurization: the cells of a block, read from the imagery and turned
into features by a method (random convolutional features, or pooled band statistics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.numerics import one_blas_thread
from .convolve import rcf_features
from .filters import FilterBank
from .imagery import Imagery, read_strip
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
    features. BLAS runs on one thread: the same bits on any cluster."""
    half = cell_size / 2
    features = np.full((len(lat), method.n_features), np.nan, dtype=np.float32)
    covered = np.zeros(len(lat))
    with one_blas_thread():
        for row_lat in np.unique(lat):
            in_row = np.flatnonzero(lat == row_lat)
            west = float(lon[in_row].min()) - half
            n_columns = round((float(lon[in_row].max()) + half - west) / cell_size)
            rows, columns = imagery.cell_pixels(cell_size, float(row_lat))
            strip = read_strip(imagery, west, row_lat - half, west + n_columns * cell_size, row_lat + half,
                               n_columns * columns, rows)
            for i in in_row:
                first = round((lon[i] - half - west) / cell_size) * columns
                pixels = strip[:, :, first:first + columns]
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
        samples.append(read_strip(imagery, cell_lon - half, cell_lat - half, cell_lon + half, cell_lat + half,
                                  columns, rows))
    return samples
