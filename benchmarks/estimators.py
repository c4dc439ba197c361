"""Every estimator of model.estimators on one synthetic country: fit time, CV AUC, gap to the truth.

    python benchmarks/estimators.py [--cells 59000] [--labels 6000] [--features 4000]
        [--estimators ridge logistic_regression linear_svm random_forest hist_gradient_boosting]
        [--workdir benchmarks/data]

On the same machine, in one go:
1. make (or reuse) the synthetic country, as benchmarks/run.py does;
2. ``asm-dask run`` once under treemem with ``model.estimators`` listing every estimator
   (their built-in grids), so that all are tuned on the same folds on the same cluster;
3. print, per estimator: the settings searched, its fit time (search, out-of-fold fits
   and refit, from metrics.json), its mean CV AUC and spread, its best parameters, its
   calibrated test AUC, and the gap between that and what the synthetic country's true
   probability scores on the same test labels (asm_dask.demo.score_against_truth);
   the table is kept in benchmarks/results/estimators-<timestamp>.md.

A benchmark, not a test: it asserts nothing. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml
from run import HERE, _asm_dask_command, _country, _measure, _truth, save_rows, treemem_path

ALL_ESTIMATORS = ["ridge", "logistic_regression", "linear_svm", "random_forest", "hist_gradient_boosting"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=59_000, help="approximate number of land cells")
    parser.add_argument("--labels", type=int, default=6000, help="number of label points")
    parser.add_argument("--features", type=int, default=4000, help="features per cell (default 4000)")
    parser.add_argument("--rows-per-batch", type=int, default=65536, help="as benchmarks/run.py")
    parser.add_argument("--estimators", nargs="+", default=ALL_ESTIMATORS, choices=ALL_ESTIMATORS,
                        help="estimators compared (ridge is always among them)")
    parser.add_argument("--workdir", default=str(HERE / "data"))
    args = parser.parse_args()
    estimators = ["ridge"] + [name for name in args.estimators if name != "ridge"]

    country = Path(args.workdir).resolve() / f"{args.cells}x{args.features}-{args.labels}-b{args.rows_per_batch}"
    labels, features, _ = _country(country, args)
    out = country / "out" / "estimators"
    job_file = country / "job_estimators.yaml"
    job_file.write_text(yaml.safe_dump({"labels": {"path": str(labels)}, "features": {"path": str(features)},
                                        "output": str(out), "model": {"estimators": estimators}},
                                       sort_keys=False))
    if out.exists():  # a stale output folder would let asm-dask resume instead of predicting
        shutil.rmtree(out)
    out.mkdir(parents=True)
    result = _measure("asm-dask, " + ", ".join(estimators), out,
                      [*_asm_dask_command(), "run", str(job_file), "--out", str(out)], treemem_path())
    if result["exit"] != 0:
        return 1
    metrics = json.loads((out / "metrics.json").read_text())
    truth = _truth(out, country)
    compared = metrics["model_comparison"]
    rows = [{"estimator": name, **compared[name], "fit_s": compared[name]["fit_seconds"],
             "truth_test_auc": truth["truth_test_auc"],
             "gap_to_truth": truth["truth_test_auc"] - metrics["model_comparison"][name]["test_auc"]}
            for name in estimators]
    header = ["estimator", "settings searched", "fit s", "CV AUC (sd over folds)", "best parameters",
              "test AUC cal.", "gap to the truth's test AUC"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|---:|---|---:|---:|"]
    for row in rows:
        selected = " (selected)" if row["estimator"] == metrics["selected_estimator"] else ""
        params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["best_params"].items())
        lines.append(f"| {row['estimator']}{selected} | {len(row['grid'])} | {row['fit_s']:.1f} | "
                     f"{row['cv_auc']:.3f} ({row['cv_auc_sd']:.3f}) | {params} | {row['test_auc']:.3f} | "
                     f"{row['gap_to_truth']:.3f} |")
    report = "\n".join([
        f"{metrics['n_train']:,} training rows x {metrics['n_features']} features, "
        f"{len(metrics['model_comparison']['ridge']['cv_auc_by_fold'])} folds of whole cells; "
        f"the true probability scores {truth['truth_test_auc']:.3f} on the same {truth['n_test_labels']} test labels; "
        f"the whole run {result['wall_s']:.0f} s, peak memory {result['peak_mb']:,.0f} MB",
        "", *lines])
    save_rows("estimators", report, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
