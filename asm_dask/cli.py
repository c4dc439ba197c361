"""``asm-dask``: run a job file, ingest its features ahead of time, or run the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from .errors import InputError

DEMO_JOB = {"labels": {"path": "data/SLE_mines.csv"},
            "features": {"path": "data/SLE_features.feather"},
            "output": "results"}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cluster and args.scheduler:
        parser.error("give --cluster or --scheduler, not both")
    try:
        return args.command(args)
    except InputError as exc:
        print(f"asm-dask: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .config import load_job

    job = load_job(args.job)
    if args.out:
        job = job.replace(output=str(Path(args.out).resolve()))
    return _run_loaded(job, args)


def _run_loaded(job, args: argparse.Namespace) -> int:
    from .cluster import import_on_workers, open_client

    with open_client(cluster_file=args.cluster, scheduler=args.scheduler) as client:
        # Workers import the stages (geopandas, scikit-learn...) while this process
        # does the same, instead of when their first task arrives.
        import_on_workers(client, "asm_dask.job")
        from .job import run_job

        result = run_job(job, client)
    m = result.metrics
    print(f"best alpha {m['best_alpha']}: test ROC AUC {m['test_auc_uncalibrated']:.3f} "
          f"uncalibrated, {m['test_auc_calibrated']:.3f} calibrated; "
          f"{m['n_labels_joined']} labels joined, {m['n_labels_unmatched']} on no cell; "
          f"{m['n_cells']:,} cells predicted")
    print(f"outputs in {result.output}:")
    for name in ("predictions/", "metrics.json", "model.json", "manifest.json",
                 "figures/probability_map.png", "figures/roc.png", "figures/label_counts.png",
                 "unmatched_labels.csv", "labelled_cells.csv"):
        print(f"  {os.path.join(result.output, name)}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from .cluster import open_client
    from .config import load_job
    from .store import open_store, store_root

    job = load_job(args.job)
    with open_client(cluster_file=args.cluster, scheduler=args.scheduler) as client:
        store = open_store(job.features, store_root(job.features, job.output), client)
    print(json.dumps({"store": store.path, "n_cells": store.n_cells, "n_features": store.n_features,
                      "n_partitions": len(store.partitions),
                      "n_cells_dropped_nonfinite": store.n_dropped_nonfinite}, indent=1))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .config import load_job
    from .demo import make_country

    out = Path(args.out).resolve()
    files = make_country(out / "data", n_cells=args.cells, n_features=args.features, seed=args.seed)
    print(f"demo country: {files.n_cells:,} cells x {args.features} features, {files.n_labels:,} labels "
          f"in {out / 'data'}")
    job_file = out / "demo_job.yaml"
    job_file.write_text(yaml.safe_dump(DEMO_JOB, sort_keys=False))
    return _run_loaded(load_job(job_file), args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asm-dask", description="Map artisanal and small-scale mining from MOSAIKS features on Dask.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def with_cluster(command: argparse.ArgumentParser) -> None:
        command.add_argument("--scheduler", metavar="ADDRESS",
                             help="address of a running Dask scheduler, e.g. tcp://host:8786")
        command.add_argument("--cluster", metavar="FILE",
                             help="cluster file (see cluster/*.yaml); default: a local cluster")

    run = commands.add_parser("run", help="run a job file")
    run.add_argument("job", help="job file (YAML)")
    run.add_argument("--out", help="output folder (overrides the job file's 'output')")
    with_cluster(run)
    run.set_defaults(command=_run)

    ingest = commands.add_parser("ingest", help="convert a job's features into the feature store now")
    ingest.add_argument("job", help="job file (YAML)")
    with_cluster(ingest)
    ingest.set_defaults(command=_ingest)

    demo = commands.add_parser("demo", help="make a synthetic country and run the job on it")
    demo.add_argument("--out", default="demo_out", help="folder for the data and results (default: demo_out)")
    demo.add_argument("--cells", type=int, default=5000, help="number of grid cells (default: 5000)")
    demo.add_argument("--features", type=int, default=4000, help="features per cell (default: 4000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic country")
    with_cluster(demo)
    demo.set_defaults(command=_demo)
    return parser


if __name__ == "__main__":
    sys.exit(main())
