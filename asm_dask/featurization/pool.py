"""Pooled band statistics of a cell: for embedding rasters and any multi-band layer.

A pixel counts where every band holds a value (embedding rasters mark a missing pixel in
all bands at once); each statistic is taken over those pixels, band by band.
"""

from __future__ import annotations

import numpy as np

STATS = ("mean", "std", "min", "max")


def pooled_features(pixels: np.ndarray, stats: tuple[str, ...]) -> np.ndarray:
    """``len(stats) * n_bands`` features of one cell's ``pixels`` (``(n_bands, height,
    width)``, NaN where missing): each statistic of every band in turn (all bands' means,
    then all bands' standard deviations...); NaN where no pixel holds every band. ``std``
    is the population standard deviation (``ddof=0``)."""
    flat = pixels.reshape(pixels.shape[0], -1)
    flat = flat[:, np.isfinite(flat).all(axis=0)].astype(np.float64)
    if flat.shape[1] == 0:
        return np.full(len(stats) * pixels.shape[0], np.nan, dtype=np.float32)
    computed = {"mean": flat.mean, "std": flat.std, "min": flat.min, "max": flat.max}
    return np.concatenate([computed[name](axis=1) for name in stats]).astype(np.float32)


def covered_fraction(pixels: np.ndarray) -> float:
    """The share of a cell's pixels that hold every band."""
    return float(np.isfinite(pixels).all(axis=0).mean())
