"""The cost of one more year: a run of a feature table per year mapping 1, 2 and 3 years.

    python benchmarks/years.py [--cells 59000] [--features 4000] [--labels 6000]
        [--repeat 1] [--workdir DIR]

On one synthetic country seen in three years (:func:`asm_dask.demo.years.make_country_years`,
the same grid every year; made once, then reused), with the page cache warm (each
features file read once first):

1. the first year's labels alone (``year`` 2019) in every job, so that the model is
   fitted on the same rows each time and only the number of years mapped varies;
2. ``asm-dask run`` of jobs mapping the first 1, 2 and 3 years, each a separate process
   under treemem (wall time, peak memory of the process tree), each into a fresh folder;
   with ``--repeat N`` the three in turn N times, and the medians reported (a year costs
   about as much as one run's noise);
3. the change outputs timed on their own: ``map_change`` + ``write_change`` in this
   process on the 3-year run's prediction grids, for each pair the run compares (after
   one untimed pass: the run has drawn every year's hotspots with the same code first).

It prints, per job, wall time, peak memory and the stage timings of the run's
``manifest.json``; the cost of each added year (the difference in wall time) against
the whole 1-year run and against its predict + report stages; each year's own predict
and map stages in the 3-year run; and the change outputs' time. The 1-year job is by
default a run of one table (``features.path``): a job of ``features.years`` with a single
year stops at its report (see benchmarks/README.md). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from run import GENERATOR, HERE, _asm_dask_command, _machine, _measure, reuse_or_make, save_rows, treemem_path

YEARS = (2019, 2021, 2023)
SEED = 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=59000, help="approximate land cells (default 59000)")
    parser.add_argument("--features", type=int, default=4000, help="features per cell (default 4000)")
    parser.add_argument("--labels", type=int, default=6000,
                        help="label points per year (default 6000); only the first year's are used")
    parser.add_argument("--rows-per-batch", type=int, default=65536,
                        help="rows per Feather record batch (default 65536, as benchmarks/run.py)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the three jobs this many times in turn and report medians (default 1: a "
                             "year costs a few seconds, about one run's noise)")
    parser.add_argument("--workdir", default=str(HERE / "data"),
                        help="where the country, job files and outputs go (default benchmarks/data)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    load_at_start = os.getloadavg()[0]
    treemem = treemem_path()

    folder = Path(args.workdir).resolve() / \
        f"years-{args.cells}x{args.features}-{args.labels}-b{args.rows_per_batch}"
    features, labels, generation = _country(folder, args)
    first = YEARS[0]
    own = folder / f"labels_{first}.csv"  # the first year's labels alone
    every = pd.read_csv(labels)
    every[every["year"] == first].to_csv(own, index=False)

    read_s = {}
    for year, path in features.items():  # the page cache warm: read each file once
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            buffer = bytearray(16 << 20)
            while f.readinto(buffer):
                pass
        read_s[year] = time.perf_counter() - start
    print("read once (warming the page cache): " + ", ".join(
        f"{year} {features[year].stat().st_size / 1e9:.2f} GB in {s:.1f} s" for year, s in read_s.items()),
        flush=True)

    runs: dict[int, list[dict]] = {1: [], 2: [], 3: []}
    for repetition in range(args.repeat):  # in turn, so that a slow spell of the machine hits every job
        for n in runs:
            measured = folder / "out" / f"years_{n}"  # treemem.json and log.txt; the run's output in run/
            if measured.exists():  # a stale output folder would let asm-dask resume instead of predicting
                shutil.rmtree(measured)
            measured.mkdir(parents=True)
            out = measured / "run"  # asm-dask refuses an output folder holding files not its own
            mapped = YEARS[:n]
            if n == 1:  # features.years takes two years or more
                section, kind = {"path": str(features[first])}, "one table"
            else:
                section, kind = {"years": {year: str(features[year]) for year in mapped}}, "features.years"
            job = folder / f"job_years_{n}.yaml"
            job.write_text(yaml.safe_dump({"labels": {"path": str(own)}, "features": section, "output": str(out)},
                                          sort_keys=False))
            name = f"{n} year(s)" + (f", run {repetition + 1} of {args.repeat}" if args.repeat > 1 else "")
            result = _measure(name, measured, [*_asm_dask_command(), "run", str(job), "--out", str(out)], treemem)
            manifest = _manifest(out) if result["exit"] == 0 else {}
            runs[n].append({"exit": result["exit"], "wall_s": result["wall_s"], "peak_mb": result["peak_mb"],
                            "timings": manifest.get("timings_s", {}),
                            "report_timings": manifest.get("report_timings_s", {}),
                            "per_year": {year: _manifest(out / "years" / str(year)) for year in mapped}
                            if kind != "one table" else {}})
    rows = [_summary(n, "one table" if n == 1 else "features.years", done,
                     str(folder / "out" / f"years_{n}" / "run")) for n, done in runs.items()]

    changes = _time_changes(Path(rows[-1]["out"]), folder / "out" / "changes_timed") if rows[-1]["exit"] == 0 else []
    header = "\n".join([
        f"## The cost of one more year: {generation['n_cells']:,} cells x {args.features} features",
        "",
        f"- machine: {_machine()}",
        f"- 1-minute load average: {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at end "
        "(above 0.5 means something else was running: wall times are then noisy)",
        f"- data: {folder}, {len(YEARS)} years of features "
        f"({', '.join(f'{features[y].stat().st_size / 1e9:.2f}' for y in YEARS)} GB, lz4 Feather, "
        f"{'reused' if generation['reused'] else 'generated'}: generation took {generation['generation_s']} s); "
        f"labels: the {first} ones alone ({(every['year'] == first).sum():,} points) in every job",
        "- page cache warm: each features file read once first (" + ", ".join(
            f"{s:.1f} s" for s in read_s.values()) + ")",
        f"- {args.repeat} run(s) of each job, in turn" + (": medians, and the range in brackets"
                                                          if args.repeat > 1 else ""),
        ""])
    save_rows("years", header + "\n" + _report(rows, changes),
              [*rows, {"changes": changes, "read_s": read_s, "generation": generation}])
    return 0 if all(r["exit"] == 0 for r in rows) else 1


def _country(folder: Path, args) -> tuple[dict[int, Path], Path, dict]:
    """The country of :data:`YEARS`, unless the folder holds one made with the same parameters."""
    from asm_dask.demo.years import make_country_years

    params = {"cells": args.cells, "features": args.features, "labels": args.labels, "seed": SEED,
              "years": list(YEARS), "rows_per_batch": args.rows_per_batch, "generator": GENERATOR}
    labels = folder / "SLE_mines.csv"
    features = {year: folder / f"SLE_features_{year}.feather" for year in YEARS}

    def make() -> dict:
        files = make_country_years(folder, years=YEARS, n_cells=args.cells, n_features=args.features,
                                   n_labels=args.labels, seed=SEED, rows_per_batch=args.rows_per_batch or None)
        return {"n_cells": files.n_cells}

    return features, labels, reuse_or_make(folder, params, [labels, *features.values()], make)


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _medians(dicts: list[dict]) -> dict:
    """Each key's median over ``dicts`` (in the first's order)."""
    return {key: _median([d.get(key) for d in dicts]) for key in dict.fromkeys(k for d in dicts for k in d)}


def _summary(n: int, kind: str, runs: list[dict], out: str) -> dict:
    """One job over its runs: the medians of its wall time, peak memory and stages."""
    ok = [r for r in runs if r["exit"] == 0]
    return {"years": n, "job": kind, "exit": next((r["exit"] for r in runs if r["exit"] != 0), 0), "out": out,
            "walls": [r["wall_s"] for r in runs], "wall_s": _median([r["wall_s"] for r in ok]),
            "peak_mb": _median([r["peak_mb"] for r in ok]), "timings": _medians([r["timings"] for r in ok]),
            "report_timings": _medians([r["report_timings"] for r in ok]),
            "per_year": {year: {"timings_s": _medians([r["per_year"][year].get("timings_s", {}) for r in ok]),
                                "report_timings_s": _medians([r["per_year"][year].get("report_timings_s", {})
                                                              for r in ok])}
                         for year in (ok[-1]["per_year"] if ok else {})}}


def _manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _time_changes(run: Path, scratch: Path) -> list[dict]:
    """``map_change`` and ``write_change`` timed in this process on the run's prediction
    grids, for each pair of years the run compares (as ``compare_years`` does), after one
    untimed pass."""
    import geopandas  # noqa: F401  (imported by the run before its changes: not timed here either)
    import scipy.ndimage  # noqa: F401

    from asm_dask.pipeline.years import year_pairs
    from asm_dask.prediction.stream import read_prediction_grid
    from asm_dask.read.grid import cell_ids
    from asm_dask.report.change import map_change, write_change

    manifest = _manifest(run)
    cell_size = manifest["settings"]["features"]["cell_size"]
    threshold = manifest["settings"]["report"]["hotspot_threshold"]
    if scratch.exists():
        shutil.rmtree(scratch)
    grids = {}
    for year in manifest["years"]:
        grid = read_prediction_grid(str(run / "years" / str(year) / "predictions"))
        grid["cell_id"] = cell_ids(grid["lat"].to_numpy(), grid["lon"].to_numpy(), cell_size)
        grids[year] = grid
    pairs = year_pairs(list(grids))
    # Once untimed: the run draws every year's hotspots (the same rasterizing and polygon
    # code, warm) before its changes.
    write_change(str(scratch / "warm-up"), *map_change(grids[pairs[0][0]], grids[pairs[0][1]], cell_size,
                                                        threshold, ("a", "b")))
    timed = []
    for first, second in pairs:
        start = time.perf_counter()
        raster, change = map_change(grids[first], grids[second], cell_size, threshold, (str(first), str(second)))
        mapped = time.perf_counter()
        write_change(str(scratch / f"{first}-{second}"), raster, change)
        timed.append({"pair": f"{first}-{second}", "map_change_s": mapped - start,
                      "write_change_s": time.perf_counter() - mapped,
                      "n_new_clusters": change.counts["n_new_clusters"],
                      "n_abandoned_clusters": change.counts["n_abandoned_clusters"]})
    return timed


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _spread(values: list, spec: str = ".1f") -> str:
    """`` (lowest to highest)`` of several values, nothing for one."""
    if len(values) < 2 or None in values:
        return ""
    return f" ({min(values):{spec}} to {max(values):{spec}})"


def _report(rows: list[dict], changes: list[dict]) -> str:
    stages = list(dict.fromkeys(name for r in rows for name in r["timings"]))
    lines = ["| years mapped | job | wall s | peak tree MB | " + " | ".join(stages) + " | outside stages |",
             "|---:|---|---:|---:|" + "---:|" * (len(stages) + 1)]
    for r in rows:
        ok = r["exit"] == 0
        outside = r["wall_s"] - sum(r["timings"].values()) if ok and r["wall_s"] else None
        job = r["job"] if ok else f"{r['job']} (FAILED, exit {r['exit']})"
        lines.append(f"| {r['years']} | {job} | {_fmt(r['wall_s'], '.1f')}{_spread(r['walls'])} | "
                     f"{_fmt(r['peak_mb'], ',.0f')} | "
                     + " | ".join(_fmt(r["timings"].get(s), ".1f") for s in stages) + f" | {_fmt(outside, '.1f')} |")
    one, last = rows[0], rows[-1]
    if all(r["exit"] == 0 and r["wall_s"] for r in rows):
        lines += _added(rows)
    if last["exit"] == 0 and last["per_year"]:
        outputs = list(dict.fromkeys(k for m in last["per_year"].values() for k in m.get("report_timings_s", {})))
        lines += ["", f"Each year's own stages in the {last['years']}-year run (years/<year>/manifest.json), "
                  "and the 1-year run's for comparison:", "",
                  "| year | predict s | its maps s | " + " | ".join(outputs) + " |",
                  "|---|---:|---:|" + "---:|" * len(outputs)]
        shown = [(f"{y}", m) for y, m in last["per_year"].items()]
        if one["job"] == "one table":
            shown.append((f"1-year run (one table; its maps and report: {one['timings'].get('report', 0):.1f} s)",
                          {"timings_s": {"predict": one["timings"].get("predict")},
                           "report_timings_s": one["report_timings"]}))
        for name, m in shown:
            t, o = m.get("timings_s", {}), m.get("report_timings_s", {})
            lines.append(f"| {name} | {_fmt(t.get('predict'), '.1f')} | {_fmt(t.get('report'), '.1f')} | "
                         + " | ".join(_fmt(o.get(k), ".2f") for k in outputs) + " |")
        of_years = sum(m.get("timings_s", {}).get("report", 0.0) for m in last["per_year"].values())
        rest = last["timings"].get("report", 0.0) - of_years
        lines += ["", f"The {last['years']}-year run's report stage: {last['timings'].get('report', 0):.1f} s, of "
                  f"which the years' maps {of_years:.1f} s and the run's own {rest:.1f} s (estimates, changes, "
                  "years.csv, the report: " + ", ".join(f"{k} {v:.2f}" for k, v in last["report_timings"].items())
                  + ")."]
    if changes:
        total = sum(c["map_change_s"] + c["write_change_s"] for c in changes)
        lines += ["", f"Change outputs, timed in-process on the {last['years']}-year run's prediction grids:", "",
                  "| pair | map_change s | write_change s | new clusters | abandoned clusters |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {c['pair']} | {c['map_change_s']:.2f} | {c['write_change_s']:.2f} | {c['n_new_clusters']} | "
                  f"{c['n_abandoned_clusters']} |" for c in changes]
        lines += ["", f"All {len(changes)} change outputs: {total:.2f} s ({total / len(changes):.2f} s a pair); "
                  f"{total / last['wall_s']:.1%} of the {last['years']}-year run."]
    return "\n".join(lines)


def _added(rows: list[dict]) -> list[str]:
    """Each added year's wall time and memory, against the 1-year run."""
    one = rows[0]
    base_pr = one["timings"].get("predict", 0.0) + one["timings"].get("report", 0.0)
    lines = ["", f"Each added year, against the 1-year run ({one['wall_s']:.1f} s) and its predict + report "
             f"stages ({base_pr:.1f} s):", "",
             "| years | added wall s | / 1-year run | / 1-year predict + report | added peak MB "
             "| of it: predict | report | open features | other stages and outside |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for before, after in zip(rows, rows[1:]):
        # the difference within each turn of the three jobs, then its median
        paired = [b - a for a, b in zip(before["walls"], after["walls"])]
        added = _median(paired)
        diff = {s: after["timings"].get(s, 0.0) - before["timings"].get(s, 0.0) for s in ("predict", "report",
                                                                                           "open features")}
        lines.append(f"| {before['years']} -> {after['years']} | {added:+.1f}{_spread(paired, '+.1f')} | "
                     f"{added / one['wall_s']:.2f} | "
                     f"{added / base_pr:.2f} | {after['peak_mb'] - before['peak_mb']:+,.0f} | "
                     f"{diff['predict']:+.1f} | {diff['report']:+.1f} | {diff['open features']:+.1f} | "
                     f"{added - sum(diff.values()):+.1f} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
