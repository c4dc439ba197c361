"""A featurization, end to end: imagery and cells in, a feature table out, on Dask.

One task per block of cells (:func:`~asm_dask.featurization.cells.blocks_of`), each reading
only its cells' pixels and writing its rows whole to a part file beside the output
(``OUTPUT.parts/``). The parts are then written into one Parquet file, a row group per
block, in the blocks' order, which ``asm-dask run`` and ``asm-dask predict`` read in place.
A featurization stopped midway resumes where it stopped: the parts already written under
the same settings are kept. The filters travel inside the file, in its metadata.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client

from .. import storage
from ..config.featurize import FeaturizeJob, MethodConfig
from ..errors import InputError, warn
from ..read.features import FEATURIZATION_KEY, featurization_of, input_fingerprint, open_input
from ..read.grid import EDGE_DECIMALS
from ..records.fingerprint import digest, fingerprint, versions
from ..runtime.progress import wait_with_progress
from .blocks import Method, PooledStatistics, RandomConvolution, featurize_block, sample_pixels
from .cells import Cells, blocks_of, cells_in_area, cells_in_box, cells_like
from .filters import FilterBank, empirical_filters, gaussian_filters
from .imagery import Imagery, open_imagery

log = logging.getLogger(__name__)

#: cells whose pixels empirical filters are drawn from, as the paper's 10 images
SAMPLE_CELLS = 16


@dataclass(frozen=True)
class FeaturizeResult:
    """What a featurization wrote, and what it left out."""

    output: str
    n_cells: int  #: cells of the grid asked for
    n_featurized: int  #: rows of the table written
    n_outside_imagery: int  #: cells no tile covers at all
    n_under_covered: int  #: cells covered, but by less than ``min_coverage``
    n_features: int
    filters_fingerprint: str | None  #: of the rcf filters; ``None`` for pooled statistics


def featurize_job(job: FeaturizeJob, client: Client, filters: FilterBank | None = None) -> FeaturizeResult:
    """Featurize ``job``'s cells from its imagery, on ``client``; ``filters`` reuses the
    filters of an earlier featurization (:func:`read_filters`) instead of drawing them."""
    settings = job.imagery
    imagery = open_imagery(settings.path, settings.bands, settings.scale, settings.offset, settings.nodata)
    grid = job.grid
    cells = cells_like(grid.like, grid.cell_size) if grid.like else cells_in_area(grid.area, grid.cell_size) \
        if grid.area else cells_in_box(*grid.bbox, grid.cell_size)
    _check_output(job, imagery)
    under = np.flatnonzero(imagery.covers(cells.lat, cells.lon))
    if not len(under):
        raise InputError(f"{job.imagery.path}: the imagery covers none of the grid's {len(cells):,} cells")
    kernel = filters.kernel_size if filters is not None else job.method.kernel_size
    _check_pixels(imagery, cells, kernel if job.method.name == "rcf" else 1)
    method = _method(job, imagery, cells, under, filters, client)
    blocks = blocks_of(cells, job.block_cells)
    key = fingerprint({"imagery": [(t.path, input_fingerprint(t.path)) for t in imagery.tiles],
                       "bands": imagery.bands, "scale": imagery.scale, "offset": imagery.offset,
                       "nodata": imagery.nodata, "cells": _digest(cells), "method": _describe(method),
                       "min_coverage": job.min_coverage, "block_cells": job.block_cells, "versions": versions()})
    parts = job.output + ".parts"
    done = _resume(parts, key, len(blocks))
    if done:
        log.info("resuming: %d of %d blocks already featurized", len(done), len(blocks))
    todo = [i for i in range(len(blocks)) if i not in done]
    futures = [client.submit(_featurize_and_write, imagery, cells.lat[blocks[i]], cells.lon[blocks[i]],
                             cells.cell_size, method, job.min_coverage, _part(parts, i), pure=False)
               for i in todo]
    wait_with_progress(client, futures, "featurize cells")
    bank = method.bank if isinstance(method, RandomConvolution) else None
    counts = _combine(parts, len(blocks), job.output, {
        "method": _describe(method), "filters": bank.as_metadata() if bank else None,
        "imagery": [t.path for t in imagery.tiles], "bands": list(imagery.bands),
        "scale": imagery.scale, "offset": imagery.offset, "cell_size": cells.cell_size,
        "min_coverage": job.min_coverage, "key": key})
    storage.remove(parts)
    return FeaturizeResult(output=job.output, n_cells=len(cells), n_features=method.n_features,
                           filters_fingerprint=bank.fingerprint if bank else None, **counts)


def read_filters(path: str) -> FilterBank:
    """The filters a featurization saved in its feature table."""
    if not storage.exists(path):
        raise InputError(f"{path}: not found (the filters to reuse: a feature table made by asm-dask featurize)")
    made = featurization_of(path)
    if made is None:
        raise InputError(f"{path}: holds no filters (not a feature table of asm-dask featurize)")
    if made.get("filters") is None:
        raise InputError(f"{path}: holds no filters (featurized by pooling band statistics)")
    return FilterBank.from_metadata(made["filters"], path)


def _check_output(job: FeaturizeJob, imagery: Imagery) -> None:
    """The output is no input, and writes over nothing but an earlier featurization's table."""
    output = storage.normalized(job.output)
    inputs = [tile.path for tile in imagery.tiles] + [path for path in (job.grid.like, job.grid.area) if path]
    for path in inputs:
        if storage.normalized(path) == output:
            raise InputError(f"{job.output}: the output is an input of the featurization; choose another output")
    if storage.exists(job.output):
        try:
            earlier = featurization_of(job.output) is not None
        except (OSError, pa.ArrowException, InputError):
            earlier = False
        if not earlier:
            raise InputError(f"{job.output}: exists and is not a table of asm-dask featurize: it is left as it "
                             "is; choose another output")


