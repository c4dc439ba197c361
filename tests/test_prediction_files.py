"""Predict stage: the prediction files are the GeoParquet geopandas writes."""

import io

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from asm_dask.prediction.geoparquet import write_cell_predictions
from asm_dask.read.grid import CRS, cell_squares


@pytest.mark.parametrize("n_cells", [1000, 1, 0])
def test_prediction_file_is_what_geopandas_writes_for_the_cells_squares(n_cells):
    rng = np.random.default_rng(n_cells)
    lat = np.round(rng.uniform(-5, 10, n_cells), 2) + 0.005  # both hemispheres
    lon = np.round(rng.uniform(-13, 30, n_cells), 2) + 0.005
    columns = {"cell_id": rng.integers(0, 10**9, n_cells), "lat": lat, "lon": lon,
               "score": rng.normal(size=n_cells), "probability": rng.random(n_cells)}
    ours = write_cell_predictions(*columns.values(), cell_size=0.01)
    reference = io.BytesIO()
    gpd.GeoDataFrame(columns, geometry=cell_squares(lat, lon, 0.01), crs=CRS).to_parquet(
        reference, index=False, write_covering_bbox=True, compression="zstd")
    written, expected = pq.read_table(pa.py_buffer(ours)), pq.read_table(pa.py_buffer(reference.getvalue()))
    assert written.equals(expected, check_metadata=True)
    assert written.schema.metadata == expected.schema.metadata  # the geo metadata: bbox, types, covering
    frame = gpd.read_parquet(io.BytesIO(ours))
    assert frame.crs == CRS and len(frame) == n_cells
    assert shapely.equals(frame.geometry.to_numpy(), cell_squares(lat, lon, 0.01)).all()
