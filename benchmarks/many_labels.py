"""Many labels: asm-dask's fit against scikit-learn's GridSearchCV on the same rows.

    python benchmarks/many_labels.py [--labels 40000] [--features 1000] [--cells 59000]

With more labelled rows than features, asm_dask solves ridge in the primal (the
features x features Gram matrix), so memory grows with min(rows, features)^2. This runs,
on one synthetic country, each under treemem:
1. ``asm-dask run`` (warm: the feature store is built first, outside the measurement);
2. ``python benchmarks/many_labels.py --sklearn RUN_DIR``: scikit-learn's
   ``GridSearchCV(RidgeClassifier(), {"alpha": the alphas asm-dask searched},
   cv=the same folds, scoring="roc_auc")`` on the same training rows, and checks that it
   chooses the same alpha with the same CV AUCs.
A benchmark, not a test; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import _asm_dask_command, _country, _measure  # noqa: E402  (same folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=40_000)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--cells", type=int, default=59_000)
    parser.add_argument("--rows-per-batch", type=int, default=65536)
    parser.add_argument("--workdir", default=str(HERE / "data"))
    parser.add_argument("--sklearn", nargs=2, metavar=("RUN_DIR", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sklearn:
        return _sklearn_fit(Path(args.sklearn[0]), Path(args.sklearn[1]))

    treemem = HERE.parent.parent / "shared" / "tools" / "treemem"
    country = Path(args.workdir).resolve() / f"{args.cells}x{args.features}-{args.labels}-b{args.rows_per_batch}"
    labels, features, _ = _country(country, args)
    job = country / "job.yaml"
    job.write_text(yaml.safe_dump({"labels": {"path": str(labels)}, "features": {"path": str(features)},
                                   "output": str(country / "out" / "asm_dask")}, sort_keys=False))
    subprocess.run([*_asm_dask_command(), "ingest", str(job)], check=True, capture_output=True)
    run_dir, sk_dir = country / "out" / "asm_dask_warm", country / "out" / "sklearn"
    for folder in (run_dir, sk_dir):  # a stale run folder would let asm-dask resume
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    results = [_measure("asm-dask run (warm)", run_dir,
                        [*_asm_dask_command(), "run", str(job), "--out", str(run_dir)], treemem),
               _measure("scikit-learn GridSearchCV", sk_dir,
                        [sys.executable, __file__, "--sklearn", str(run_dir), str(sk_dir / "sklearn.json")],
                        treemem)]
    asm, sk = results
    manifest = json.loads((asm["out"] / "manifest.json").read_text())
    metrics = json.loads((asm["out"] / "metrics.json").read_text())
    sk_fit = json.loads((sk["out"] / "sklearn.json").read_text())
    print()
    print(f"{metrics['n_train']:,} training rows x {metrics['n_features']} features, "
          f"{len(metrics['alphas_searched'])} alphas x 5 folds; asm-dask solver: {metrics['solver']}")
    print("| run | wall s | peak tree MB | fit s | best alpha | CV AUC at best |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| asm-dask run, whole job | {asm['wall_s']:.1f} | {asm['peak_mb']:,.0f} | "
          f"{manifest['timings_s']['fit']:.1f} | {metrics['best_alpha']:g} | "
          f"{metrics['cv_auc'][str(metrics['best_alpha'])]:.4f} |")
    print(f"| scikit-learn GridSearchCV, same rows and folds | {sk['wall_s']:.1f} | {sk['peak_mb']:,.0f} | "
          f"{sk_fit['fit_s']:.1f} | {sk_fit['best_alpha']:g} | {sk_fit['best_cv_auc']:.4f} |")
    print(f"largest difference in mean CV AUC over the grid: {sk_fit['max_cv_auc_difference']:.1e}")
    return 0 if all(r["exit"] == 0 for r in results) else 1


def _sklearn_fit(run_dir: Path, result_file: Path) -> int:
    """GridSearchCV on the training rows and folds of a finished asm-dask run."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import GridSearchCV

    from asm_dask.model.split import cv_folds
    from asm_dask.read.grid import cell_ids

    metrics = json.loads((run_dir / "metrics.json").read_text())
    job = yaml.safe_load((run_dir.parents[1] / "job.yaml").read_text())
    rows = pd.read_csv(run_dir / "labelled_cells.csv").query("split == 'train'").reset_index(drop=True)
    features = pd.read_feather(job["features"]["path"])
    coords = features["image_id"].str.replace("--", ".").str.extract(r"lat_(.*)__lon_(.*)").astype(float)
    position = pd.Series(np.arange(len(features)),
                         index=cell_ids(coords[0].to_numpy(), coords[1].to_numpy(), 0.01))
    columns = [c for c in features.columns if c.startswith("feature_")]
    X = features[columns].to_numpy(np.float64)[position.loc[rows["cell_id"]].to_numpy()]
    del features
    y = rows["label"].to_numpy()
    folds = cv_folds(y, rows["cell_id"].to_numpy(), 5, "labels", seed=1991)
    alphas = metrics["alphas_searched"]
    start = time.perf_counter()
    search = GridSearchCV(RidgeClassifier(), {"alpha": alphas}, cv=folds, scoring="roc_auc").fit(X, y)
    fit_s = time.perf_counter() - start
    ours = np.array([metrics["cv_auc"][str(a)] for a in alphas])
    result = {"fit_s": fit_s, "best_alpha": search.best_params_["alpha"],
              "best_cv_auc": float(search.best_score_),
              "max_cv_auc_difference": float(np.abs(search.cv_results_["mean_test_score"] - ours).max())}
    result_file.write_text(json.dumps(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
