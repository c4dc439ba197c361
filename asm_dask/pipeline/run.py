"""A job, end to end: read -> join -> fit -> calibrate -> predict -> write and report.

This module only wires the stages together and decides what lands in the output folder.
Every input is read and checked, and the model fitted, before the output folder is
touched: a bad input leaves no half-written output behind.
"""

from __future__ import annotations

import contextlib
import platform
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from .. import storage
from ..config import Job
from ..errors import InputError
from ..model.calibration import CalibratedModel, fit_calibrator, model_hash
from ..model.evaluation import held_out_metrics, roc_auc
from ..model.persistence import Model, save_model
from ..model.ridge import DOMINANT_SCALE_RATIO, AlphaAtGridEdgeWarning, FeatureScaleWarning, RidgeGridClassifier
from ..model.search import Candidate, calibrated_model, comparison, ridge_candidate, search, select
from ..model.split import block_groups, cv_folds, split_groups, train_test_split_groups
from ..prediction.stream import partition_file, predict_cells, read_prediction_grid
from ..read.labels import Labels, read_labels
from ..read.table import FeatureTable, gather_rows, nonfinite_columns, open_table, read_columns
from ..records.fingerprint import run_key, versions
from ..records.lock import OutputLock
from ..records.manifest import RunManifest, describe_cluster
from ..report.build import HeldOut, ReportInputs, write_report
from ..report.districts import read_boundaries
from ..report.importance import N_FEATURE_MAPS, feature_importance
from ..runtime.progress import timed
from ..spatial.join import JoinedLabels, join_labels

#: fewer test blocks than this, and the bootstrap resamples cells instead
MIN_BOOTSTRAP_BLOCKS = 10
#: fewer test labels of either class than this, and the run warns that its AUC says little
MIN_TEST_LABELS_PER_CLASS = 10
#: pooled out-of-fold scores ranking worse than each fold's by more than this: a warning
POOLED_AUC_SHORTFALL = 0.05
#: blocks for the blocked CV are halved until they make the folds, but not below this (degrees)
MIN_BLOCK_SIZE = 0.05


@dataclass(frozen=True)
class RunResult:
    output: str
    metrics: dict[str, Any]
    timings: dict[str, float]


def run_job(job: Job, client: Client) -> RunResult:
    """Run ``job`` on ``client``'s cluster; return where the outputs are and the metrics.

    The output folder is locked for the run (:class:`~asm_dask.records.lock.OutputLock`):
    a second run into it stops at once with an :class:`InputError` naming the first.
    """
    with OutputLock(job.output, "run"):
        return _run_locked(job, client)


