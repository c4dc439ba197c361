"""The Python API: what a notebook calls, and what the command line calls too."""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config, storage
from .config import Job
from .config.featurize import FeaturizeJob
from .config.problems import shown
from .config.reading import resolve_path
from .errors import InputError
from .results import Run

if TYPE_CHECKING:
    from .featurization import FeaturizeResult, FilterBank
    from .pipeline.change import ChangeResult
    from .pipeline.sample import FieldSample


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

    if base is not None:
        base = _path(base, "base")
    if isinstance(job, Job):
        loaded, source = job, "job"
    elif isinstance(job, Mapping):
        loaded, source = config.job_from_dict(dict(job), base=Path.cwd() if base is None else base), "job"
    elif isinstance(job, (str, os.PathLike)):
        loaded, source = config.load_job(job), os.fspath(job)
    else:
        raise InputError(f"job: expected a job file's path, a mapping of its settings or a Job, got {shown(job)}")
    if any(grid for grid in loaded.model.estimators.values()):
        check_grids(loaded, source)
    return loaded


def run(job: str | os.PathLike | Mapping[str, Any] | Job, client: Any = None) -> Run:
    """Run a job: read, join, fit, calibrate, predict every cell, write the maps and the report.

    Parameters
    ----------
    job : str, os.PathLike, mapping or Job
        A job file, its settings as a mapping, or a loaded job (see :func:`load_job`).
    client : distributed.Client or str, optional
        The cluster to run on, or the address of a running scheduler
        (``tcp://host:8786``). Default: the current ``distributed`` client if there is one
        (a notebook's ``Client()``), else a local cluster started for this call.

    Returns
    -------
    Run
        The finished run, read from its output folder.

    Raises
    ------
    InputError
        Bad input (a missing file, a bad value, an output folder that would touch an
        input...): one line naming the culprit; nothing is written.

    Notes
    -----
    The job's ``storage_options`` apply to this call (and to the returned :class:`Run`),
    on this process and on the workers, and are taken off again when it returns: what
    the notebook reads later never sees them.
    """
    from .deploy import storage_options_shared
    from .pipeline.run import run_job
    from .records.outputs import check_run_paths

    job = load_job(job)
    with storage.configured(job.storage_options):
        check_run_paths(job)  # before a cluster starts, not minutes into the run
        with _client(client) as active, storage_options_shared(active, job.storage_options):
            result = run_job(job, active)
        return Run(result.output, result.metrics, storage_options=job.storage_options)


