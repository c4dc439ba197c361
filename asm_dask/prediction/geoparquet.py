"""A partition's predictions as GeoParquet, written without building a geometry.

Every cell is a square of fixed size, so its WKB polygon is 93 bytes of one layout (a
ring of five corners): written straight from the centroids, the squares cost a small
share of building them with shapely and having geopandas encode them (0.2 s + 0.26 s
for Sierra Leone's 59,000 cells, half of its prediction pass). The file is what
geopandas writes for those cells (GeoParquet 1.1, the squares as WKB, a covering
``bbox`` column, the same schema and metadata): a test holds the two to be equal.
"""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..read.grid import CRS, cell_edges, cell_squares

#: a little-endian WKB polygon of one ring of five points
_SQUARE_WKB = np.dtype([("byte_order", "u1"), ("type", "<u4"), ("rings", "<u4"), ("points", "<u4"),
                        ("xy", "<f8", (10,))])
_WKB_POLYGON = 3


def write_cell_predictions(cell_id: np.ndarray, lat: np.ndarray, lon: np.ndarray, score: np.ndarray,
                           probability: np.ndarray, cell_size: float, schema: pa.Schema | None = None) -> bytes:
    """The GeoParquet file (zstd) of cells' predictions, each cell's square its geometry;
    ``schema``: :func:`prediction_schema`'s, made once (else made here)."""
    west, south, east, north = cell_edges(lat, lon, cell_size)
    schema = prediction_schema() if schema is None else schema
    columns = [pa.array(np.asarray(cell_id, dtype=np.int64)), pa.array(np.asarray(lat, dtype=np.float64)),
               pa.array(np.asarray(lon, dtype=np.float64)), pa.array(np.asarray(score, dtype=np.float64)),
               pa.array(np.asarray(probability, dtype=np.float64)), _square_wkb(west, south, east, north),
               pa.StructArray.from_arrays([pa.array(west), pa.array(south), pa.array(east), pa.array(north)],
                                          fields=list(schema.field("bbox").type))]
    geo = json.loads(schema.metadata[b"geo"])
    column = geo["columns"]["geometry"]
    if len(west):
        column["geometry_types"] = ["Polygon"]
        column["bbox"] = [float(west.min()), float(south.min()), float(east.max()), float(north.max())]
    else:  # as geopandas writes an empty frame
        column["geometry_types"] = []
        column.pop("bbox", None)
    table = pa.Table.from_arrays(columns, schema=schema.with_metadata({**schema.metadata,
                                                                       b"geo": json.dumps(geo).encode()}))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _square_wkb(west: np.ndarray, south: np.ndarray, east: np.ndarray, north: np.ndarray) -> pa.Array:
    """Each square as WKB, its corners in the order of ``shapely.box``: counter-clockwise
    from the south-east corner, closed."""
    squares = np.empty(len(west), dtype=_SQUARE_WKB)
    squares["byte_order"], squares["type"], squares["rings"], squares["points"] = 1, _WKB_POLYGON, 1, 5
    squares["xy"] = np.column_stack([east, south, east, north, west, north, west, south, east, south])
    offsets = np.arange(len(west) + 1, dtype=np.int32) * _SQUARE_WKB.itemsize
    return pa.Array.from_buffers(pa.binary(), len(west), [None, pa.py_buffer(offsets), pa.py_buffer(squares)])


@functools.cache
def prediction_schema() -> pa.Schema:
    """The schema and metadata geopandas writes for a prediction file: taken from the
    file it writes for one cell, so that ours follow its version's. The first call in a
    process costs about 0.2 s (the CRS's PROJJSON), so a prediction makes it once, beside
    the first sums, and hands it to every write."""
    import geopandas as gpd

    one = np.zeros(1)
    frame = gpd.GeoDataFrame({"cell_id": np.zeros(1, dtype=np.int64), "lat": one, "lon": one, "score": one,
                              "probability": one}, geometry=cell_squares(one, one, 1.0), crs=CRS)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, write_covering_bbox=True, compression="zstd")
    return pq.read_schema(pa.py_buffer(buffer.getvalue()))
