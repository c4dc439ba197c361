"""The Python API: what a notebook calls, and what the command line calls too."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import config
from .config import Job


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
