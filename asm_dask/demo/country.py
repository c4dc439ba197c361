"""Synthetic MOSAIKS country in the seed notebook's exact file formats.

The real Sierra Leone labels and features are not public, and benchmarks need
countries of any size (up to DR Congo's 1.9 million cells, 30 GB).  This module
writes a stand-in with the same columns and encodings, a planted spatially
clustered mining signal, and the awkward cases the pipeline must handle
(labels on shared cell edges and corners, labels in the sea).

Unlike a real country, a synthetic one knows the truth: the probability with which each
label was drawn, and that of every cell (:mod:`asm_dask.demo.truth` holds runs to it).
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from asm_dask.storage import writing

_CENTRE_LON, _CENTRE_LAT = -11.8, 8.45  # middle of Sierra Leone
_BATCH_BYTES = 64 * 2**20  # caps a batch's feature matrix: 65,536 x 4000 floats would be 1 GB
_N_WAVES = 8  # smooth latent fields (land cover, relief, ...) behind the features
_N_HOTSPOTS = 14  # mining clusters
_NOISE_POOL = 1 << 20  # drawing fresh float32 noise runs at ~300 MB/s, slicing a pool at GB/s
# P(label is ASM) at a place: a background rate plus the mining intensity's share.
_BASE_RATE, _MINING_RATE = 0.04, 0.86


@dataclass(frozen=True)
class DemoFiles:
    """Paths and sizes of a synthetic country written by :func:`make_country`.

    Attributes
    ----------
    labels
        ``SLE_mines.csv``: label points in the seed notebook's columns.
    features
        ``SLE_features.feather``: ``image_id`` and ``feature_*`` per grid cell.
    n_cells
        Actual number of cells (rows of ``features``).
    n_labels
        Number of label points (rows of ``labels``).
    truth_labels
        ``truth_labels.csv``: ``unique_id`` and the ``true_probability`` each label was
        drawn with.
    truth_cells
        ``truth_cells.parquet``: every cell's centroid ``lat``, ``lon`` and
        ``true_probability`` (that of a label at its centroid).
    districts
        ``districts.gpkg``: a 3 x 3 grid of districts (``name``) covering the country, in
        UTM zone 29N (metres), as real boundary files often are.
    """

    labels: pathlib.Path
    features: pathlib.Path
    n_cells: int
    n_labels: int
    truth_labels: pathlib.Path
    truth_cells: pathlib.Path
    districts: pathlib.Path


@dataclass(frozen=True)
class _Grid:
    mask: np.ndarray  # land raster, row 0 is the northernmost row
    half: float  # cells per unit of the shape's normalised coordinates
    x0: int  # lon of the raster's west edge, in cells from 0 degrees
    y0: int  # lat of the raster's south edge, in cells from 0 degrees
    size: float

    def uv(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised shape coordinates of raster positions (x east, y north, in cells)."""
        side = self.mask.shape[0]
        return (x - side / 2) / self.half, (y - side / 2) / self.half

    def degrees(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Rounding makes an edge parse back from the CSV as the exact decimal edge.
        return (np.round((self.x0 + x) * self.size, 9), np.round((self.y0 + y) * self.size, 9))


def _land_grid(n_cells: int, size: float, rng: np.random.Generator) -> _Grid:
    """A noisy radial blob of about ``n_cells`` cells, with a margin of sea around it."""
    k = np.arange(2, 7)
    amp = 0.8 * rng.uniform(0, 0.3, k.size) / k  # damped harmonics: a lumpy coast, not a star
    phase = rng.uniform(0, 2 * np.pi, k.size)
    half = np.sqrt(n_cells / np.pi) / 0.8  # a disc of radius 0.8 as first guess
    for _ in range(6):  # rescale until the discretised blob has about n_cells cells
        side = 2 * int(np.ceil(1.25 * half)) + 2  # margin: the blob reaches radius 1.15 at most
        centres = (np.arange(side) + 0.5 - side / 2) / half
        u, v = centres[None, :], centres[::-1, None]
        theta = np.arctan2(v, u)
        radius = 0.8 + sum(a * np.cos(j * theta + p) for j, a, p in zip(k, amp, phase))
        mask = np.hypot(u, v) < radius
        if abs(mask.sum() - n_cells) <= 0.01 * n_cells:
            break
        half *= np.sqrt(n_cells / mask.sum())
    x0 = round(_CENTRE_LON / size) - side // 2
    y0 = round(_CENTRE_LAT / size) - side // 2
    return _Grid(mask, half, x0, y0, size)


@dataclass(frozen=True)
class _Fields:
    """Smooth latent fields and the mining intensity, as functions of shape coordinates."""

    freq: np.ndarray  # (2, waves)
    phase: np.ndarray  # (waves,)
    hot: np.ndarray  # (hotspots, 6): u, v, angle, sd along, sd across, amplitude

    @classmethod
    def draw(cls, grid: _Grid, rng: np.random.Generator) -> _Fields:
        rows, cols = np.nonzero(grid.mask)
        pick = rng.integers(rows.size, size=_N_HOTSPOTS)
        u, v = grid.uv(cols[pick] + 0.5, grid.mask.shape[0] - rows[pick] - 0.5)
        floor = 1.5 / grid.half  # keep hotspots a few cells wide on tiny grids
        along = np.maximum(rng.uniform(0.05, 0.15, _N_HOTSPOTS), floor)
        across = np.maximum(along / rng.uniform(1, 4, _N_HOTSPOTS), floor)  # elongated: valleys
        hot = np.column_stack([u, v, rng.uniform(0, np.pi, _N_HOTSPOTS), along, across,
                               rng.uniform(0.6, 1.0, _N_HOTSPOTS)])
        return cls(rng.normal(0, 2.5, (2, _N_WAVES)), rng.uniform(0, 2 * np.pi, _N_WAVES), hot)

    def mining(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Mining intensity in [0, 1]; a loop over hotspots keeps memory at O(len(u))."""
        m = np.zeros(u.shape)
        for hu, hv, angle, along, across, amp in self.hot:
            du, dv = u - hu, v - hv
            a = (du * np.cos(angle) + dv * np.sin(angle)) / along
            b = (dv * np.cos(angle) - du * np.sin(angle)) / across
            m += amp * np.exp(-0.5 * (a * a + b * b))
        return np.minimum(m, 1.0)

    def latent(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(waves + 2, n) float32: the smooth waves, the mining intensity and a constant 1."""
        waves = np.cos(np.outer(self.freq[0], u) + np.outer(self.freq[1], v) + self.phase[:, None])
        return np.vstack([waves, self.mining(u, v), np.ones_like(u)]).astype(np.float32)


def _cell_labels(values: np.ndarray, prefix: str, size: float) -> pa.Array:
    """``lat_8--405`` style strings with as many decimals as the half-cell needs."""
    decimals = next(d for d in range(15) if abs(round(size / 2, d) - size / 2) < 1e-12)
    return pa.array([f"{prefix}{v:.{decimals}f}".replace(".", "--") for v in values])


def _true_probability(mining: np.ndarray) -> np.ndarray:
    return _BASE_RATE + _MINING_RATE * mining


def _write_features(path: pathlib.Path, truth_path: pathlib.Path, grid: _Grid, fields: _Fields,
                    n_features: int, rows_per_batch: int | None, scale: float,
                    rng: np.random.Generator, jitter: float = 0.0,
                    jitter_rng: np.random.Generator | None = None) -> None:
    """Stream ReLU(weights @ latent fields + noise) to ``path``, one bounded batch at a time,
    and each cell's true probability to ``truth_path``.

    ``jitter`` > 0 adds a second, independent noise of that half-width drawn from
    ``jitter_rng``: :mod:`asm_dask.demo.years` sees one land through the same ``rng`` each
    year, and this is what differs between the years' images of an unchanged cell."""
    side = grid.mask.shape[0]
    rows, cols = np.nonzero(grid.mask)  # row-major from the north: a raster scan
    lats = _cell_labels((grid.y0 + side - np.arange(side) - 0.5) * grid.size, "lat_", grid.size)
    lons = _cell_labels((grid.x0 + np.arange(side) + 0.5) * grid.size, "lon_", grid.size)
    weights = np.empty((n_features, _N_WAVES + 2), np.float32)
    weights[:, :_N_WAVES] = rng.normal(0, 1 / np.sqrt(_N_WAVES), (n_features, _N_WAVES))
    # Mining shows in a quarter of the features (at least one), either sign.
    driven = rng.random(n_features) < 0.25
    driven[rng.integers(n_features)] = True
    sign = rng.choice([-1.0, 1.0], n_features)
    weights[:, _N_WAVES] = driven * sign * rng.uniform(0.5, 1.5, n_features)
    weights[:, -1] = rng.uniform(-0.2, 0.4, n_features)  # bias: some exact zeros after the ReLU
    weights *= scale
    step = rows_per_batch or max(1, _BATCH_BYTES // (4 * n_features))
    pool = rng.uniform(-0.6 * scale, 0.6 * scale, max(_NOISE_POOL, 2 * step)).astype(np.float32)
    if jitter:
        jitter_pool = jitter_rng.uniform(-jitter * scale, jitter * scale, pool.size).astype(np.float32)
    schema = pa.schema([("image_id", pa.string())]
                       + [(f"feature_{i}", pa.float32()) for i in range(n_features)])
    # Columns compress as ~16 KB buffers, too small to repay thread hand-offs
    # (measured 330 MB/s without threads against 250 MB/s with them).
    options = ipc.IpcWriteOptions(compression="lz4", use_threads=False)
    truth_schema = pa.schema([("lat", pa.float64()), ("lon", pa.float64()),
                              ("true_probability", pa.float64())])
    with ipc.new_file(str(path), schema, options=options) as writer, \
            pq.ParquetWriter(str(truth_path), truth_schema) as truth:
        for start in range(0, rows.size, step):
            r, c = rows[start:start + step], cols[start:start + step]
            u, v = grid.uv(c + 0.5, side - r - 0.5)
            latent = fields.latent(u, v)
            lon, lat = grid.degrees(c + 0.5, side - r - 0.5)
            true_probability = _true_probability(latent[_N_WAVES].astype(np.float64))
            truth.write_table(pa.table({"lat": lat, "lon": lon, "true_probability": true_probability},
                                       schema=truth_schema))
            # Feature-major layout makes every column contiguous, so Arrow wraps it without a copy.
            x = weights @ latent
            for f, offset in enumerate(rng.integers(0, pool.size - r.size, n_features)):
                x[f] += pool[offset:offset + r.size]
            if jitter:
                for f, offset in enumerate(jitter_rng.integers(0, pool.size - r.size, n_features)):
                    x[f] += jitter_pool[offset:offset + r.size]
            np.maximum(x, 0, out=x)  # MOSAIKS features are ReLU outputs
            ids = pc.binary_join_element_wise(lats.take(r), lons.take(c), "__")
            writer.write_batch(pa.record_batch([ids, *map(pa.array, x)], schema=schema))


def _labels(grid: _Grid, fields: _Fields, n_labels: int,
            rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label points: mostly inside cells, a few on shared edges and corners, a few at sea;
    and the probability each was drawn with."""
    mask, side = grid.mask, grid.mask.shape[0]
    rows, cols = np.nonzero(mask)
    n_sea, n_edge, n_corner = (max(k, round(share * n_labels)) for k, share in
                               ((1, 0.01), (2, 0.02), (1, 0.003)))
    n_inside = n_labels - n_sea - n_edge - n_corner
    # Targeted surveys go where mining is known, random ones anywhere: positives cluster.
    m_cells = fields.mining(*grid.uv(cols + 0.5, side - rows - 0.5))
    targeted = rng.random(n_inside) < 0.55
    cell = np.where(targeted, rng.choice(rows.size, n_inside, p=m_cells / m_cells.sum()),
                    rng.integers(rows.size, size=n_inside))
    frac = rng.uniform(0.001, 0.999, (2, n_inside))  # strictly inside, off the edges
    xs, ys = [cols[cell] + frac[0]], [side - rows[cell] - 1 + frac[1]]
    # Edges shared by two land cells: half between west-east pairs, half south-north.
    r, c = np.nonzero(mask[:, :-1] & mask[:, 1:])
    pick = rng.integers(r.size, size=n_edge // 2)
    xs.append(c[pick] + 1.0)
    ys.append(side - r[pick] - 1 + rng.uniform(0.05, 0.95, pick.size))
    r, c = np.nonzero(mask[1:, :] & mask[:-1, :])
    pick = rng.integers(r.size, size=n_edge - n_edge // 2)
    xs.append(c[pick] + rng.uniform(0.05, 0.95, pick.size))
    ys.append(side - r[pick] - 1.0)
    r, c = np.nonzero(mask[1:, :-1] & mask[1:, 1:] & mask[:-1, :-1] & mask[:-1, 1:])
    pick = rng.integers(r.size, size=n_corner)
    xs.append(c[pick] + 1.0)
    ys.append(side - r[pick] - 1.0)
    # Sea points sit well inside non-land cells, so they touch no land square.
    r, c = np.nonzero(~mask)
    pick = rng.integers(r.size, size=n_sea)
    xs.append(c[pick] + rng.uniform(0.1, 0.9, n_sea))
    ys.append(side - r[pick] - 1 + rng.uniform(0.1, 0.9, n_sea))
    x, y = np.concatenate(xs), np.concatenate(ys)
    true_probability = _true_probability(fields.mining(*grid.uv(x, y)))
    label = (rng.random(n_labels) < true_probability).astype(int)
    lon, lat = grid.degrees(x, y)
    low = rng.random(n_labels) < 0.25
    inspected = np.where(low, rng.uniform(0, 0.2, n_labels), rng.uniform(0.2, 1, n_labels))
    sample_type = np.concatenate([np.where(targeted, "targeted", "random"),
                                  rng.choice(["random", "targeted"], n_labels - n_inside)])
    mine_type = np.where(rng.random(n_labels) < 0.05, "commercial",
                         np.where(label == 1, "artisanal", "none"))
    order = rng.permutation(n_labels)  # the awkward cases must not all sit at the end
    return pd.DataFrame({
        "lon": lon[order], "lat": lat[order],
        "unique_id": [f"SLE-{i:06d}" for i in range(n_labels)],
        "country": "SLE",
        "sample_type": sample_type[order], "mine_type": mine_type[order],
        "confidence": rng.choice(np.arange(1, 6), n_labels, p=[0.08, 0.12, 0.25, 0.3, 0.25])[order],
        "label": label[order],
        "proportion_inspected": np.floor(inspected[order] * 1000) / 1000,
    }), pd.DataFrame({"unique_id": [f"SLE-{i:06d}" for i in range(n_labels)],
                      "true_probability": true_probability[order]})


def make_country(out_dir: str | os.PathLike, n_cells: int = 5000, n_features: int = 4000,
                 n_labels: int | None = None, seed: int = 0, cell_size: float = 0.01,
                 rows_per_batch: int | None = None, feature_scale: float = 1.0,
                 featurization_seed: int | None = None) -> DemoFiles:
    """Write a synthetic country as ``SLE_mines.csv`` and ``SLE_features.feather``.

    Parameters
    ----------
    out_dir
        Directory for the two files; created if missing.
    n_cells
        Approximate number of land cells (the result is within a few percent).
    n_features
        Number of ``feature_*`` columns.
    n_labels
        Number of label points; defaults to ``max(200, n_cells // 10)``.
    seed
        Seed of every random choice: equal arguments give identical files.
    cell_size
        Grid spacing in degrees; cell centres sit at edge + ``cell_size / 2``.
    rows_per_batch
        Rows per Arrow record batch. ``None``: as many as make 64 MiB of features, so
        that memory stays bounded at any country size. pandas' ``to_feather`` writes
        65,536 rows (1 GB at 4000 features), which asm_dask must also handle.
    feature_scale
        Size of the feature values. At 1, values are mostly below 1 and kernel entries
        ``x . x'`` over 4000 features run into the thousands, as with MOSAIKS features;
        ridge penalties act relative to this scale, so a tool must not assume one.
    featurization_seed
        Seed of how features are made from the land (MOSAIKS' random filters). Countries
        with different ``seed`` and the same ``featurization_seed`` are different places
        seen through the same features, so a model trained on one applies to the other.
        ``None``: drawn from ``seed``.

    Returns
    -------
    DemoFiles
        The two paths, the actual number of cells and the number of labels.
    """
    if n_cells < 100 or n_features < 1 or (rows_per_batch is not None and rows_per_batch < 1) \
            or cell_size <= 0 or feature_scale <= 0:
        raise ValueError("need n_cells >= 100, n_features >= 1, rows_per_batch >= 1, cell_size > 0, "
                         "feature_scale > 0")
    n_labels = max(200, n_cells // 10) if n_labels is None else n_labels
    if n_labels < 10:
        raise ValueError("need n_labels >= 10")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Independent streams: the labels do not change with n_features or rows_per_batch.
    shape_rng, field_rng, label_rng, feature_rng = map(
        np.random.default_rng, np.random.SeedSequence(seed).spawn(4))
    if featurization_seed is not None:
        feature_rng = np.random.default_rng(np.random.SeedSequence(featurization_seed))
    grid = _land_grid(n_cells, cell_size, shape_rng)
    fields = _Fields.draw(grid, field_rng)
    files = DemoFiles(out / "SLE_mines.csv", out / "SLE_features.feather",
                      int(grid.mask.sum()), n_labels, out / "truth_labels.csv", out / "truth_cells.parquet",
                      out / "districts.gpkg")
    labels, truth = _labels(grid, fields, n_labels, label_rng)
    with writing(files.labels) as tmp:
        labels.to_csv(tmp, index=False)
    with writing(files.truth_labels) as tmp:
        truth.to_csv(tmp, index=False)
    with writing(files.features) as tmp, writing(files.truth_cells) as truth_tmp:
        _write_features(tmp, truth_tmp, grid, fields, n_features, rows_per_batch, feature_scale,
                        feature_rng)
    write_districts(files.districts, files.truth_cells)
    return files


def write_districts(path: pathlib.Path, cells_file: pathlib.Path, n: int = 3) -> None:
    """An n x n grid of rectangular districts over the cells' extent, in UTM 29N."""
    import geopandas as gpd
    from shapely.geometry import box

    cells = pd.read_parquet(cells_file, columns=["lat", "lon"])
    lon = np.linspace(cells["lon"].min() - 0.01, cells["lon"].max() + 0.01, n + 1)
    lat = np.linspace(cells["lat"].max() + 0.01, cells["lat"].min() - 0.01, n + 1)
    names, shapes = [], []
    for i in range(n):
        for j in range(n):
            names.append(f"{'NCS'[i] if n == 3 else i}{'WCE'[j] if n == 3 else j} district")
            shapes.append(box(lon[j], lat[i + 1], lon[j + 1], lat[i]))
    frame = gpd.GeoDataFrame({"name": names}, geometry=shapes, crs="EPSG:4326").to_crs("EPSG:32629")
    tmp = path.with_name(f".{path.stem}.tmp.gpkg")  # GDAL wants the extension
    frame.to_file(tmp, driver="GPKG", layer="districts")
    os.replace(tmp, path)
