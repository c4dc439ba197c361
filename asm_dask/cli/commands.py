"""``asm-dask``: run a job file, apply its model elsewhere, make features from imagery,
ingest features ahead of time, or run the demo."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml

from ..errors import InputError
from ..runtime.signals import Interrupted, stop_on_signals
from . import arguments
from .console import RunLog

#: what the demo writes in its folder (``--out``), its folders first; a folder holding
#: anything else is refused
DEMO_FOLDERS = frozenset({"data", "results"})
DEMO_NAMES = DEMO_FOLDERS | {"demo_job.yaml"}
#: the demo's mark in its folder: what is there, an earlier demo made
DEMO_MARK = ".asm-dask-demo"
#: the smallest synthetic country the demo makes (a few labels of each class per fold)
MIN_DEMO_CELLS = 100
DEMO_JOB = {"labels": {"path": "data/SLE_mines.csv"},
            "features": {"path": "data/SLE_features.feather"},
            "output": "results",
            "report": {"boundaries": {"path": "data/districts.gpkg", "name_column": "name"}}}


def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser({"run": _run, "predict": _predict, "ingest": _ingest, "featurize": _featurize,
                               "sample": _sample, "change": _change, "demo": _demo}, MIN_DEMO_CELLS)
    args = parser.parse_args(argv)
    if args.cluster and args.scheduler:
        parser.error("give --cluster or --scheduler, not both")
    # Bad input exits 2, anything else (a bug) 1; either way one line on the console,
    # the traceback in the log. A signal that stops the command (Ctrl-C, kill, a closed
    # terminal) unwinds it as Ctrl-C does, releasing the output folder's lock.
    with RunLog(verbose=args.verbose, command=" ".join(argv or sys.argv[1:])) as log, \
            stop_on_signals(STOPPING_SIGNALS):
        try:
            return args.command(args, log)
        except InputError as exc:
            return log.failed(exc, 2)
        except BrokenPipeError as exc:
            if not _stdout_closed():
                return log.failed(exc, 1)
            # Whoever read the output (`asm-dask demo | head`) stopped reading: as a shell
            # tool does, stop quietly with the status of SIGPIPE.
            return 128 + signal.SIGPIPE
        except Exception as exc:
            return log.failed(exc, 1)
        except Interrupted as exc:
            return log.interrupted(exc.signal)
        except KeyboardInterrupt:
            return log.interrupted(signal.SIGINT)


def command_line() -> NoReturn:
    """``asm-dask``, as the shell runs it: :func:`main`, then the process ends at once."""
    # Started with an output closed (`>&-`, `2>&-`), Python has no stream for it: what
    # would be written there goes nowhere, as it would in a shell tool.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    code = main()
    # Python's own exit would now tear down, one by one, the 3,000 modules a run imports:
    # 0.8 s of every command, for nothing, since the command has closed its outputs, its
    # log and its cluster. The exit handlers run as they would.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader went away, or the stream is closed
            pass
    os._exit(code)


def _stdout_closed() -> bool:
    """Whether the reader of standard output went away; if so, output goes nowhere from now on."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        closed = any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # not a file (a test's capture), or no poll
        return False
    if closed:
        sys.stdout = open(os.devnull, "w")
    return closed


#: signals that stop a command as Ctrl-C does, releasing its output folder's lock
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _run(args: argparse.Namespace, log: RunLog) -> int:
    from ..api import load_job
    from ..config.reading import resolve_path
    from ..records.outputs import check_run_paths
    from ..storage import configure

    job = load_job(args.job)
    if args.out is not None:
        job = job.replace(output=resolve_path(args.out, Path.cwd()))
    configure(job.storage_options)
    check_run_paths(job)  # before the log opens, and before a cluster starts
    log.open(job.output)
    return _run_loaded(job, args)


def _run_loaded(job: Any, args: argparse.Namespace) -> int:
    from .. import api
    from ..deploy import import_on_workers, open_client

    with open_client(cluster_file=args.cluster, scheduler=args.scheduler) as client:
        # Workers import the stages (geopandas, scikit-learn...) while this process
        # does the same, instead of when their first task arrives.
        import_on_workers(client, "asm_dask.pipeline.run")
        run = api.run(job, client)
    print(run.summary())
    _print_files(run)
    return 0


