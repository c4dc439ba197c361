"""The seed notebook's pipeline as a script: the REFERENCE that benchmarks/run.py measures.

This is NOT production code and not part of asm_dask. It repeats the notebook
("MOSAIKS Demonstration: Identifying ASM in Sierra Leone") step by step, in memory,
flaws included, so asm_dask's time, memory and accuracy can be compared with what
users run today:

    python benchmarks/notebook_pipeline.py --labels SLE_mines.csv \
        --features SLE_features.feather --out DIR

Writes DIR/metrics.json (test AUCs, best alpha, joined rows, stage timings) and the
notebook's static figures as PNG files. Left out: the interactive ``.explore()`` label
map (needs a browser) and the ``feature_0`` map (an illustration, not a result).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import warnings

import matplotlib

matplotlib.use("Agg")  # files, not windows

import geopandas as gpd  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.linalg import LinAlgWarning  # noqa: E402
from sklearn.calibration import IsotonicRegression  # noqa: E402  (the notebook's import)
from sklearn.linear_model import RidgeClassifier  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402

# As in the notebook: silence ridge's ill-conditioning warnings.
warnings.filterwarnings("ignore", category=UserWarning, module="sklearn.linear_model._ridge")
warnings.filterwarnings("ignore", category=LinAlgWarning, module="sklearn.linear_model._ridge")


def bar_colors():
    """``sns.palettes.mpl_palette('Dark2')``: seaborn if installed, else the same 6 colours."""
    try:
        import seaborn as sns
        return sns.palettes.mpl_palette("Dark2")
    except ImportError:
        return list(plt.get_cmap("Dark2").colors[:6])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="SLE_mines.csv")
    parser.add_argument("--features", required=True, help="SLE_features.feather")
    parser.add_argument("--out", required=True, help="folder for metrics.json and figures")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = round(now - t, 3)
        t = now

    # --- Labels: read, the notebook's three filters in its order, reset index.
    labels = pd.read_csv(args.labels)
    labels = labels[["lon", "lat", "unique_id", "country", "sample_type", "mine_type",
                     "confidence", "label", "proportion_inspected"]]
    labels = labels.loc[(labels["proportion_inspected"] >= 0.2) | (labels["label"] == 1)]
    labels = labels.loc[labels["mine_type"] != "commercial"]
    labels = labels.loc[labels["confidence"] >= 3]
    labels = labels.reset_index(drop=True)

    labels.groupby("label").size().plot(kind="barh", color=bar_colors())
    plt.gca().spines[["top", "right"]].set_visible(False)
    plt.savefig(os.path.join(args.out, "label_counts.png"))
    plt.close("all")

    labels_gdf = gpd.GeoDataFrame(labels, geometry=gpd.points_from_xy(labels.lon, labels.lat),
                                  crs="EPSG:4326")
    lap("labels")

    # --- Features: the whole table in memory, as the notebook does.
    features = pd.read_feather(args.features)
    lap("read features")

    # image_id 'lat_8--405__lon_-11--235' -> lat 8.405, lon -11.235, exactly as the notebook.
    features[["lat_part", "lon_part"]] = features["image_id"].str.split("__", expand=True)
    features["lat"] = features["lat_part"].str.replace("lat_", "").str.replace("--", ".").astype(float)
    features["lon"] = features["lon_part"].str.replace("lon_", "").str.replace("--", ".").astype(float)
    features = features.drop(["lat_part", "lon_part"], axis=1)

    # Each centroid buffered to a 0.01-degree square (cap_style=3 is 'square').
    features = gpd.GeoDataFrame(features, geometry=gpd.points_from_xy(features.lon, features.lat),
                                crs="EPSG:4326")
    features.geometry = features.geometry.buffer(0.005, cap_style=3)
    lap("parse ids and build squares")

    # Inner 'intersects' join of points to squares, carrying all feature columns along.
    # (Flaw kept: a label on an edge shared by two squares is duplicated.)
    joined = gpd.sjoin(labels_gdf, features, how="inner", predicate="intersects")
    lap("sjoin")

    # The notebook hard-codes range(4000); detect the columns so any width works.
    feature_cols = sorted((c for c in features.columns if re.fullmatch(r"feature_\d+", c)),
                          key=lambda c: int(c.split("_")[1]))
    X = joined[feature_cols].values
    y = joined["label"].values
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=1991)

    grid_search = GridSearchCV(RidgeClassifier(), {"alpha": [0.01, 0.1, 1.0, 10.0]},
                               cv=5, scoring="roc_auc", n_jobs=-1)
    grid_search.fit(X_train, y_train)
    lap("grid search")

    # FLAW REPRODUCED ON PURPOSE: the isotonic calibrator is fitted on the test set and the
    # calibrated AUC is then measured on that same test set (leakage). asm_dask calibrates
    # on out-of-fold training scores instead; this is the notebook's number, not a fair one.
    y_pred_uncal = grid_search.decision_function(X_test)
    iso_reg = IsotonicRegression(out_of_bounds="clip")
    iso_reg.fit(y_pred_uncal, y_test)
    y_pred_cal = iso_reg.predict(y_pred_uncal)
    auc_uncal = roc_auc_score(y_test, y_pred_uncal)
    auc_cal = roc_auc_score(y_test, y_pred_cal)
    print(f"Best alpha: {grid_search.best_params_['alpha']}")
    print(f"AUC before calibration: {auc_uncal:.3f}")
    print(f"AUC after calibration: {auc_cal:.3f}")

    fpr_uncal, tpr_uncal, _ = roc_curve(y_test, y_pred_uncal)
    fpr_cal, tpr_cal, _ = roc_curve(y_test, y_pred_cal)
    plt.figure(figsize=(5, 5))
    plt.plot(fpr_uncal, tpr_uncal, "b-", label=f"Uncalibrated (AUC = {auc_uncal:.3f})")
    plt.plot(fpr_cal, tpr_cal, "r-", label=f"Calibrated (AUC = {auc_cal:.3f})")
    plt.plot([0, 1], [0, 1], "k--", label="Random")
    plt.xlabel("False Positive Rate")
    plt.ylabel("True Positive Rate")
    plt.title("ROC Curves - Before and After Calibration")
    plt.legend(loc="lower right")
    plt.grid(True, alpha=0.3)
    plt.xlim([-0.01, 1.01])
    plt.ylim([-0.01, 1.01])
    plt.tight_layout()
    plt.savefig(os.path.join(args.out, "roc.png"))
    plt.close("all")
    lap("calibrate and ROC")

    # Every cell: decision function on a full copy of the feature matrix, then calibration.
    y_pred_full = grid_search.decision_function(features[feature_cols].values)
    features["predicted_probability"] = iso_reg.predict(y_pred_full)
    lap("predict all cells")

    # The map, drawn as the notebook does: every square as a matplotlib polygon.
    features.plot(column="predicted_probability", cmap="viridis", legend=True,
                  legend_kwds={"label": "Predicted ASM Probability"}, figsize=(10, 10))
    plt.title("Predicted ASM Probabilities Across Sierra Leone")
    plt.xlabel("Longitude")
    plt.ylabel("Latitude")
    plt.savefig(os.path.join(args.out, "probability_map.png"))
    plt.close("all")
    lap("probability map")

    metrics = {
        "test_auc_uncalibrated": float(auc_uncal),
        "test_auc_calibrated": float(auc_cal),
        "best_alpha": float(grid_search.best_params_["alpha"]),
        "n_joined": int(len(joined)),
        "n_labels_kept": int(len(labels)),
        "n_cells": int(len(features)),
        "n_features": len(feature_cols),
        "timings_s": timings,
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)


if __name__ == "__main__":
    main()
