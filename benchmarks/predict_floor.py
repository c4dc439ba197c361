"""The prediction pass against its floor, at one and three times Sierra Leone's size.

    python benchmarks/predict_floor.py [--cells 59000] [--features 4000] [--scales 1 3]
        [--workdir benchmarks/data]

For each scale, on a synthetic country of ``cells x scale`` cells (made, or reused, by
``benchmarks/run.py``'s generator; 4000 float32 features in lz4 Feather, page cache warm):

* **the floor**: one core, one process, reading the features file as Arrow does and
  adding each feature column times its weight into the scores (float64), batch after
  batch: what any prediction of a linear model must do;
* **the pass**: ``asm-dask predict`` of one run's model on the same file (a process of
  its own under treemem, on the default local cluster), its ``predict`` stage as the
  manifest times it: every cell scored, calibrated, its square built and written to
  GeoParquet.

It prints each, and the pass over the floor. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import HERE, _asm_dask_command, _country, _machine, _measure, save_rows, treemem_path  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=59000, help="cells at scale 1 (default 59000)")
    parser.add_argument("--features", type=int, default=4000, help="features per cell (default 4000)")
    parser.add_argument("--labels", type=int, default=6000, help="labels of the run whose model predicts")
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 3], help="sizes, in Sierra Leones")
    parser.add_argument("--workdir", default=str(HERE / "data"))
    args = parser.parse_args()
    treemem = treemem_path()
    rows = []
    model_run = None
    for scale in args.scales:
        cells = int(args.cells * scale)
        country = Path(args.workdir).resolve() / f"{cells}x{args.features}-{args.labels}-b65536"
        labels, features, _ = _country(country, argparse.Namespace(
            cells=cells, features=args.features, labels=args.labels, rows_per_batch=65536))
        features.read_bytes()  # page cache warm
        if model_run is None:  # one model for every scale: the first country's run
            model_run = country / "floor_run"
            job = country / "floor_job.yaml"
            job.write_text(yaml.safe_dump({"labels": str(labels), "features": str(features),
                                           "output": str(model_run)}))
            (country / "floor_measured").mkdir(exist_ok=True)
            done = _measure("asm-dask run (its model predicts below)", country / "floor_measured",
                            [*_asm_dask_command(), "run", str(job)], treemem)
            if done["exit"] != 0:
                return 1
        coef = np.asarray(json.loads((model_run / "model.json").read_text())["coef"], dtype=np.float64)
        floor_s = min(_floor(features, coef) for _ in range(3))  # the first pays the allocator's start
        measured = country / f"floor_predict_{scale:g}"
        measured.mkdir(exist_ok=True)
        out = measured / "predicted"
        if out.exists():  # else the same model would resume its earlier predictions, not make them
            shutil.rmtree(out)
        result = _measure(f"asm-dask predict {scale:g}x", measured,
                          [*_asm_dask_command(), "predict", str(model_run), str(features), "--out", str(out)],
                          treemem)
        manifest = json.loads((out / "manifest.json").read_text()) if result["exit"] == 0 else {}
        predict_s = manifest.get("timings_s", {}).get("predict")
        rows.append({"scale": scale, "cells": cells, "floor_s": floor_s, "predict_s": predict_s,
                     "command_wall_s": result["wall_s"], "peak_mb": result["peak_mb"]})
    lines = [f"## The prediction pass against its floor ({args.features} features, lz4 Feather, page cache warm)",
             "", f"- machine: {_machine()}", "",
             "| scale | cells | floor s (one core) | predict stage s | / floor | asm-dask predict wall s | peak MB |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ratio = row["predict_s"] / row["floor_s"] if row["predict_s"] else None
        lines.append(f"| {row['scale']:g} | {row['cells']:,} | {row['floor_s']:.2f} | "
                     f"{row['predict_s'] or float('nan'):.2f} | {ratio or float('nan'):.1f} | "
                     f"{row['command_wall_s'] or float('nan'):.1f} | {row['peak_mb'] or float('nan'):,.0f} |")
    save_rows("predict-floor", "\n".join(lines), rows)
    return 0


def _floor(features: Path, coef: np.ndarray) -> float:
    """Seconds for one core to read the file and add each column times its weight."""
    start = time.perf_counter()
    with pa.OSFile(str(features)) as f:
        reader = ipc.open_file(f)
        names = reader.schema.names
        wanted = [i for i, name in enumerate(names) if name.startswith("feature_")]
        for index in range(reader.num_record_batches):
            batch = reader.get_batch(index)
            score = np.zeros(batch.num_rows)
            for weight, column in zip(coef, (batch.column(i) for i in wanted)):
                score += weight * column.to_numpy(zero_copy_only=False)
            del batch
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
