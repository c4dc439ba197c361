"""``asm-dask sample``: a stratified random sample of a finished run's map for a field
team, whose labels make the next run's estimate (:mod:`asm_dask.estimation`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import storage
from ..errors import InputError
from ..estimation.sample_design import draw_sample
from ..prediction.stream import read_prediction_grid
from ..records.outputs import SAMPLE_NAMES, check_files_output
from ..report.field_sample import write_sample
from .predict import TrainedRun, load_run


@dataclass(frozen=True)
class FieldSample:
    """The cells drawn, the design, and the files written."""

    cells: pd.DataFrame
    design: dict
    files: dict[str, str]


def sample_run(run_dir: str, n: int, n_strata: int, seed: int, out: str | None,
               sample_type: str = "random") -> FieldSample:
    """Draw ``n`` cells of the run in ``run_dir``'s map in ``n_strata`` strata into ``out``
    (``None``: ``sample_<seed>``, or ``sample_<year>_<seed>``, beside the run's folder), as
    labels of ``sample_type`` to fill in."""
    if n_strata < 1:
        raise InputError(f"--strata: expected an integer >= 1, got {n_strata}")
    if n < 2 * n_strata:
        raise InputError(f"--n {n}: a sample smaller than its strata: at least 2 cells in each of the {n_strata} "
                         f"strata, so --n {2 * n_strata} or more")
    run, folder, year = _map_to_sample(run_dir)
    grid = read_prediction_grid(storage.join(folder, "predictions"))
    if n > len(grid):
        raise InputError(f"--n {n}: more cells than the map holds ({len(grid):,})")
    if out is None:
        out = storage.join(run.folder.rstrip("/").rsplit("/", 1)[0],
                           f"sample_{seed}" if year is None else f"sample_{year}_{seed}")
    check_files_output({"RUN_DIR": run.folder}, out, SAMPLE_NAMES)
    cells, design = draw_sample(grid, n, n_strata, seed)
    described = {"run": run.folder, "run_key": run.manifest["run_key"],
                 **({} if year is None else {"year": year, "map": folder}), "n_cells": len(grid), **design.as_dict()}
    return FieldSample(cells, described, write_sample(out, cells, described, sample_type))


def _map_to_sample(run_dir: str) -> tuple[TrainedRun, str, int | None]:
    """The run, the folder of the map to sample and its year: the run's map; for a run of a
    table per year, its last year's; or one year's map, given by its folder
    (``years/<year>``, as :meth:`asm_dask.Run.year` gives it)."""
    manifest = storage.read_json(storage.join(run_dir, "manifest.json"))
    if isinstance(manifest, dict) and manifest.get("command") == "run year":
        if manifest.get("status") != "complete" or not isinstance(manifest.get("model_from"), str):
            raise InputError(f"{run_dir}: the map of {manifest.get('year')} is not finished; run the job again "
                             "to complete it")
        return load_run(manifest["model_from"]), run_dir, int(manifest["year"])
    run = load_run(run_dir)
    years = run.manifest.get("years") or []
    if years:
        return run, storage.join(run.folder, "years", str(years[-1])), int(years[-1])
    return run, run.folder, None
