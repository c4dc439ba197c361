"""Square blocks of cells: the groups of spatially blocked validation.

MOSAIKS features are strongly spatially autocorrelated, so a test set of cells next to
training cells flatters a model; blocks of ``block_size`` degrees keep nearby cells on
one side of a split.
"""

from __future__ import annotations

import numpy as np


def block_groups(lat: np.ndarray, lon: np.ndarray, block_size: float) -> np.ndarray:
    """The square block of ``block_size`` degrees that each cell centroid falls in."""
    row = np.floor((np.asarray(lat) + 90) / block_size).astype(np.int64)
    col = np.floor((np.asarray(lon) + 180) / block_size).astype(np.int64)
    return row * 1_000_000 + col
