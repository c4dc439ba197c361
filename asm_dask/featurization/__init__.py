"""Featurization: features made from imagery and embedding rasters, for a grid of cells.

:mod:`.imagery` reads tiles in any CRS as the pixels of cells; :mod:`.cells` chooses the
cells and their blocks; :mod:`.filters`, :mod:`.convolve` and :mod:`.pool` turn pixels
into features; :mod:`.blocks` is one task; :mod:`.run` the whole featurization on Dask.
"""

from .filters import FilterBank
from .run import FeaturizeResult, featurize_job, read_filters

__all__ = ["FeaturizeResult", "FilterBank", "featurize_job", "read_filters"]
