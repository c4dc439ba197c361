"""``asm-dask sample``: a stratified random sample of a finished run's map for a field
team, whose labels make the next run's estimate (:mod:`asm_dask.estimation`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import storage
from ..errors import InputError
from ..estimation.sample_design import draw_sample
from ..prediction.stream import read_prediction_grid
from ..report.field_sample import write_sample
from .predict import load_run


@dataclass(frozen=True)
class FieldSample:
    """The cells drawn, the design, and the files written."""

    cells: pd.DataFrame
    design: dict
    files: dict[str, str]


def sample_run(run_dir: str, n: int, n_strata: int, seed: int, out: str, sample_type: str = "random") -> FieldSample:
    """Draw ``n`` cells of the run in ``run_dir``'s map in ``n_strata`` strata into ``out``,
    as labels of ``sample_type`` to fill in."""
    if n_strata < 1:
        raise InputError(f"--strata: expected an integer >= 1, got {n_strata}")
    if n < 2 * n_strata:
        raise InputError(f"--n {n}: a sample smaller than its strata: at least 2 cells in each of the {n_strata} "
                         f"strata, so --n {2 * n_strata} or more")
    run = load_run(run_dir)
    grid = read_prediction_grid(storage.join(run.folder, "predictions"))
    if n > len(grid):
        raise InputError(f"--n {n}: more cells than the map holds ({len(grid):,})")
    cells, design = draw_sample(grid, n, n_strata, seed)
    described = {"run": run.folder, "run_key": run.manifest["run_key"], "n_cells": len(grid), **design.as_dict()}
    return FieldSample(cells, described, write_sample(out, cells, described, sample_type))