def _run_locked(job: Job, client: Client) -> RunResult:
    timings: dict[str, float] = {}

    def clock(name: str):
        return _stage(timings, name)

    with clock("read labels"):
        labels = read_labels(job.labels)
    with clock("open features"):
        table = open_table(job.features, job.output, client)
        boundaries = None
        if job.report.boundaries is not None:
            boundaries = read_boundaries(job.report.boundaries, [b for b in table.bounds if b is not None])
    with clock("join"):
        joined = join_labels(labels, table, client)
        X = gather_rows(table, joined.rows["partition"].to_numpy(), joined.rows["row"].to_numpy(), client)
        if len(X) and not np.isfinite(X).all(axis=1).any():
            raise InputError(f"{job.features.path}: no labelled cell has complete features: "
                             f"{nonfinite_columns(table.feature_names, X)}")
        joined, X = _without_nonfinite_rows(joined, X)
        if joined.rows.empty:
            raise InputError(f"{job.labels.path}: none of the {labels.n_kept} labels falls on a cell "
                             f"of {job.features.path}; check that both use longitude/latitude degrees")
        rows = joined.rows
        y = rows["label"].to_numpy().astype(int)
        groups = split_groups(rows["cell_id"].to_numpy(), rows["cell_lat"].to_numpy(),
                              rows["cell_lon"].to_numpy(), job.split)

    with clock("fit"):
        train, test = train_test_split_groups(y, groups, job.split, job.labels.path)
        folds = cv_folds(y[train], groups[train], job.model.cv_folds, job.labels.path, job.split.seed)
        started = time.perf_counter()
        ridge = RidgeGridClassifier(alphas=job.model.alphas, standardize=job.model.standardize,
                                    client=client)
        with warnings.catch_warnings():
            # said below, on one line, with the features' names
            warnings.simplefilter("ignore", AlphaAtGridEdgeWarning)
            warnings.simplefilter("ignore", FeatureScaleWarning)
            ridge.fit(X[train], y[train], folds)
        candidates = [ridge_candidate(ridge, time.perf_counter() - started)]
        cv = _cross_validation(ridge, y[train], rows.iloc[train], job)
        ridge.release()
        candidates += [search(name, grid, X[train], y[train], folds, job.split.seed, client)
                       for name, grid in job.model.estimators.items() if name != "ridge"]
        selected, selected_by = select(candidates, job.model.select)
    with clock("calibrate"):
        models = {c.name: calibrated_model(c, fit_calibrator(c.oof_scores, y[train], job.model.calibration),
                                           table.feature_names, table.cell_size, X[train]) for c in candidates}
        model = models[selected.name]
        test_scores = model.decision_function(X[test])
        test_probability = model.calibrate(test_scores)
    with clock("validate"):
        unit, resampled = _bootstrap_groups(rows.iloc[test], job.split.block_size)
        sample_type = rows["sample_type"].to_numpy()[test] if "sample_type" in rows else None
        tested, reliability = held_out_metrics(y[test], test_scores, test_probability, resampled, unit,
                                           job.split.seed, sample_type)
        oof_auc = roc_auc(y[train], selected.oof_scores)
        blocked = {c.name: c.cv_auc for c in candidates} if job.split.group_by == "block" else {}
        if "blocked_cv_auc" in cv:
            blocked["ridge"] = cv["blocked_cv_auc"]
        compared = comparison(candidates, models, X[test], y[test], blocked)
        caveats = _caveats(ridge, cv, tested, test_probability, oof_auc, selected, compared, job,
                           table.feature_names)
        # Importance is read from linear weights: the selected model's, or ridge's.
        explained = model if isinstance(model, CalibratedModel) else models["ridge"]
        importance = feature_importance(table.feature_names, explained.coef, X[train], X[test], y[test],
                                        job.split.seed)
    del X  # the labelled rows are not needed past here

    metrics = {
        "n_labels_read": labels.n_read,
        "n_labels_removed_by_filter": labels.removed,
        "n_labels_kept": labels.n_kept,
        "n_labels_joined": len(rows),
        "n_labels_unmatched": len(joined.unmatched),
        "n_labels_on_shared_edges": joined.n_on_shared_edges,
        "n_features": table.n_features,
        "cell_size": table.cell_size,
        "features_read": "in place" if table.kind == "file" else "feature store",
        "n_feature_partitions": len(table.partitions),
        "n_feature_partitions_joined": joined.n_partitions_read,
        "n_train": len(train),
        "n_test": len(test),
        "n_train_groups": int(len(np.unique(groups[train]))),
        "n_test_groups": int(len(np.unique(groups[test]))),
        "split_group_by": job.split.group_by,
        "block_size_deg": job.split.block_size,
        "best_alpha": ridge.best_alpha_,
        "alpha_grid": "auto" if job.model.alphas == "auto" else "given",
        "alphas_searched": ridge.alphas_.tolist(),
        "n_grid_extensions": ridge.n_grid_extensions_,
        "alpha_at_grid_edge": ridge.alpha_at_grid_edge_,
        "solver": ridge.solver_,
        "standardize": job.model.standardize,
        "calibration": job.model.calibration,
        "selected_estimator": selected.name,
        "selected_by": selected_by,
        "model_comparison": compared,
        "feature_importance_of": explained.estimator,
        **cv,
        "oof_auc_calibration_set": oof_auc,
        **tested,
        "warnings": list(table.notes) + caveats,
    }
    # Everything is checked and fitted: from here on the output folder is written.
    out = job.output
    save_model(model, out)
    manifest = RunManifest(out, run_key(job, table.key), describe_run(job, table, describe_cluster(client)))
    grid, counts = predict_and_record(table, model, manifest, client, timings)
    with clock("report"):
        metrics.update(counts)
        with storage.writing(storage.join(out, "unmatched_labels.csv")) as tmp:
            joined.unmatched.to_csv(tmp, index=False)
        with storage.writing(storage.join(out, "labelled_cells.csv")) as tmp:
            _labelled_cells(rows, train, test).to_csv(tmp, index=False)
        top = [table.feature_names.index(name) for name in importance["feature"].head(N_FEATURE_MAPS)]
        metrics, report_timings = write_report(out, ReportInputs(
            metrics=metrics, grid=grid, cell_size=table.cell_size,
            labels=pd.DataFrame(labels.points.drop(columns="geometry")),
            held_out=HeldOut(y[test], test_scores, test_probability, reliability),
            cv_curves=_curves(cv), label_counts=_label_count_table(labels, y, train, test),
            importance=importance, top_features=read_columns(table, top, client), boundaries=boundaries,
            hotspot_threshold=job.report.hotspot_threshold,
            inputs={"labels": job.labels.path, "features": job.features.path,
                    "boundaries": job.report.boundaries.path if job.report.boundaries else ""}))
    manifest.finish(timings_s=timings, report_timings_s=report_timings)
    return RunResult(output=out, metrics=metrics, timings=timings)