def _print_files(run: Any) -> None:
    """Where a run's or a prediction's outputs are, the ones a person opens first first."""
    files = run.files
    listed = [files.report, files.map, files.probability_tif, files.hotspots_geojson, files.hotspots_csv,
              files.feature_importance, files.admin_summary_csv, files.admin_summary_geojson,
              files.predictions + "/", files.model_card, files.metrics, files.model, files.model_skops,
              files.manifest, files.figures + "/", files.unmatched_labels, files.labelled_cells, files.years_csv,
              files.district_years_csv, files.changes and files.changes + "/", files.log]
    print(f"outputs in {run.folder}:")
    for path in listed:
        if path is not None:
            print(f"  {path}")


def _predict(args: argparse.Namespace, log: RunLog) -> int:
    from .. import api
    from ..config.reading import resolve_path
    from ..deploy import import_on_workers, open_client
    from ..pipeline.predict import load_run, plan_prediction
    from ..records.outputs import check_prediction_paths

    if args.hotspot_threshold is not None and not 0 < args.hotspot_threshold <= 1:
        raise InputError(f"--hotspot-threshold: expected a probability in (0, 1], got {args.hotspot_threshold:g}")
    run_dir = resolve_path(args.run_dir, Path.cwd())
    features = tuple(resolve_path(path, Path.cwd()) for path in args.features)
    out = resolve_path(args.out or f"predict_{Path(features[0].rstrip('/')).stem}", Path.cwd())
    check_prediction_paths(run_dir, features, out)
    plan_prediction(load_run(run_dir), features, out)  # before the log opens: nothing is written
    log.open(out)
    with open_client(cluster_file=args.cluster, scheduler=args.scheduler) as client:
        import_on_workers(client, "asm_dask.pipeline.predict")
        prediction = api.predict(run_dir, features, out, client, args.hotspot_threshold)
    print(prediction.summary())
    _print_files(prediction)
    return 0


def _ingest(args: argparse.Namespace, log: RunLog) -> int:
    from ..api import load_job
    from ..deploy import open_client
    from ..read.store import open_store
    from ..records.outputs import check_run_paths, store_root
    from ..storage import configure

    job = load_job(args.job)
    configure(job.storage_options)
    check_run_paths(job)
    log.open(job.output)
    stores = {}
    with open_client(cluster_file=args.cluster, scheduler=args.scheduler) as client:
        by_year = [(f"{year}.", job.features.of_year(year)) for year in job.years] or [("", job.features)]
        for year, features in by_year:
            for name, table in features.tables():
                stores[year + name] = open_store(table, store_root(table, job.output), client)
        if job.years:  # the years are one kind of features on one grid, as the run will check
            from ..pipeline.years import open_years

            open_years(job, client)
    described = {name: {"store": store.path, "n_cells": store.n_cells, "n_features": store.n_features,
                        "n_partitions": len(store.partitions),
                        "n_cells_dropped_nonfinite": store.n_dropped_nonfinite} for name, store in stores.items()}
    # one table: its store alone, as before tables were joined
    print(json.dumps(described if len(described) > 1 else next(iter(described.values())), indent=1))
    return 0


def _sample(args: argparse.Namespace, log: RunLog) -> int:
    from .. import api

    drawn = api.sample(args.run_dir, args.n, args.strata, args.seed, args.out, args.sample_type)
    for stratum in drawn.design["strata"]:
        print(f"stratum {stratum['stratum']}: probability {stratum['probability_from']:.3f} to "
              f"{min(stratum['probability_to'], 1):.3f}, {stratum['sampled']} of {stratum['cells']:,} cells")
    print(f"{len(drawn.cells)} cells to label; add them to the labels file as they are filled in "
          f"(sample_type: {args.sample_type}), and the next run estimates the ASM area from them:")
    for path in drawn.files.values():
        print(f"  {path}")
    return 0


