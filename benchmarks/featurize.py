"""Benchmark: random convolutional features per second, against a plain NumPy reference.

Not a test: it asserts nothing. A synthetic 10 m Sentinel-2-like raster (4 bands, UTM) is
written, and its cells of 0.01 degrees (about 111 x 111 pixels) are featurized with
4000 features (2000 filters of 3 x 3) in three ways, each on one core:

- **reference**: the straightforward NumPy way: every window's response to every filter
  held at once (im2col times the filters), then both ReLUs and their means;
- **rcf_features**: asm_dask's arithmetic alone (:func:`asm_dask.featurization.convolve.rcf_features`),
  on pixels already in memory;
- **asm-dask featurize**: the whole command on a local cluster of one worker of one thread
  (reading and warping the imagery, the filters drawn from it, the Parquet written).

It prints cells per second per core and the ratios, and from them the time for Sierra
Leone's 58,000 cells on 2 cores and for a DR Congo-size country (2.3 million cells) on a
cluster of 64 cores.

    python benchmarks/featurize.py [--cells 48] [--features 4000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

SIERRA_LEONE_CELLS = 58_000
DR_CONGO_CELLS = 2_300_000


def _raster(path: Path, n_cells: int) -> list[float]:
    """A 10 m raster in UTM 29N (Sierra Leone's zone) covering ``n_cells`` cells of 0.01
    degrees in a row; returns the box of those cells."""
    west, south = -12.0, 8.0
    east, north = west + 0.01 * n_cells, south + 0.01
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32629", always_xy=True)
    xs, ys = to_utm.transform([west - 0.01, east + 0.01] * 2, [south - 0.01] * 2 + [north + 0.01] * 2)
    width, height = int((max(xs) - min(xs)) / 10), int((max(ys) - min(ys)) / 10)
    rng = np.random.default_rng(0)
    data = rng.integers(500, 3000, (4, height, width), dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=4, dtype="uint16",
                       crs="EPSG:32629", transform=from_origin(min(xs), max(ys), 10, 10), tiled=True,
                       blockxsize=256, blockysize=256) as dst:
        dst.write(data)
    return [west, south, east, north]


def _reference(pixels: np.ndarray, filters: np.ndarray, bias: float) -> np.ndarray:
    """Every response held at once: the plain way."""
    k = filters.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(pixels, (k, k), axis=(1, 2))
    rows = windows.transpose(1, 2, 0, 3, 4).reshape(-1, pixels.shape[0] * k * k)
    response = rows @ filters.reshape(len(filters), -1).T
    return np.concatenate([np.maximum(response - bias, 0).mean(axis=0), np.maximum(-response - bias, 0).mean(axis=0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=48, help="cells featurized (default 48)")
    parser.add_argument("--features", type=int, default=4000, help="features per cell (default 4000)")
    args = parser.parse_args()

    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    import asm_dask
    from asm_dask.featurization.convolve import rcf_features
    from asm_dask.featurization.filters import gaussian_filters

    bank = gaussian_filters(args.features // 2, 4, 3, 0.0, seed=0)
    rng = np.random.default_rng(1)
    cell = (rng.random((4, 111, 111)) * 0.3).astype(np.float32)
    few = max(2, args.cells // 8)
    with threadpool_limits(1):
        started = time.perf_counter()
        for _ in range(few):
            expected = _reference(cell, bank.weights, bank.bias)
        reference = few / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(few):
            ours = rcf_features(cell, bank)
        arithmetic = few / (time.perf_counter() - started)
    assert np.allclose(ours, expected, rtol=1e-4, atol=1e-6)

    with tempfile.TemporaryDirectory() as folder:
        bbox = _raster(Path(folder) / "s2.tif", args.cells)
        with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            started = time.perf_counter()
            result = asm_dask.featurize({"imagery": {"path": str(Path(folder) / "s2.tif")},
                                         "grid": {"cell_size": 0.01, "bbox": bbox},
                                         "method": {"name": "rcf", "n_features": args.features, "mode": "empirical"},
                                         "output": str(Path(folder) / "features.parquet")}, client)
            whole = result.n_featurized / (time.perf_counter() - started)

    print(f"{args.features} features of 3 x 3 filters, cells of 0.01 degrees of 10 m imagery (111 x 111 pixels), "
          "one core:")
    print(f"  reference (all responses at once)  {reference:6.1f} cells/s  1.00")
    print(f"  rcf_features (pixels in memory)    {arithmetic:6.1f} cells/s  {arithmetic / reference:.2f}")
    print(f"  asm-dask featurize ({result.n_featurized} cells)      {whole:6.1f} cells/s  {whole / reference:.2f}")
    print(f"Sierra Leone, {SIERRA_LEONE_CELLS:,} cells on 2 cores: {SIERRA_LEONE_CELLS / whole / 2 / 60:.0f} min; "
          f"DR Congo, {DR_CONGO_CELLS:,} cells on 64 cores: {DR_CONGO_CELLS / whole / 64 / 60:.0f} min")


if __name__ == "__main__":
    main()
