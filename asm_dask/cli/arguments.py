"""The command line's grammar: ``asm-dask``'s commands, their options, and what each
option accepts (a wrong one is one line, as every other bad input). What the commands
do is :mod:`asm_dask.cli.commands`'s."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import NoReturn


def _whole(low: int, high: int | None = None):
    """An argparse type: a whole number from ``low`` (to ``high``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bounds}, got {text!r}")
        return value
    return parse


def _folder(text: str) -> str:
    """An argparse type: a folder's path, not empty text (which would name the working folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder, got {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """A command line that is wrong is one line too, as every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"asm-dask: error: {self.prog}: {message} (see {self.prog} --help)\n")


def parser(handlers: Mapping[str, Callable[..., int]], min_demo_cells: int) -> argparse.ArgumentParser:
    """The command line's grammar: ``handlers`` run each command, by name."""
    parser = _Parser(
        prog="asm-dask", description="Map artisanal and small-scale mining from MOSAIKS features on Dask.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def with_cluster(command: argparse.ArgumentParser) -> None:
        command.add_argument("--scheduler", metavar="ADDRESS",
                             help="address of a running Dask scheduler, e.g. tcp://127.0.0.1:8786; "
                                  "for a tls:// one, name its certificates in a cluster file of kind "
                                  "'scheduler' (see cluster/scheduler.yaml)")
        command.add_argument("--cluster", metavar="FILE",
                             help="cluster file (see cluster/*.yaml); default: a local cluster")
        command.add_argument("--verbose", action="store_true",
                             help="print Dask's log and the traceback of a failure here too, not only "
                                  "in the output folder's asm-dask.log")

    run = commands.add_parser("run", help="run a job file")
    run.add_argument("job", help="job file (YAML)")
    run.add_argument("--out", type=_folder, help="output folder (overrides the job file's 'output')")
    with_cluster(run)
    run.set_defaults(command=handlers["run"])

    predict = commands.add_parser("predict", help="apply a finished run's model to other features")
    predict.add_argument("run_dir", metavar="RUN_DIR", help="output folder of a finished run")
    predict.add_argument("features", metavar="FEATURES", nargs="+",
                         help="features file (Feather, Parquet or CSV), path or URL; for a model trained on "
                              "several sources joined by cell, one file for each, in the run's order")
    predict.add_argument("--out", type=_folder, help="output folder (default: predict_<FEATURES' name>)")
    predict.add_argument("--hotspot-threshold", type=float, metavar="P",
                         help="probability at which cells form hotspots (default: the run's)")
    with_cluster(predict)
    predict.set_defaults(command=handlers["predict"])

    ingest = commands.add_parser("ingest", help="convert a job's features into the feature store now")
    ingest.add_argument("job", help="job file (YAML)")
    with_cluster(ingest)
    ingest.set_defaults(command=handlers["ingest"])

    featurize = commands.add_parser("featurize", help="make a feature table from imagery or embedding rasters")
    featurize.add_argument("featurize", metavar="FEATURIZE", help="featurize file (YAML)")
    featurize.add_argument("--filters", metavar="FROM",
                           help="a feature table made by asm-dask featurize: reuse its filters")
    with_cluster(featurize)
    featurize.set_defaults(command=handlers["featurize"])

    sample = commands.add_parser("sample", help="draw cells of a run's map for a field team to label")
    sample.add_argument("run_dir", metavar="RUN_DIR",
                        help="output folder of a finished run (of a run of a table per year: its last year's map, "
                             "or RUN_DIR/years/<year> for another's)")
    sample.add_argument("--n", type=_whole(2), required=True, help="cells to draw, at least 2 per stratum")
    sample.add_argument("--strata", type=_whole(1), default=4,
                        help="bins of the map's probability, each with an equal share of its expected ASM (default: 4)")
    sample.add_argument("--seed", type=_whole(0, 2**32 - 1), default=0, help="the draw's seed (default: 0)")
    sample.add_argument("--out", type=_folder,
                        help="output folder (default: sample_<seed>, or sample_<year>_<seed>, beside the run's folder)")
    sample.add_argument("--sample-type", default="random",
                        help="the sample_type its labels will carry, for estimate.sample_types (default: random)")
    sample.add_argument("--verbose", action="store_true", help="print the traceback of a failure too")
    sample.set_defaults(command=handlers["sample"], cluster=None, scheduler=None)  # reads the map: no cluster

    change = commands.add_parser("change", help="compare two maps of one model: where ASM spread or stopped")
    change.add_argument("earlier", metavar="EARLIER", help="output folder of a finished run or prediction")
    change.add_argument("later", metavar="LATER", help="output folder of a later map of the same model")
    change.add_argument("--out", type=_folder, help="output folder (default: change_<EARLIER>_<LATER>)")
    change.add_argument("--hotspot-threshold", type=float, metavar="P",
                        help="probability that makes a cell ASM (default: the later map's)")
    change.add_argument("--verbose", action="store_true", help="print the traceback of a failure too")
    change.set_defaults(command=handlers["change"], cluster=None, scheduler=None)  # reads two maps: no cluster

    demo = commands.add_parser("demo", help="make a synthetic country and run the job on it")
    demo.add_argument("--out", type=_folder, default="demo_out",
                      help="folder for the data and results (default: demo_out)")
    demo.add_argument("--cells", type=_whole(min_demo_cells), default=5000,
                      help=f"number of grid cells, at least {min_demo_cells} (default: 5000)")
    demo.add_argument("--features", type=_whole(1), default=4000, help="features per cell (default: 4000)")
    demo.add_argument("--seed", type=_whole(0, 2**32 - 1), default=0,
                      help="random seed of the synthetic country, 0 to 4294967295 (default: 0)")
    with_cluster(demo)
    demo.set_defaults(command=handlers["demo"])
    return parser
