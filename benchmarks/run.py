"""Benchmark asm_dask against the seed notebook's pipeline on one synthetic country.

    python benchmarks/run.py --cells 59000 --labels 6000 [--features 4000]
        [--workdir benchmarks/data] [--skip-notebook] [--skip-store] [--repeat-warm]
        [--drop-caches]

On the same machine, in one go:
1. make (or reuse) a synthetic country in WORKDIR/<cells>x<features>-<labels>/;
2. run benchmarks/notebook_pipeline.py, then ``asm-dask run`` with the default
   settings (the features read in place), and twice through the feature store
   (``features.store: always``): 'built' (the store is deleted first, so the run builds
   it) and 'reused'; each under treemem, which reports wall time and the peak RSS of the
   whole process tree (Dask scheduler and workers, joblib workers);
3. print a markdown table and append it to benchmarks/results/<timestamp>.md.

A benchmark, not a test: it asserts nothing. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = 0
#: version of asm_dask.demo's output; a country made by an older generator is made again
#: (2: MOSAIKS-sized feature values, truth files)
GENERATOR = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, required=True, help="approximate number of land cells")
    parser.add_argument("--labels", type=int, required=True, help="number of label points")
    parser.add_argument("--features", type=int, default=4000, help="features per cell (default 4000)")
    parser.add_argument("--rows-per-batch", type=int, default=65536,
                        help="rows per Feather record batch (default 65536, as pandas.to_feather "
                             "writes: 1 GB batches at 4000 features); 0: batches of 64 MB")
    parser.add_argument("--workdir", default=str(HERE / "data"),
                        help="where countries, job files and run outputs go (default benchmarks/data)")
    parser.add_argument("--skip-notebook", action="store_true",
                        help="do not run the notebook pipeline (it needs the whole table in memory); "
                             "ratios are then against asm-dask cold")
    parser.add_argument("--repeat-warm", action="store_true",
                        help="run asm-dask a second time, to see run-to-run noise")
    parser.add_argument("--skip-store", action="store_true",
                        help="do not run asm-dask through the feature store (features.store: always)")
    parser.add_argument("--drop-caches", action="store_true",
                        help="empty the page cache before each run (needs root): every run reads from disk")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    treemem = treemem_path()
    asm_dask = _asm_dask_command()

    country = Path(args.workdir).resolve() / f"{args.cells}x{args.features}-{args.labels}-b{args.rows_per_batch}"
    labels, features, generation = _country(country, args)
    job_file, store_job_file = country / "job.yaml", country / "job_store.yaml"
    for path, store in ((job_file, "auto"), (store_job_file, "always")):
        path.write_text(yaml.safe_dump({"labels": {"path": str(labels)},
                                        "features": {"path": str(features), "store": store},
                                        "output": str(country / "out" / "asm_dask")}, sort_keys=False))

    runs: list[tuple[str, Path, list[str]]] = []
    if not args.skip_notebook:
        runs.append(("notebook", country / "out" / "notebook",
                     [sys.executable, str(HERE / "notebook_pipeline.py"), "--labels", str(labels),
                      "--features", str(features), "--out", "{out}"]))
    asm = [*asm_dask, "run", str(job_file), "--out", "{out}"]
    runs.append(("asm-dask", country / "out" / "asm_dask", asm))
    if args.repeat_warm:
        runs.append(("asm-dask again", country / "out" / "asm_dask_again", asm))
    if not args.skip_store:
        stored = [*asm_dask, "run", str(store_job_file), "--out", "{out}"]
        runs.append(("asm-dask store, built", country / "out" / "asm_dask_store_built", stored))
        runs.append(("asm-dask store, reused", country / "out" / "asm_dask_store_reused", stored))

    store = Path(str(features) + ".asm_dask_store")
    results = []
    for name, out, cmd in runs:
        if name in ("asm-dask", "asm-dask store, built") and store.exists():
            # Otherwise `store: auto` would read the store, and `always` would not build it.
            print(f"removing the feature store {store}", flush=True)
            shutil.rmtree(store)
        if args.drop_caches:
            drop_page_cache()
        if out.exists():  # a stale output folder would let asm-dask resume instead of predicting
            shutil.rmtree(out)
        out.mkdir(parents=True)
        results.append(_measure(name, out, [c.replace("{out}", str(out)) for c in cmd], treemem))
        if name.startswith("asm-dask") and results[-1]["exit"] == 0:
            results[-1]["truth"] = _truth(out, country)

    table = _table(results, baseline="notebook" if not args.skip_notebook else "asm-dask")
    stages = _stages(results)
    print()
    print(table)
    print()
    print(stages)
    _append_results(args, country, generation, table, stages, load_at_start)
    return 0 if all(r["exit"] == 0 for r in results) else 1


def treemem_path() -> Path:
    """The treemem tool (wall time and peak memory of a process tree); exits if missing."""
    treemem = Path(os.environ.get("ASM_DASK_TREEMEM", REPO.parent / "shared" / "tools" / "treemem"))
    if not treemem.is_file():
        sys.exit(f"treemem not found at {treemem}; set ASM_DASK_TREEMEM")
    return treemem


def drop_page_cache() -> None:
    """Empty the kernel's page cache, so that the next read comes from the disk."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        sys.exit(f"cannot drop the page cache ({exc.strerror}): run as root, or without --drop-caches")