def _change(args: argparse.Namespace, log: RunLog) -> int:
    from .. import api

    if args.hotspot_threshold is not None and not 0 < args.hotspot_threshold <= 1:
        raise InputError(f"--hotspot-threshold: expected a probability in (0, 1], got {args.hotspot_threshold:g}")
    result = api.change(args.earlier, args.later, args.out, args.hotspot_threshold)
    counts = result.change.counts
    print(f"{counts['n_cells_compared']:,} cells compared at probability {counts['hotspot_threshold']:g}: "
          f"{counts['n_new_cells']:,} newly likely ASM ({counts['new_area_km2']:,.1f} km2, "
          f"{counts['n_new_clusters']} clusters), {counts['n_abandoned_cells']:,} no longer "
          f"({counts['abandoned_area_km2']:,.1f} km2, {counts['n_abandoned_clusters']} clusters)")
    for path in result.files.values():
        print(f"  {path}")
    return 0


def _featurize(args: argparse.Namespace, log: RunLog) -> int:
    from .. import api, storage
    from ..config.featurize import load_featurize_job
    from ..deploy import open_client

    job = load_featurize_job(args.featurize)
    storage.configure(job.storage_options)  # the log may lie on object storage too, as a run's
    log.open(os.path.dirname(job.output) or ".", key="output")
    with open_client(cluster_file=args.cluster, scheduler=args.scheduler) as client:
        result = api.featurize(job, client, args.filters)
    print(f"{result.n_featurized:,} cells x {result.n_features:,} features in {result.output}")
    left_out = result.n_outside_imagery + result.n_under_covered
    if left_out:
        print(f"left out: {result.n_outside_imagery:,} cells outside the imagery, {result.n_under_covered:,} "
              f"covered less than min_coverage ({job.min_coverage:g})")
    if result.filters_fingerprint:
        print(f"filters {result.filters_fingerprint}, saved in the table: --filters {result.output} reuses them")
    return 0


def _demo(args: argparse.Namespace, log: RunLog) -> int:
    from .. import storage
    from ..api import load_job
    from ..demo import make_country, score_against_truth
    from ..records.outputs import check_apart
    from ..storage.paths import check_output_folder

    out = Path(args.out).resolve()
    check_output_folder(str(out), "--out")
    # before anything is written
    check_apart({}, str(out), "--out", own=DEMO_NAMES, folders=DEMO_FOLDERS, before_manifest=None)
    earlier = (out / DEMO_MARK).exists() or (out / "demo_job.yaml").is_file()
    if any(not name.startswith(".") for name in storage.list_names(str(out))) and not earlier:
        # data/ of the user's own, with the demo's file names, would be written over
        raise InputError(f"{out}: holds files that no asm-dask demo made; the demo's folder (--out) must be new, "
                         "empty, or an earlier demo's")
    log.open(str(out / DEMO_JOB["output"]), key="--out")
    (out / DEMO_MARK).touch()
    files = make_country(out / "data", n_cells=args.cells, n_features=args.features, seed=args.seed)
    print(f"demo country: {files.n_cells:,} cells x {args.features} features, {files.n_labels:,} labels "
          f"in {out / 'data'}")
    job_file = out / "demo_job.yaml"
    job_file.write_text(yaml.safe_dump(demo_job(files.n_cells), sort_keys=False))
    job = load_job(job_file)
    status = _run_loaded(job, args)
    truth = score_against_truth(job.output, files)
    truth_file = os.path.join(job.output, "truth_comparison.json")
    storage.write_text(truth_file, json.dumps(truth, indent=2))
    print(f"against the known truth: test ROC AUC {truth['test_auc_calibrated']:.3f}, where the true "
          f"probability scores {truth['truth_test_auc']:.3f} on the same {truth['n_test_labels']} test "
          f"labels (gap {truth['auc_gap']:.3f}); predicted vs true probability over all cells: "
          f"correlation {truth['cell_probability_correlation']:.2f}, mean absolute difference "
          f"{truth['cell_probability_mean_abs_error']:.3f} ({truth_file})")
    return status


def demo_job(n_cells: int) -> dict:
    """The demo's job file: the defaults, with blocks sized to the synthetic country.

    Its mining clusters scale with the country, and blocks must be larger than a cluster
    yet many enough to make five folds: half a degree at Sierra Leone's 59,000 cells.
    """
    block_size = max(0.05, round(0.5 * (n_cells / 59_000) ** 0.5, 2))
    return {**DEMO_JOB, "split": {"block_size": block_size}}


if __name__ == "__main__":
    sys.exit(main())
