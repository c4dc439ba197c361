"""The Python API: what a notebook calls, and what the command line calls too."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import config, storage
from .config import Job
from .errors import InputError
from .results import Run


def load_job(job: str | os.PathLike | Mapping[str, Any] | Job, base: str | os.PathLike | None = None) -> Job:
    """A checked job from a YAML job file, a mapping of the same settings, or a :class:`Job`.

    Parameters
    ----------
    job : str, os.PathLike, mapping or Job
        A job file (see ``jobs/sierra_leone.yaml`` for every setting), its content as a
        mapping (``{"labels": "mines.csv", "features": "features.feather", "output":
        "out"}``), or a job already loaded.
    base : str or os.PathLike, optional
        The folder relative paths of a mapping resolve against; default: the working
        folder. A job file's paths resolve against the file's own folder.

    Returns
    -------
    Job
        Every setting, with the notebook's defaults for those not given.

    Raises
    ------
    InputError
        A setting is unknown, missing or of the wrong value, or an estimator grid holds a
        value scikit-learn refuses: one line naming the file, each key and what it expects.
        The files the job names are looked at later, when it runs.
    """
    from .model.estimators import check_grids

    if isinstance(job, Job):
        loaded, source = job, "job"
    elif isinstance(job, Mapping):
        loaded, source = config.job_from_dict(dict(job), base=Path.cwd() if base is None else base), "job"
    else:
        loaded, source = config.load_job(job), str(job)
    if any(grid for grid in loaded.model.estimators.values()):
        check_grids(loaded, source)
    return loaded


def run(job: str | os.PathLike | Mapping[str, Any] | Job, client: Any = None) -> Run:
    """Run a job: read, join, fit, calibrate, predict every cell, write the maps and the report.

    Parameters
    ----------
    job : str, os.PathLike, mapping or Job
        A job file, its settings as a mapping, or a loaded job (see :func:`load_job`).
    client : distributed.Client, optional
        The cluster to run on. Default: the current ``distributed`` client if there is
        one (a notebook's ``Client()``), else a local cluster started for this call.

    Returns
    -------
    Run
        The finished run, read from its output folder.

    Raises
    ------
    InputError
        Bad input (a missing file, a bad value, an output folder that would touch an
        input...): one line naming the culprit; at most ``asm-dask.log`` is written.
    """
    from .deploy import share_storage_options
    from .pipeline.run import run_job
    from .records.outputs import check_run_paths

    job = load_job(job)
    storage.configure(job.storage_options)
    check_run_paths(job)  # before a cluster starts, not minutes into the run
    with _client(client) as active:
        share_storage_options(active, job.storage_options)
        result = run_job(job, active)
    return Run(result.output, result.metrics)


def predict(run_dir: str | os.PathLike | Run, features: str | os.PathLike, out: str | os.PathLike | None = None,
            client: Any = None, hotspot_threshold: float | None = None) -> Run:
    """Apply a finished run's model to other features: a neighbouring country, another year.

    Parameters
    ----------
    run_dir : str, os.PathLike or Run
        The output folder of a finished run (local or a URL), or the run itself.
    features : str or os.PathLike
        A features file on the model's grid, with the model's feature columns.
    out : str or os.PathLike, optional
        The output folder; default ``predict_<features' name>`` in the working folder.
    client : distributed.Client, optional
        As for :func:`run`.
    hotspot_threshold : float, optional
        The probability at which cells form hotspots; default: the run's.

    Returns
    -------
    Run
        The finished prediction (``kind == "predict"``), with its maps and model card.

    Raises
    ------
    InputError
        Not a finished run, features that are not the model's, an output folder that is
        the run's or would touch an input...: one line naming the culprit.
    """
    from .pipeline.predict import load_run, plan_prediction, predict_with_run
    from .records.outputs import check_prediction_paths

    if hotspot_threshold is not None and not 0 < hotspot_threshold <= 1:
        raise InputError(f"--hotspot-threshold: expected a probability in (0, 1], got {hotspot_threshold:g}")
    here = Path.cwd()
    run_dir = config.resolve_path(run_dir.folder if isinstance(run_dir, Run) else run_dir, here)
    features = config.resolve_path(features, here)
    out = config.resolve_path(out if out is not None else f"predict_{Path(features.rstrip('/')).stem}", here)
    check_prediction_paths(run_dir, features, out)
    plan = plan_prediction(load_run(run_dir), features, out)  # before anything is written
    with _client(client) as active:
        result = predict_with_run(plan, active, hotspot_threshold)
    return Run(result.output, result.metrics)


def open_run(path: str | os.PathLike) -> Run:
    """A finished run or prediction, from its output folder (local or a URL).

    Raises
    ------
    InputError
        No finished run or prediction there.
    """
    return Run(config.resolve_path(path, Path.cwd()))


@contextlib.contextmanager
def _client(client: Any) -> Iterator[Any]:
    """``client``; else the current one; else a local cluster for the time of the call."""
    if client is None:
        from .model.numerics import current_client

        client = current_client()
    if client is not None:
        yield client
        return
    from .deploy import open_client

    with open_client() as started:
        yield started