def describe_run(job: Job, table: FeatureTable, cluster: dict[str, Any]) -> dict[str, Any]:
    """What the manifest says of a run besides its partitions: inputs, settings (without
    credentials), versions, cluster."""
    settings = job.as_dict()
    settings["storage_options"] = {protocol: sorted(options) for protocol, options
                                   in settings["storage_options"].items()}  # names, never values
    return {"command": "run", "inputs": {"labels": job.labels.path, "features": job.features.path,
                       "features_fingerprint": table.source["ukey"], "features_read_from": table.location},
            "settings": settings, "versions": versions(), "python": platform.python_version(),
            "cluster": cluster, "n_partitions": len(table.partitions)}


def _without_nonfinite_rows(joined: JoinedLabels, X: np.ndarray) -> tuple[JoinedLabels, np.ndarray]:
    """Labels whose cell has a non-finite feature join no cell, as with the store, which
    leaves such cells out."""
    finite = np.isfinite(X).all(axis=1)
    if finite.all():
        return joined, X
    label_columns = list(joined.unmatched.columns)
    unmatched = pd.concat([joined.unmatched, joined.rows.loc[~finite, label_columns]])
    return (JoinedLabels(rows=joined.rows[finite].reset_index(drop=True),
                         unmatched=unmatched.sort_values("label_row").reset_index(drop=True),
                         n_on_shared_edges=joined.n_on_shared_edges,
                         n_partitions_read=joined.n_partitions_read), X[finite])


def _cross_validation(ridge: RidgeGridClassifier, y: np.ndarray, rows: pd.DataFrame,
                      job: Job) -> dict[str, Any]:
    """The search's CV AUC, and the chosen model's on folds of the other grouping.

    Alpha is chosen on folds of ``split.group_by`` (cells, or blocks); the other grouping
    scores the grid from two decades below the chosen alpha upwards (small alphas cost
    the most to solve), so that a reader sees both side by side, and whether the other
    grouping would want more penalty. When cells choose alpha and blocks of
    ``split.block_size`` are too few for the folds (a small country), the blocks are
    halved until they are enough, down to ``MIN_BLOCK_SIZE``; what could not be made is
    reported, not fatal.
    """
    selected, other = job.split.group_by, "block" if job.split.group_by == "cell" else "cell"
    alphas = {selected: ridge.alphas_}
    auc = {selected: ridge.cv_auc_}
    result: dict[str, Any] = {"alpha_selected_by": selected}
    try:
        folds, block_size = _other_folds(other, y, rows, job)
        if other == "block":
            result["blocked_cv_block_size_deg"] = block_size
        alphas[other] = ridge.alphas_[ridge.alphas_ >= ridge.best_alpha_ / 100]
        auc[other] = ridge.cross_validated_auc(folds, alphas[other])
    except InputError as exc:
        result[f"{_name(other)}_cv_auc_unavailable"] = str(exc)
    for grouping, matrix in auc.items():
        name = _name(grouping)
        best = int(np.flatnonzero(alphas[grouping] == ridge.best_alpha_)[0])
        result[f"{name}_cv_auc"] = float(matrix[best].mean())
        result[f"{name}_cv_auc_by_fold"] = [float(v) for v in matrix[best]]
        result[f"cv_auc_{name}_by_alpha"] = {str(a): float(m) for a, m in zip(alphas[grouping], matrix.mean(axis=1))}
        result[f"cv_auc_sd_{name}_by_alpha"] = {str(a): float(m) for a, m in zip(alphas[grouping], matrix.std(axis=1))}
    result["cv_auc"] = result[f"cv_auc_{_name(selected)}_by_alpha"]
    result["cv_auc_by_fold"] = {str(a): [float(v) for v in row] for a, row in zip(ridge.alphas_, ridge.cv_auc_)}
    return result