def _asm_dask_command() -> list[str]:
    """The ``asm-dask`` script of this interpreter's environment, else the module."""
    beside = Path(sys.executable).parent / "asm-dask"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("asm-dask")
    return [found] if found else [sys.executable, "-m", "asm_dask.cli"]


def reuse_or_make(folder: Path, params: dict, files: list[Path], make) -> dict:
    """What ``make()`` generated into ``folder`` (a dict of what to record, with ``n_cells``),
    unless the folder holds ``files`` made with the same ``params``; with ``reused``."""
    marker = folder / "params.json"
    if marker.is_file() and all(path.is_file() for path in files):
        saved = json.loads(marker.read_text())
        if saved.get("params") == params:
            print(f"reusing {folder} (generated in {saved['generation_s']:.1f} s, {saved['n_cells']:,} cells)",
                  flush=True)
            return {**saved, "reused": True}
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    print(f"generating {params} in {folder} ...", flush=True)
    start = time.perf_counter()
    made = make()
    info = {"params": params, "generation_s": round(time.perf_counter() - start, 1), **made}
    marker.write_text(json.dumps(info, indent=1))
    print(f"generated in {info['generation_s']:.1f} s: {info['n_cells']:,} cells", flush=True)
    return {**info, "reused": False}


def _country(folder: Path, args) -> tuple[Path, Path, dict]:
    """Generate the country unless the folder already holds one made with the same parameters."""
    from asm_dask.demo import make_country

    params = {"cells": args.cells, "features": args.features, "labels": args.labels, "seed": SEED,
              "rows_per_batch": args.rows_per_batch, "generator": GENERATOR}
    labels, features = folder / "SLE_mines.csv", folder / "SLE_features.feather"

    def make() -> dict:
        files = make_country(folder, n_cells=args.cells, n_features=args.features, n_labels=args.labels,
                             seed=SEED, rows_per_batch=args.rows_per_batch or None)
        return {"n_cells": files.n_cells, "n_labels": files.n_labels, "features_bytes": features.stat().st_size}

    return labels, features, reuse_or_make(folder, params, [labels, features], make)


def _truth(out: Path, country: Path) -> dict:
    """The run against the synthetic country's known truth (see asm_dask.demo)."""
    from asm_dask.demo import DemoFiles, score_against_truth

    files = DemoFiles(country / "SLE_mines.csv", country / "SLE_features.feather", 0, 0,
                      country / "truth_labels.csv", country / "truth_cells.parquet", country / "districts.gpkg")
    return score_against_truth(out, files)


