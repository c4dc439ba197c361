"""How a first run grows with the country, from a cold page cache, against reading its input once.

    sudo python benchmarks/scaling.py [--scales 1 3 10] [--labels 6000] [--workdir DIR]

For each scale (a multiple of Sierra Leone's 59,000 cells), on the same machine:
1. make (or reuse) the synthetic country, as benchmarks/run.py does;
2. empty the page cache, then read the features file once with pyarrow, touching every
   value (the floor for any program that reads the input);
3. empty the page cache, then ``asm-dask run`` with the default settings under treemem
   (wall time, peak tree memory), with no feature store present beforehand, and check
   that none was written;
4. empty the page cache and read the file once more: a virtual machine's disk can run
   30 % faster or slower from one minute to the next (measured: 27 s and 40 s for one
   file), so the run is set against a read on each side of it.

It prints, per scale, the two read times, the run time, its ratio to each read, peak
memory and whether a store was written, then the growth ratio between consecutive scales: how much faster
the run grows than the read, (run at the larger scale - run at the smaller) / (read at
the larger - read at the smaller). Needs root, to empty the page cache. A benchmark,
not a test.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from run import HERE, _asm_dask_command, _country, _measure, _truth, drop_page_cache, save_rows, treemem_path

SIERRA_LEONE_CELLS = 59_000

READ_ONCE = """
import sys, time
import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.ipc as ipc
start = time.perf_counter()
reader = ipc.open_file(pa.OSFile(sys.argv[1]))
total = 0.0
for i in range(reader.num_record_batches):
    for column in reader.get_batch(i).columns:
        if pa.types.is_string(column.type):  # image_id
            column = pc.binary_length(column)
        total += float(np.sum(column.to_numpy(zero_copy_only=False), dtype=np.float64))
print(time.perf_counter() - start)
"""


def scale_parser(doc: str, default_scales: list[float]) -> argparse.ArgumentParser:
    """Options of a benchmark run at several multiples of Sierra Leone's size."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=default_scales,
                        help=f"multiples of Sierra Leone's 59,000 cells (default {' '.join(map(str, default_scales))})")
    parser.add_argument("--labels", type=int, default=6000)
    parser.add_argument("--features", type=int, default=4000)
    parser.add_argument("--workdir", default=str(HERE / "data"))
    return parser


def scaled_country(scale: float, args: argparse.Namespace) -> tuple[Path, Path, Path, dict]:
    """The synthetic country at ``scale`` (generated once, then reused): its folder, labels,
    features and how it was made."""
    cells = int(round(scale * SIERRA_LEONE_CELLS))
    folder = Path(args.workdir).resolve() / f"{cells}x{args.features}-{args.labels}-b65536"
    labels, features, generation = _country(folder, argparse.Namespace(
        cells=cells, features=args.features, labels=args.labels, rows_per_batch=65536))
    return folder, labels, features, generation


def main() -> int:
    args = scale_parser(__doc__, default_scales=[1, 3, 10]).parse_args()
    treemem = treemem_path()
    rows = []
    for scale in args.scales:
        folder, labels, features, generation = scaled_country(scale, args)
        store = Path(str(features) + ".asm_dask_store")
        if store.exists():
            shutil.rmtree(store)
        read_s = _read_once_cold(features)
        print(f"\n{scale:g}x: read {features.stat().st_size / 1e9:.1f} GB once in {read_s:.1f} s", flush=True)
        job = folder / "job.yaml"
        job.write_text(yaml.safe_dump({"labels": {"path": str(labels)}, "features": {"path": str(features)},
                                       "output": str(folder / "out" / "scaling")}, sort_keys=False))
        out = folder / "out" / "scaling"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        drop_page_cache()
        result = _measure(f"asm-dask {scale:g}x", out, [*_asm_dask_command(), "run", str(job), "--out", str(out)],
                          treemem)
        truth = _truth(out, folder) if result["exit"] == 0 else {}
        read_after_s = _read_once_cold(features)
        print(f"{scale:g}x: read it once more in {read_after_s:.1f} s", flush=True)
        rows.append({"scale": scale, "cells": generation["n_cells"], "gb": features.stat().st_size / 1e9,
                     "read_s": read_s, "read_after_s": read_after_s, "run_s": result["wall_s"],
                     "peak_mb": result["peak_mb"],
                     "exit": result["exit"], "store_written": store.exists(), "timings": result["timings"],
                     "auc_gap": truth.get("auc_gap")})
    save_rows("scaling", _report(rows), rows)
    return 0 if all(r["exit"] == 0 for r in rows) else 1


def _read_once_cold(features: Path) -> float:
    """Seconds to read ``features`` once, touching every value, from an empty page cache."""
    drop_page_cache()
    return float(subprocess.run([sys.executable, "-c", READ_ONCE, str(features)], check=True,
                                capture_output=True, text=True).stdout)


def _report(rows: list[dict]) -> str:
    lines = ["| scale | cells | input GB (lz4 Feather) | read once, cold s (before, after the run) "
             "| asm-dask run, cold s | run / read (before, after) | peak tree MB | store written "
             "| gap to truth's AUC |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        ratios = f"{r['run_s'] / r['read_s']:.2f}, {r['run_s'] / r['read_after_s']:.2f}" if r["run_s"] else "-"
        lines.append(f"| {r['scale']:g}x | {r['cells']:,} | {r['gb']:.2f} | {r['read_s']:.1f}, "
                     f"{r['read_after_s']:.1f} | "
                     f"{r['run_s'] if r['run_s'] is None else format(r['run_s'], '.1f')} | {ratios} | "
                     f"{'-' if r['peak_mb'] is None else format(r['peak_mb'], ',.0f')} | "
                     f"{'yes' if r['store_written'] else 'no'} | "
                     f"{'-' if r['auc_gap'] is None else format(r['auc_gap'], '.3f')} |")
    if all(r["run_s"] for r in rows):
        lines.append("")
        for first, last in zip(rows, rows[1:]):
            growth = (last["run_s"] - first["run_s"]) / (_mean_read(last) - _mean_read(first))
            lines.append(f"Growth ratio, {first['scale']:g}x to {last['scale']:g}x: (run difference) / "
                         f"(read difference) = {growth:.2f}")
    lines.append("")
    lines.append("Stage timings (s):")
    for r in rows:
        lines.append(f"- {r['scale']:g}x: " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()))
    return "\n".join(lines)


def _mean_read(row: dict) -> float:
    return (row["read_s"] + row["read_after_s"]) / 2


if __name__ == "__main__":
    sys.exit(main())