def _caveats(ridge: RidgeGridClassifier, cv: dict[str, Any], tested: dict[str, Any],
             test_probability: np.ndarray, oof_auc: float, selected: Candidate,
             compared: dict[str, dict[str, Any]], job: Job, table_names: tuple[str, ...]) -> list[str]:
    """What a reader of the numbers must know first; each also said on stderr."""
    caveats = []
    if len(ridge.dominant_features_):
        names = [table_names[i] for i in ridge.dominant_features_]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        caveats.append(f"feature(s) {shown} spread over {DOMINANT_SCALE_RATIO:g} times wider than the typical "
                       "feature over the training labels: ridge's penalty then shrinks every other feature to "
                       "nothing; set model.standardize: true, or check those columns of the features file")
    if ridge.alpha_at_grid_edge_:
        mean = ridge.cv_auc_.mean(axis=1)
        ties = int((mean == mean.max()).sum()) - 1
        if ties:
            how = f"ties {ties} other(s): the CV AUC does not change there; check the labels and the features"
        elif job.model.alphas != "auto":
            how = "beats every other: model.alphas: auto searches a wider grid"
        else:
            how = (f"beats every other, even after {ridge.n_grid_extensions_} decades of extension; check the "
                   "labels and the features")
        caveats.append(f"the best alpha, {ridge.best_alpha_:g}, is at the edge of the alphas searched "
                       f"({ridge.alphas_.min():g} to {ridge.alphas_.max():g}) and {how}")
    for name, entry in compared.items():
        for param in entry["params_at_grid_edge"]:
            caveats.append(f"{name}'s best {param}, {entry['best_params'][param]:g}, is at the edge of the "
                           f"values searched: give model.estimators.{name} a grid beyond it")
    used = cv.get("blocked_cv_block_size_deg", job.split.block_size)
    if used != job.split.block_size:
        caveats.append(f"blocks of split.block_size={job.split.block_size:g} degrees were too few for "
                       f"{job.model.cv_folds} blocked folds; the blocked CV used blocks of {used:g} degrees")
    for name in ("blocked", "cell"):
        if f"{name}_cv_auc_unavailable" in cv:
            caveats.append(f"no {name} cross-validation: {cv[f'{name}_cv_auc_unavailable']}")
    fewest = min(tested["n_test_asm"], tested["n_test_not_asm"])
    if fewest < MIN_TEST_LABELS_PER_CLASS:
        caveats.append(f"the test set holds only {fewest} label(s) of one class: its ROC AUC and interval "
                       "say little; more labels, or a larger split.test_size, are needed")
    pooled, per_fold = oof_auc, selected.cv_auc
    if pooled < per_fold - POOLED_AUC_SHORTFALL:
        at = f"alpha {ridge.best_alpha_:g}" if selected.name == "ridge" else f"{selected.name} {selected.best_params}"
        remedy = "model.alphas" if selected.name == "ridge" else "parameters in its model.estimators grid"
        caveats.append(f"pooled, the out-of-fold scores the calibration is fitted on rank the training "
                       f"labels with AUC {pooled:.3f}, against {per_fold:.3f} within each fold: the folds' "
                       f"models disagree in offset or scale (at {at}), and the "
                       f"calibrated map loses order; try other {remedy}")
    if np.ptp(test_probability) == 0:
        caveats.append(f"the calibrated probability is {test_probability[0]:.3g} for every test label: "
                       "the map holds one value")
    for caveat in caveats:
        print(f"[asm-dask] warning: {caveat}", file=sys.stderr, flush=True)
    return caveats


def _bootstrap_groups(test_rows: pd.DataFrame, block_size: float) -> tuple[str, np.ndarray]:
    """What the bootstrap of the test AUC resamples: blocks of nearby cells, whose labels
    are not independent of each other, or whole cells where the test set spans too few
    blocks for a bootstrap to mean anything."""
    blocks = block_groups(test_rows["cell_lat"].to_numpy(), test_rows["cell_lon"].to_numpy(), block_size)
    if len(np.unique(blocks)) >= MIN_BOOTSTRAP_BLOCKS:
        return "block", blocks
    return "cell", test_rows["cell_id"].to_numpy()