def _note_settings_not_used(settings: MethodConfig, filters: FilterBank) -> None:
    """Reused filters are what they are: a setting of the file that says otherwise (and
    is not a default) is not used, and a warning says so."""
    theirs = {"n_features": filters.n_features, "kernel_size": filters.kernel_size, "bias": filters.bias,
              "mode": filters.mode, "seed": filters.seed}
    defaults = MethodConfig()
    differ = [f"method.{key} {getattr(settings, key)} (theirs: {value})" for key, value in theirs.items()
              if getattr(settings, key) != value and getattr(settings, key) != getattr(defaults, key)]
    if differ:
        warn(f"the filters given to reuse (--filters) are used as they are, not {', '.join(differ)}")


def _method(job: FeaturizeJob, imagery: Imagery, cells: Cells, under: np.ndarray, filters: FilterBank | None,
            client: Client) -> Method:
    """How pixels become features; empirical filters are drawn from cells ``under`` the imagery."""
    settings = job.method
    n_bands = len(imagery.bands)
    if settings.name == "pool":
        if filters is not None:
            raise InputError("the filters given to reuse (--filters) are random convolutional filters; "
                             "method.name: pool uses none")
        return PooledStatistics(tuple(settings.stats), n_bands)
    if filters is not None:
        if filters.n_bands != n_bands:
            raise InputError(f"the filters given to reuse (--filters) take {filters.n_bands} bands; "
                             f"imagery.bands reads {n_bands}")
        _note_settings_not_used(settings, filters)
        return RandomConvolution(filters)
    n_filters = settings.n_features // 2
    if settings.mode == "gaussian":
        return RandomConvolution(gaussian_filters(n_filters, n_bands, settings.kernel_size, settings.bias,
                                                  settings.seed))
    rng = np.random.default_rng(settings.seed)
    chosen = np.sort(rng.choice(under, min(SAMPLE_CELLS, len(under)), replace=False))
    images = client.submit(sample_pixels, imagery, cells.lat[chosen], cells.lon[chosen], cells.cell_size,
                           pure=False).result()
    return RandomConvolution(empirical_filters(images, n_filters, settings.kernel_size, settings.bias,
                                               settings.seed))