def predict(run_dir: str | os.PathLike | Run, features: str | os.PathLike | Sequence[str | os.PathLike],
            out: str | os.PathLike | None = None,
            client: Any = None, hotspot_threshold: float | None = None,
            storage_options: Mapping[str, Mapping[str, Any]] | None = None) -> Run:
    """Apply a finished run's model to other features: a neighbouring country, another year.

    Parameters
    ----------
    run_dir : str, os.PathLike or Run
        The output folder of a finished run (local or a URL), or the run itself.
    features : str, os.PathLike or a list of them
        A features file on the model's grid, with the model's feature columns; for a
        model trained on several sources joined by cell, a file for each, in the run's
        order (``["mosaiks_2024.parquet", "alphaearth_2024.parquet"]``).
    out : str or os.PathLike, optional
        The output folder; default ``predict_<first features file's name>`` in the
        working folder.
    client : distributed.Client or str, optional
        As for :func:`run`.
    hotspot_threshold : float, optional
        The probability at which cells form hotspots; default: the run's.
    storage_options : mapping, optional
        fsspec options by protocol for the URLs here, as a job file's
        ``storage_options`` (``{"s3": {"endpoint_url": ...}}``); default: a :class:`Run`'s
        own, else none (each backend looks where it always does).

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
    from .deploy import storage_options_shared
    from .pipeline.predict import load_run, plan_prediction, predict_with_run
    from .records.outputs import check_prediction_paths

    hotspot_threshold = _probability(hotspot_threshold, "hotspot_threshold")
    if storage_options is None:
        storage_options = run_dir.storage_options if isinstance(run_dir, Run) else {}
    storage_options = _storage_options(storage_options)
    here = Path.cwd()
    run_dir = resolve_path(_run_folder(run_dir, "run_dir"), here)
    paths = list(features) if isinstance(features, (list, tuple)) and features else [features]
    features = tuple(resolve_path(_path(path, "features"), here) for path in paths)
    out = resolve_path(_path(out, "out") if out is not None else
                              f"predict_{Path(features[0].rstrip('/')).stem}", here)
    with storage.configured(storage_options):
        check_prediction_paths(run_dir, features, out)
        plan = plan_prediction(load_run(run_dir), features, out)  # before anything is written
        with _client(client) as active, storage_options_shared(active, storage_options):
            result = predict_with_run(plan, active, hotspot_threshold)
        return Run(result.output, result.metrics, storage_options=storage_options)


def open_run(path: str | os.PathLike, storage_options: Mapping[str, Mapping[str, Any]] | None = None) -> Run:
    """A finished run or prediction, from its output folder (local or a URL).

    Parameters
    ----------
    path : str or os.PathLike
        The output folder.
    storage_options : mapping, optional
        fsspec options by protocol for reading it, as a job file's ``storage_options``.

    Raises
    ------
    InputError
        No finished run or prediction there.
    """
    return Run(resolve_path(_path(path, "path"), Path.cwd()),
               storage_options=_storage_options(storage_options or {}))


def featurize(job: str | os.PathLike | Mapping[str, Any] | FeaturizeJob, client: Any = None,
              filters: str | os.PathLike | FilterBank | None = None) -> FeaturizeResult:
    """Make a feature table from imagery: MOSAIKS random convolutional features, or each
    band's statistics, for every cell of a grid.

    Parameters
    ----------
    job : str, os.PathLike, mapping or FeaturizeJob
        A featurize file, or its settings as a mapping (see the docs' featurize page).
    client : distributed.Client or str, optional
        As for :func:`run`.
    filters : str, os.PathLike or FilterBank, optional
        Reuse the filters of an earlier featurization (its feature table) instead of
        drawing new ones: the features are then comparable with that table's.

    Returns
    -------
    FeaturizeResult
        What was written (``output``), and the cells left out, counted.

    Raises
    ------
    InputError
        Bad input (imagery not found or without a CRS, a band that is not there, imagery
        that misses the grid, an output that is an input...): one line.
    """
    from .config.featurize import featurize_job_from_dict, load_featurize_job
    from .deploy import storage_options_shared
    from .featurization import FilterBank, featurize_job, read_filters

    if isinstance(job, Mapping):
        job = featurize_job_from_dict(dict(job), base=Path.cwd())
    elif isinstance(job, (str, os.PathLike)):
        job = load_featurize_job(job)
    elif not isinstance(job, FeaturizeJob):
        raise InputError(f"job: expected a featurize file's path, a mapping of its settings or a FeaturizeJob, "
                         f"got {shown(job)}")
    with storage.configured(job.storage_options):
        if filters is not None and not isinstance(filters, FilterBank):  # read with the job's storage options
            filters = read_filters(resolve_path(_path(filters, "filters"), Path.cwd()))
        with _client(client) as active, storage_options_shared(active, job.storage_options):
            return featurize_job(job, active, filters)


def sample(run_dir: str | os.PathLike | Run, n: int, strata: int = 4, seed: int = 0,
           out: str | os.PathLike | None = None, sample_type: str = "random") -> FieldSample:
    """Draw a stratified random sample of a finished run's map for a field team to label.

    Labelled and added to the labels file (``sample_type: random``, with the design
    columns as written), the sample is what the next run estimates the ASM area from,
    with a 95% interval (see the docs' estimates page).

    Parameters
    ----------
    run_dir : str, os.PathLike or Run
        The output folder of a finished run (local or a URL), or the run itself. Of a run
        of a table per year, its last year's map is sampled; another year's, given as
        ``run.year(2021)`` or its folder (``years/2021``).
    n : int
        Cells to draw, at least 2 per stratum.
    strata : int, default 4
        Bins of the map's probability, each holding an equal share of its expected ASM.
    seed : int, default 0
        The draw's seed: the same seed draws the same cells.
    out : str or os.PathLike, optional
        Where ``sample.csv``, ``sample.geojson``, ``sample.gpx`` and ``design.json`` go;
        default ``sample_<seed>`` beside the run folder (``sample_<year>_<seed>`` for a
        year's map).
    sample_type : str, default "random"
        The ``sample_type`` the sample's labels carry: one of the job's
        ``estimate.sample_types`` for the next run to estimate from it. Give another
        where the labels already hold random labels drawn otherwise: two samples are
        not one.

    Returns
    -------
    FieldSample
        The cells drawn (``cells``: ``lat``, ``lon``, the map's ``probability``,
        ``stratum``, ``stratum_cells``, ``inclusion_probability``), the design and the
        files written.

    Raises
    ------
    InputError
        Not a finished run, or a sample smaller than its strata: one line.
    """
    from .pipeline.sample import sample_run

    n, strata, seed = (_whole(value, name, least) for name, value, least in
                       (("n", n, 2), ("strata", strata, 1), ("seed", seed, 0)))
    folder = resolve_path(_run_folder(run_dir, "run_dir"), Path.cwd())
    target = None if out is None else resolve_path(_path(out, "out"), Path.cwd())
    if not isinstance(sample_type, str) or not sample_type:
        raise InputError(f"sample_type: expected text, got {shown(sample_type)}")
    return sample_run(folder, n, strata, seed, target, sample_type)


def change(earlier: str | os.PathLike | Run, later: str | os.PathLike | Run, out: str | os.PathLike | None = None,
           hotspot_threshold: float | None = None) -> ChangeResult:
    """Compare two maps made by one model: where ASM became likely, and where it stopped.

    Parameters
    ----------
    earlier, later : str, os.PathLike or Run
        The output folders of a finished run or prediction each (a run and
        :func:`predict` of its model on another year's features, or two predictions).
    out : str or os.PathLike, optional
        Where ``change.tif``, ``change_hotspots.geojson``/``.csv`` and ``change.json``
        go; default ``change_<earlier>_<later>`` in the working folder.
    hotspot_threshold : float, optional
        The probability that makes a cell ASM; default: the later map's.

    Returns
    -------
    ChangeResult
        The change clusters (``change.hotspots``), the counts (``change.counts``) and
        the files written.

    Raises
    ------
    InputError
        Not finished maps, maps of other models or grids: one line.
    """
    from .pipeline.change import compare_maps

    folders = [resolve_path(_run_folder(m, name), Path.cwd())
               for m, name in ((earlier, "earlier"), (later, "later"))]
    hotspot_threshold = _probability(hotspot_threshold, "hotspot_threshold")
    names = [Path(f.rstrip("/")).name for f in folders]
    target = resolve_path(_path(out, "out") if out is not None else f"change_{names[0]}_{names[1]}", Path.cwd())
    return compare_maps(folders[0], folders[1], target, hotspot_threshold)


def _whole(value: Any, name: str, least: int) -> int:
    """An integer argument, also a NumPy one (what a notebook computes), as a Python int
    (NumPy's booleans are no ``numbers.Integral``; Python's are, and are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise InputError(f"{name}: expected an integer >= {least}, got {shown(value)}")
    return int(value)


def _probability(value: Any, name: str) -> float | None:
    """A probability argument in (0, 1], also a NumPy one, as a Python float; ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise InputError(f"{name}: expected a probability in (0, 1], got {shown(value)}")
    return float(value)


def _run_folder(value: Any, name: str) -> str:
    """The folder of a run given as a :class:`Run` or a path. A Run whose folder another run
    has written into since is stale: one line, not that other run's model or map."""
    if isinstance(value, Run):
        with value._reading():
            return value.folder
    return _path(value, name)


def _path(value: Any, name: str) -> str:
    """An argument that names a file or folder, as text; anything else (empty text too,
    which would name the working folder) is one line."""
    if isinstance(value, (str, os.PathLike)) and os.fspath(value).strip():
        return os.fspath(value)
    raise InputError(f"{name}: expected a path or URL, got {shown(value)}")


def _storage_options(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, Mapping)
                                                 for k, v in value.items()):
        raise InputError(f"storage_options: expected a mapping of protocol to options, e.g. "
                         f"{{'s3': {{'endpoint_url': 'http://host:9000'}}}}, got {shown(value)}")
    return {protocol: dict(options) for protocol, options in value.items()}


@contextlib.contextmanager
def _client(client: Any) -> Iterator[Any]:
    """``client``; a client of the scheduler at that address; else the current one; else a
    local cluster for the time of the call."""
    from .deploy import open_client

    if isinstance(client, str):
        with open_client(scheduler=client) as connected:
            yield connected
        return
    if client is None:
        from .model.numerics import current_client

        client = current_client()
    if client is None:
        with open_client() as started:
            yield started
        return
    if not hasattr(client, "submit") or not hasattr(client, "as_current"):
        raise InputError(f"client: expected a distributed.Client or a scheduler's address, got {shown(client)}")
    yield client