def _measure(name: str, out: Path, cmd: list[str], treemem: Path) -> dict:
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    # hidden: asm-dask refuses an output folder holding files that are not its own
    mem_json = out / ".treemem.json"
    log = out / ".benchmark.log"  # the run's stdout and stderr, also echoed here
    with open(log, "w") as f, subprocess.Popen(
            [sys.executable, str(treemem), "--json", str(mem_json), "--", *cmd],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            f.write(line)
    if proc.returncode != 0:
        print(f"!!! {name} failed (exit {proc.returncode}); its output is in {log}", flush=True)
    result = {"name": name, "out": out, "exit": proc.returncode, "wall_s": None, "peak_mb": None,
              "auc_uncal": None, "auc_cal": None, "timings": {}}
    if mem_json.is_file():
        m = json.loads(mem_json.read_text())
        result.update(wall_s=m["wall_s"], peak_mb=m["peak_tree_rss_mb"], exit=m["exit"])
    metrics = out / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        result.update(auc_uncal=m.get("test_auc_uncalibrated"), auc_cal=m.get("test_auc_calibrated"))
        result["timings"] = m.get("timings_s", {})  # the notebook script's stage timings
    manifest = out / "manifest.json"
    if manifest.is_file():  # asm-dask's stage timings
        result["timings"] = json.loads(manifest.read_text()).get("timings_s", {}) or result["timings"]
    return result


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(results: list[dict], baseline: str) -> str:
    base = next((r for r in results if r["name"] == baseline and r["exit"] == 0), None)
    header = ["run", "wall s", "peak tree MB", f"wall / {baseline}", f"memory / {baseline}",
              "test AUC uncal.", "test AUC cal.", "truth's AUC, same test labels", "gap to truth",
              "map vs true map: corr."]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * 9) + "|"]
    for r in results:
        ok = r["exit"] == 0
        wall_ratio = r["wall_s"] / base["wall_s"] if ok and base and r["wall_s"] else None
        mem_ratio = r["peak_mb"] / base["peak_mb"] if ok and base and r["peak_mb"] else None
        name = r["name"] if ok else f"{r['name']} (FAILED, exit {r['exit']})"
        lines.append("| " + " | ".join([
            name, _fmt(r["wall_s"], ".1f"), _fmt(r["peak_mb"], ",.0f"), _fmt(wall_ratio, ".2f"),
            _fmt(mem_ratio, ".2f"), _fmt(r["auc_uncal"], ".3f"), _fmt(r["auc_cal"], ".3f"),
            _fmt(r.get("truth", {}).get("truth_test_auc"), ".3f"), _fmt(r.get("truth", {}).get("auc_gap"), ".3f"),
            _fmt(r.get("truth", {}).get("cell_probability_correlation"), ".2f")]) + " |")
    return "\n".join(lines)


def _stages(results: list[dict]) -> str:
    lines = ["Stage timings (s), from each run's metrics.json / manifest.json:"]
    for r in results:
        if r["timings"]:
            rest = f", outside stages (imports, start-up, cluster) {r['wall_s'] - sum(r['timings'].values()):.1f}" \
                if r["wall_s"] else ""
            lines.append(f"- {r['name']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()) + rest)
    return "\n".join(lines)


def _machine() -> str:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return (f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}, {cpu}), "
            f"{mem_kb / 2**20:.1f} GiB memory, {platform.platform()}, Python {platform.python_version()}")


def save_rows(prefix: str, report: str, rows: list[dict]) -> None:
    """Print ``report`` and keep it, with the raw ``rows``, in ``results/PREFIX-STAMP.md``."""
    print("\n" + report)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(report + "\n\n```\n" + json.dumps(rows, indent=1, default=str) + "\n```\n")
    print(f"\nwritten to {path}")


def _append_results(args, country: Path, generation: dict, table: str, stages: str,
                    load_at_start: float) -> None:
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = results_dir / f"{stamp}.md"
    gen = ("reused" if generation.get("reused") else "generated") + f" (generation took {generation['generation_s']} s)"
    text = "\n".join([
        f"## {stamp}: {generation['n_cells']:,} cells x {args.features} features, {args.labels:,} labels",
        "",
        f"- machine: {_machine()}",
        f"- 1-minute load average: {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at end "
        "(above 0.5 means something else was running: wall times are then noisy)",
        f"- parameters: --cells {args.cells} --labels {args.labels} --features {args.features}"
        + (" --skip-notebook" if args.skip_notebook else "") + (" --repeat-warm" if args.repeat_warm else "")
        + (" --skip-store" if args.skip_store else "") + (" --drop-caches" if args.drop_caches else ""),
        f"- data: {country}, features file {generation['features_bytes'] / 1e9:.2f} GB, {gen}",
        "",
        table,
        "",
        stages,
        "",
    ])
    with open(path, "a") as f:
        f.write(text + "\n")
    print(f"\nappended to {path}")


if __name__ == "__main__":
    sys.exit(main())