def _check_pixels(imagery: Imagery, cells: Cells, min_pixels: int) -> None:
    """Cells must hold enough pixels for the method: a kernel's width at least."""
    rows, columns = imagery.cell_pixels(cells.cell_size, float(np.abs(cells.lat).max()))
    if min(rows, columns) < min_pixels:
        raise InputError(f"cells of {cells.cell_size:g} degrees hold {rows} x {columns} pixels of "
                         f"{imagery.pixel_metres:g} m imagery, fewer than the kernel's {min_pixels}: "
                         "choose a larger grid.cell_size or a smaller method.kernel_size")


def _describe(method: Method) -> dict[str, Any]:
    if isinstance(method, RandomConvolution):
        bank = method.bank
        return {"name": "rcf", "mode": bank.mode, "n_features": bank.n_features, "kernel_size": bank.kernel_size,
                "bias": bank.bias, "seed": bank.seed, "filters": bank.fingerprint}
    return {"name": "pool", "stats": list(method.stats)}


def _digest(cells: Cells) -> str:
    return digest(np.round(cells.lat, EDGE_DECIMALS).tobytes(), np.round(cells.lon, EDGE_DECIMALS).tobytes(),
                  repr(cells.cell_size).encode())


def _part(parts: str, index: int) -> str:
    return storage.join(parts, _part_name(index))


def _part_name(index: int) -> str:
    return f"block-{index:06d}.parquet"


def _resume(parts: str, key: str, n_blocks: int) -> set[int]:
    """Blocks already written by a featurization of the same key; a folder of another
    key is emptied first."""
    manifest = storage.join(parts, "manifest.json")
    held = storage.read_json(manifest)
    if isinstance(held, dict) and held.get("key") == key:
        names = set(storage.list_names(parts))
        return {i for i in range(n_blocks) if _part_name(i) in names}
    if storage.exists(parts):
        if held is None:
            raise InputError(f"{parts}: exists and is not the work folder of an asm-dask featurization; "
                             "move it, or choose another output")
        storage.remove(parts)
    storage.make_folder(parts)
    storage.write_text(manifest, json.dumps({"key": key, "n_blocks": n_blocks}))
    return set()


def _featurize_and_write(imagery: Imagery, lat: np.ndarray, lon: np.ndarray, cell_size: float, method: Method,
                         min_coverage: float, part: str) -> None:
    frame = featurize_block(imagery, lat, lon, cell_size, method, min_coverage)
    with storage.writing(part) as tmp:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)


def _combine(parts: str, n_blocks: int, output: str, description: dict[str, Any]) -> dict[str, int]:
    """The parts written into ``output``, a row group per block, without the cells left
    out; what was left out counted, and said in the file's metadata with ``description``."""
    # the covered column alone: a part's footer and one column chunk, not the whole part
    coverage = []
    for i in range(n_blocks):
        with open_input(_part(parts, i)) as f:
            coverage.append(pq.read_table(f, columns=["covered"]).column("covered").to_numpy())
    covered = np.concatenate(coverage)
    minimum = description["min_coverage"]
    counts = {"n_featurized": int((covered >= minimum).sum()), "n_outside_imagery": int((covered == 0).sum()),
              "n_under_covered": int(((covered > 0) & (covered < minimum)).sum())}
    if counts["n_featurized"] == 0:
        storage.remove(parts)
        raise InputError(f"{description['imagery'][0]}: the imagery covers none of the {len(covered):,} cells "
                         f"({counts['n_outside_imagery']:,} outside it, {counts['n_under_covered']:,} covered less "
                         f"than min_coverage {minimum:g})")
    metadata = {FEATURIZATION_KEY: json.dumps({**description, "counts": counts}).encode()}
    with storage.writing(output) as tmp:
        writer = None
        try:
            for i, block_coverage in enumerate(coverage):
                with open_input(_part(parts, i)) as f:
                    table = pq.read_table(f).filter(pa.array(block_coverage >= minimum))
                table = table.replace_schema_metadata(metadata)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                if table.num_rows:
                    writer.write_table(table, row_group_size=table.num_rows)
        finally:
            if writer is not None:
                writer.close()
    return counts
