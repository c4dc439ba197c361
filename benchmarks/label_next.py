"""Does labelling the cells of ``next_labels.csv`` help the model more than labelling as
many cells drawn at random? A benchmark, not a test: it asserts nothing.

On synthetic countries that know the true probability of every cell
(:func:`asm_dask.demo.make_country`), for each seed:

1. a run on the country's own labels (few, so that more can help);
2. N of its ``next_labels`` cells labelled from their true probability and added, or
   N cells drawn at random, labelled the same way and added; a run on each;
3. each run's map scored on one fixed evaluation set: 2,000 cells drawn at random,
   labelled from their true probability (ROC AUC of the map's probability there), and
   against the truth itself (correlation of the map's and the true probability over all
   cells).

Prints one row per seed and N, and the mean gain of the list over random cells.

    python benchmarks/label_next.py --seeds 3 --added 50 100 200
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def _labelled(cells: pd.DataFrame, truth: pd.Series, rng: np.random.Generator, kind: str) -> pd.DataFrame:
    """Cells labelled as a field team would find them: ASM with their true probability."""
    p = truth.loc[list(zip(cells.lat.round(4), cells.lon.round(4)))].to_numpy()
    return pd.DataFrame({"lon": cells.lon.to_numpy(), "lat": cells.lat.to_numpy(),
                         "unique_id": [f"{kind}-{i}" for i in range(len(cells))], "country": "SLE",
                         "sample_type": kind, "mine_type": "artisanal", "confidence": 5,
                         "label": (rng.random(len(cells)) < p).astype(int), "proportion_inspected": 1.0})


def _score(folder: Path, evaluation: pd.DataFrame, truth: pd.Series) -> tuple[float, float]:
    grid = pd.read_parquet(folder / "predictions", columns=["lat", "lon", "probability"])
    mapped = pd.Series(grid.probability.to_numpy(), index=list(zip(grid.lat.round(4), grid.lon.round(4))))
    at = mapped.reindex(list(zip(evaluation.lat.round(4), evaluation.lon.round(4)))).to_numpy()
    keep = ~np.isnan(at)
    together = mapped.index.intersection(truth.index)
    return (roc_auc_score(evaluation.label.to_numpy()[keep], at[keep]),
            float(np.corrcoef(mapped.loc[together], truth.loc[together])[0, 1]))


def main() -> None:
    import distributed

    import asm_dask
    from asm_dask.demo import make_country

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--added", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--cells", type=int, default=4000)
    parser.add_argument("--labels", type=int, default=250)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch, distributed.Client(n_workers=2, threads_per_worker=1) as client:
        for seed in range(args.seeds):
            folder = Path(scratch) / f"seed{seed}"
            files = make_country(folder / "data", n_cells=args.cells, n_features=100, n_labels=args.labels,
                                 seed=seed)
            truth_cells = pd.read_parquet(files.truth_cells)
            truth = pd.Series(truth_cells.true_probability.to_numpy(),
                              index=list(zip(truth_cells.lat.round(4), truth_cells.lon.round(4))))
            rng = np.random.default_rng(1000 + seed)
            evaluation = _labelled(truth_cells.sample(2000, random_state=seed), truth, rng, "evaluation")
            base = {"labels": str(files.labels), "features": str(files.features), "model": {"alphas": "auto"},
                    "report": {"next_labels": max(args.added)}}
            first = asm_dask.run({**base, "output": str(folder / "first")}, client)
            listed = pd.read_csv(Path(first.folder) / "next_labels.csv")
            own = pd.read_csv(files.labels)
            for n in args.added:
                scores = {}
                for arm, cells in (("next", listed.head(n)), ("random", truth_cells.sample(n, random_state=n + seed))):
                    added = _labelled(cells, truth, rng, arm)
                    path = folder / f"labels_{arm}_{n}.csv"
                    pd.concat([own, added], ignore_index=True).to_csv(path, index=False)
                    run = asm_dask.run({**base, "labels": str(path), "output": str(folder / f"{arm}_{n}")}, client)
                    scores[arm] = _score(Path(run.folder), evaluation, truth)
                rows.append({"seed": seed, "added": n, "auc_before": _score(Path(first.folder), evaluation, truth)[0],
                             "auc_next": scores["next"][0], "auc_random": scores["random"][0],
                             "corr_next": scores["next"][1], "corr_random": scores["random"][1]})
                print(pd.DataFrame(rows).tail(1).round(3).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    table["gain"] = table.auc_next - table.auc_random
    print("\nmean over seeds, by labels added:")
    print(table.groupby("added")[["auc_before", "auc_next", "auc_random", "gain", "corr_next", "corr_random"]]
          .mean().round(3).to_string())


if __name__ == "__main__":
    main()