def _other_folds(grouping: str, y: np.ndarray, rows: pd.DataFrame,
                 job: Job) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Folds of the grouping that did not choose alpha, and the block size they used."""
    def folds(groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return cv_folds(y, groups, job.model.cv_folds, job.labels.path, job.split.seed)

    if grouping == "cell":
        return folds(rows["cell_id"].to_numpy()), job.split.block_size
    lat, lon = rows["cell_lat"].to_numpy(), rows["cell_lon"].to_numpy()
    size = job.split.block_size
    while True:
        try:
            return folds(block_groups(lat, lon, size)), size
        except InputError:
            if size / 2 < MIN_BLOCK_SIZE:
                raise
            size /= 2


def _name(grouping: str) -> str:
    return "blocked" if grouping == "block" else "cell"


def _curves(cv: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    curves = {}
    for grouping in ("cell", "block"):
        name = _name(grouping)
        if f"cv_auc_{name}_by_alpha" in cv:
            mean, sd = cv[f"cv_auc_{name}_by_alpha"], cv[f"cv_auc_sd_{name}_by_alpha"]
            curves[grouping] = (np.array([float(a) for a in mean]), np.array(list(mean.values())),
                                np.array(list(sd.values())))
    return curves


def _labelled_cells(rows: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> pd.DataFrame:
    table = rows.drop(columns=["partition", "row"]).copy()
    table["split"] = ""
    table.iloc[train, table.columns.get_loc("split")] = "train"
    table.iloc[test, table.columns.get_loc("split")] = "test"
    return table


def _label_count_table(labels: Labels, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> pd.DataFrame:
    kept = labels.points["label"].to_numpy()
    steps = {"kept by filters": kept, "joined to a cell": y, "train": y[train], "test": y[test]}
    return pd.DataFrame({name: [int((v == 0).sum()), int((v == 1).sum())] for name, v in steps.items()},
                        index=[0, 1]).T


def predict_and_record(table: FeatureTable, model: Model, manifest: RunManifest, client: Client,
                       timings: dict[str, float]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predict every partition of ``table`` not already written for ``manifest``'s run key
    and ``model``, recording each as it lands; return the grid (``lat``, ``lon``,
    ``probability`` of every predicted cell) and the counts for ``metrics.json``."""
    predictions_dir = storage.join(manifest.output, "predictions")
    done = manifest.resume(predictions_dir, model_hash(model), partition_file)
    if done:
        print(f"[asm-dask] resuming: {len(done)} of {len(table.partitions)} prediction partitions "
              "already written", file=sys.stderr, flush=True)
    with _stage(timings, "predict"):
        predict_cells(table, model, predictions_dir, done, client, on_written=manifest.mark_written)
    counts = manifest.counts()
    if counts["n_cells"] == 0:  # only when applying a model: a run's labelled cells are complete
        storage.remove(predictions_dir)
        storage.remove(manifest.path)
        first = table.partitions[0]
        sample = gather_rows(table, np.zeros(first.n_rows, dtype=int), np.arange(first.n_rows), client)
        raise InputError(f"{table.source['path']}: no cell has complete features: each of its "
                         f"{counts['n_dropped_nonfinite']:,} rows holds a NaN, infinite or missing value; "
                         f"{nonfinite_columns(table.feature_names, sample)}")
    grid = read_prediction_grid(predictions_dir)
    if len(grid) != counts["n_cells"] or counts["n_cells"] + counts["n_dropped_nonfinite"] != table.n_rows:
        raise RuntimeError(f"{predictions_dir}: {len(grid)} predicted cells, expected {counts['n_cells']} "
                           f"of {table.n_rows}")
    return grid, {"n_cells": counts["n_cells"],
                  "n_cells_dropped_nonfinite": table.n_dropped_on_ingest + counts["n_dropped_nonfinite"],
                  "mean_probability": float(grid["probability"].mean())}


@contextlib.contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    """Say on stderr which stage runs, and time it into ``timings``."""
    print(f"[asm-dask] {name}...", file=sys.stderr, flush=True)
    with timed(timings, name):
        yield
