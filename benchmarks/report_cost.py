"""What the report's outputs cost: the report stage against the whole run, per output.

    python benchmarks/report_cost.py [--scales 1 10] [--labels 6000] [--workdir DIR]

For each scale (a multiple of Sierra Leone's 59,000 cells; the country is generated once
and reused), runs ``asm-dask run`` with district boundaries (a 3 x 3 grid, in UTM) under
treemem, warm page cache, and prints the run's wall time and peak memory, the report
stage's time and share of the run, the time of each output (``report_timings_s`` in
manifest.json) and the size of each file a person opens. Results are appended to
``benchmarks/results/report-cost-*.md``.
"""

from __future__ import annotations

import json
import shutil

import yaml
from run import _asm_dask_command, _measure, save_rows, treemem_path
from scaling import scale_parser, scaled_country

FILES = ("probability.tif", "map.html", "report.html", "hotspots.geojson", "admin_summary.geojson",
         "feature_importance.csv")


def main() -> int:
    args = scale_parser(__doc__, default_scales=[1, 10]).parse_args()
    treemem = treemem_path()
    rows = []
    for scale in args.scales:
        folder, labels, features, _ = scaled_country(scale, args)
        districts = folder / "districts.gpkg"
        if not districts.exists():
            from asm_dask.demo import write_districts

            write_districts(districts, folder / "truth_cells.parquet")
        out = folder / "out" / "report_cost"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        job = folder / "job_report.yaml"
        job.write_text(yaml.safe_dump({
            "labels": {"path": str(labels)}, "features": {"path": str(features)}, "output": str(out),
            "report": {"boundaries": {"path": str(districts), "name_column": "name"}}}, sort_keys=False))
        result = _measure(f"asm-dask {scale:g}x", out, [*_asm_dask_command(), "run", str(job), "--out", str(out)],
                          treemem)
        metrics = json.loads((out / "metrics.json").read_text()) if result["exit"] == 0 else {}
        manifest = json.loads((out / "manifest.json").read_text()) if result["exit"] == 0 else {}
        rows.append({"scale": scale, "cells": metrics.get("n_cells"), "run_s": result["wall_s"],
                     "peak_mb": result["peak_mb"], "report_s": result["timings"].get("report"),
                     "outputs_s": manifest.get("report_timings_s", {}), "n_hotspots": metrics.get("n_hotspots"),
                     "sizes_mb": {name: (out / name).stat().st_size / 1e6 for name in FILES if (out / name).exists()},
                     "exit": result["exit"]})
    save_rows("report-cost", _report(rows), rows)
    return 0 if all(r["exit"] == 0 for r in rows) else 1


def _report(rows: list[dict]) -> str:
    lines = ["| scale | cells | run s | peak MB | report s | report / run | hotspots |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        share = r["report_s"] / r["run_s"] if r["report_s"] and r["run_s"] else float("nan")
        lines.append(f"| {r['scale']:g}x | {r['cells'] or 0:,} | {r['run_s']:.1f} | {r['peak_mb']:,.0f} | "
                     f"{r['report_s'] or 0:.1f} | {share:.2f} | {r['n_hotspots'] or 0:,} |")
    lines.append("")
    for r in rows:
        lines.append(f"- {r['scale']:g}x, seconds per output: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in r["outputs_s"].items()))
        lines.append("  file sizes (MB): " + ", ".join(f"{k} {v:.1f}" for k, v in r["sizes_mb"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
