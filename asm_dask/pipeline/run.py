"""A run, end to end: read -> join -> fit -> calibrate -> predict -> write and report.

This module only wires the stages together and decides what lands in the output folder.
Every input is read and checked, and the model fitted, before the output folder is
touched: a bad input leaves no half-written output behind.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .. import storage
from ..config import EstimateConfig, Job
from ..errors import InputError, warn
from ..estimation.area import AreaEstimates
from ..estimation.next_labels import next_labels
from ..model.persistence import save_model
from ..model.split import split_groups
from ..read.features import filters_of, making_of
from ..read.labels import Labels, read_labels
from ..read.sources import open_sources
from ..read.table import FeatureTable, gather_rows, nonfinite_columns, start_reading_columns
from ..records.fingerprint import run_key, versions
from ..records.lock import OutputLock
from ..records.manifest import describe_cluster
from ..records.outputs import remove_stale_outputs
from ..report.build import HeldOut, Maps, ReportInputs, draw_model_figures, write_districts, write_report
from ..report.districts import read_boundaries
from ..report.field_sample import write_next_labels
from ..report.importance import N_FEATURE_MAPS
from ..report.years import YearsReport
from ..runtime.memory import release_freed_memory
from ..runtime.progress import stage, timed
from ..spatial.join import JoinedLabels, join_labels
from .estimates import check_sample, estimate_from_sample
from .fit import CrossValidation, FittedModel, fit_labelled_cells
from .mapping import predict_and_map
from .metrics import Bootstrap, MapCounts, ReliabilityBin, RunMetrics, SubsetAUC, write_metrics

log = logging.getLogger(__name__)

#: labels on no cell beyond this share of those kept are a caveat, not only a count
MAX_UNMATCHED_SHARE = 0.1


@dataclass(frozen=True)
class RunResult:
    output: str
    metrics: RunMetrics
    timings: dict[str, float]


def run_job(job: Job, client: Any) -> RunResult:
    """Run ``job`` on ``client``'s cluster; return where the outputs are and the metrics.

    The output folder is locked for the run (:class:`~asm_dask.records.lock.OutputLock`):
    a second run into it stops at once with an :class:`InputError` naming the first.
    A job of a table per year is :func:`asm_dask.pipeline.years.run_years`'s.
    """
    if job.years:
        from .years import run_years  # it builds on this module's stages

        return run_years(job, client)
    with OutputLock(job.output, "run"), client.as_current():
        timings: dict[str, float] = {}
        with stage(timings, "read labels"):
            labels = read_labels(job.labels, job.estimate.sample_types)
        with stage(timings, "open features"):
            table = open_sources(job.features, job.output, client)
            check_sample(labels, table, job.estimate.sample_types, EstimateConfig().sample_types, job.labels.path)
            boundaries = None if job.report.boundaries is None else \
                read_boundaries(job.report.boundaries, [b for b in table.bounds if b is not None])
        with stage(timings, "join"):
            joined, X = labelled_rows(labels, table, job, client)
            unmatched_notes = join_notes(labels, joined, job)
            rows = joined.rows
            y = rows["label"].to_numpy().astype(int)
            groups = split_groups(rows["cell_id"].to_numpy(), rows["cell_lat"].to_numpy(),
                                  rows["cell_lon"].to_numpy(), job.split)
        fitted = fit_labelled_cells(X, y, groups, rows, table.feature_names, job, timings, client)
        del X  # the labelled rows are not needed past here

        # Everything is checked and fitted: from here on the output folder is written.
        out, report_timings, key = job.output, {}, run_key(job, table.key)
        remove_stale_outputs(out, job.years, key)
        save_model(fitted.model, out, table.cell_size)
        label_points = pd.DataFrame(labels.points.drop(columns="geometry"))
        top_features = start_reading_columns(table, top_feature_positions(table, fitted), client)
        with ThreadPoolExecutor(1, thread_name_prefix="asm-dask-figures") as background:
            model_figures = background.submit(draw_fit_figures, out, job, labels, joined, fitted, report_timings)
            mapped = predict_and_map(out, table, fitted.model, key,
                                     describe_run(job, table, describe_cluster(client)), client,
                                     hotspot_threshold=job.report.hotspot_threshold, labels=label_points,
                                     boundaries=boundaries, timings=timings, report_timings=report_timings)
            model_figures.result()  # its error, if any, is the run's
        with timed(timings, "report"):
            estimated = estimate_from_sample(labels, rows, table, mapped.grid, rows["cell_id"].to_numpy()[fitted.train],
                                             job.estimate.sample_types, job.report.hotspot_threshold, mapped.maps)
            maps = mapped.maps
            if estimated.districts is not None:
                write_districts(out, estimated.districts)
                maps = dataclasses.replace(maps, districts=estimated.districts)
            metrics = run_metrics(labels, joined, table, fitted, job, mapped.counts, unmatched_notes + estimated.notes,
                                  estimated.country)
            write_run_report(out, job, labels, joined, fitted, table, metrics, maps, top_features(), report_timings,
                             sample=estimated.cells, features=job.features.path, model_figures=model_figures.result())
            if job.report.next_labels:
                write_next_labels(out, next_labels(mapped.grid, labels.points[["lat", "lon"]], job.report.next_labels,
                                                   job.report.hotspot_threshold, table.cell_size))
            write_metrics(storage.join(out, "metrics.json"), metrics)
        mapped.manifest.finish(timings_s=timings, report_timings_s=report_timings)
    return RunResult(output=out, metrics=metrics, timings=timings)


def write_run_report(out: str, job: Job, labels: Labels, joined: JoinedLabels, fitted: FittedModel,
                     table: FeatureTable, metrics: RunMetrics, maps: Maps, top_features: pd.DataFrame,
                     timings: dict[str, float], *, sample: pd.DataFrame | None, features: str,
                     years: YearsReport | None = None, model_figures: dict[str, str] | None = None) -> None:
    """What a run writes besides its maps: where each label went (``labelled_cells.csv``,
    ``unmatched_labels.csv``) and the report; ``top_features`` are the columns of
    :func:`top_feature_positions` read for every cell, ``features`` is how the report
    names the features, ``model_figures`` those :func:`draw_fit_figures` drew (else they
    are drawn here)."""
    write_csv(storage.join(out, "unmatched_labels.csv"), joined.unmatched)
    write_csv(storage.join(out, "labelled_cells.csv"), labelled_cells(joined.rows, fitted))
    held_out, cv_curves, label_counts = _model_figure_inputs(labels, joined, fitted)
    write_report(out, ReportInputs(
        metrics=metrics.as_dict(), cell_size=table.cell_size, held_out=held_out, cv_curves=cv_curves,
        label_counts=label_counts, importance=fitted.importance,
        top_features=top_features, hotspot_threshold=job.report.hotspot_threshold,
        sample=sample, labels=pd.DataFrame(labels.points.drop(columns="geometry")), years=years,
        model_figures=model_figures,
        inputs={"labels": job.labels.path, "features": features,
                "boundaries": job.report.boundaries.path if job.report.boundaries else ""}), maps, timings)


def top_feature_positions(table: FeatureTable, fitted: FittedModel) -> list[int]:
    """Where the features the report maps, the most important, sit in ``table``."""
    return [table.feature_names.index(name) for name in fitted.importance["feature"].head(N_FEATURE_MAPS)]


def draw_fit_figures(out: str, job: Job, labels: Labels, joined: JoinedLabels, fitted: FittedModel,
                     timings: dict[str, float]) -> dict[str, str]:
    """The figures of the fitted model (:func:`~asm_dask.report.build.draw_model_figures`),
    drawn into ``out``'s ``figures/``, which need no map: a run draws them on a thread of
    its own while the cells are predicted, the process otherwise waiting on its workers."""
    folder = storage.join(out, "figures")
    storage.make_folder(folder)
    fit = {**fitted.tested.as_dict(), "best_alpha": fitted.ridge.best_alpha_, "alpha_selected_by": job.split.group_by,
           "blocked_cv_block_size_deg": _blocks_used(fitted, job), "block_size_deg": job.split.block_size}
    with timed(timings, "model figures, while predicting"):
        return draw_model_figures(folder, *_model_figure_inputs(labels, joined, fitted), fit)


def _model_figure_inputs(labels: Labels, joined: JoinedLabels, fitted: FittedModel) -> tuple[
        HeldOut, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], pd.DataFrame]:
    """What the model's figures draw: the test set, the CV curves, the label counts."""
    y = joined.rows["label"].to_numpy().astype(int)
    return (HeldOut(y[fitted.test], fitted.test_scores, fitted.test_probability, fitted.tested.reliability),
            {grouping: cv.curve() for grouping, cv in fitted.cross_validation.items()},
            label_count_table(labels, y, fitted))


def _blocks_used(fitted: FittedModel, job: Job) -> float | None:
    """The blocks' side of the blocked CV, where cells chose alpha; None otherwise."""
    if "block" in fitted.cross_validation and job.split.group_by == "cell":
        return fitted.cross_validation["block"].block_size
    return None


def labelled_rows(labels: Labels, table: FeatureTable, job: Job, client: Any) -> tuple[JoinedLabels, np.ndarray]:
    """The labels joined to their cells, and those cells' features; labels whose cell has
    a feature that is not finite join no cell, as with the store, which leaves such cells out."""
    joined = join_labels(labels, table, client)
    X = gather_rows(table, joined.rows["partition"].to_numpy(), joined.rows["row"].to_numpy(), client)
    finite = np.isfinite(X).all(axis=1)
    if len(X) and not finite.any():
        raise InputError(f"{job.features.path}: no labelled cell has complete features: "
                         f"{nonfinite_columns(table.feature_names, X)}")
    if not finite.all():
        label_columns = list(joined.unmatched.columns)
        unmatched = pd.concat([joined.unmatched, joined.rows.loc[~finite, label_columns]])
        joined = JoinedLabels(rows=joined.rows[finite].reset_index(drop=True),
                              unmatched=unmatched.sort_values("label_row").reset_index(drop=True),
                              n_on_shared_edges=joined.n_on_shared_edges, n_partitions_read=joined.n_partitions_read)
        X = X[finite]
    if joined.rows.empty:
        raise InputError(f"{job.labels.path}: none of the {labels.n_kept} labels falls on a cell "
                         f"of {job.features.path}; check that both use longitude/latitude degrees")
    release_freed_memory()  # what reading whole column groups for a few rows left
    return joined, X


def run_metrics(labels: Labels, joined: JoinedLabels, table: FeatureTable, fitted: FittedModel, job: Job,
                cells: MapCounts, join_notes: list[str], estimates: AreaEstimates | None = None) -> RunMetrics:
    """``metrics.json`` of a run, from what each stage made."""
    ridge = fitted.ridge
    chosen = fitted.cross_validation[job.split.group_by]
    cell = _cv_summary(fitted.cross_validation.get("cell"))
    blocked = _cv_summary(fitted.cross_validation.get("block"))
    blocks_used = _blocks_used(fitted, job)
    return RunMetrics(
        n_labels_read=labels.n_read, n_labels_removed_by_filter=labels.removed, n_labels_kept=labels.n_kept,
        n_labels_joined=len(joined.rows), n_labels_unmatched=len(joined.unmatched),
        n_labels_on_shared_edges=joined.n_on_shared_edges, n_features=table.n_features, cell_size=table.cell_size,
        features_read="in place" if table.kind == "file" else "feature store",
        n_feature_partitions=len(table.partitions), n_feature_partitions_joined=joined.n_partitions_read,
        n_train=len(fitted.train), n_test=len(fitted.test), n_train_groups=fitted.n_train_groups,
        n_test_groups=fitted.n_test_groups, split_group_by=job.split.group_by, block_size_deg=job.split.block_size,
        best_alpha=ridge.best_alpha_, alpha_grid="auto" if job.model.alphas == "auto" else "given",
        alphas_searched=ridge.alphas_.tolist(), n_grid_extensions=ridge.n_grid_extensions_,
        alpha_at_grid_edge=ridge.alpha_at_grid_edge_, solver=ridge.solver_, standardize=ridge.standardize_,
        standardize_setting=job.model.standardize, cv_auc_by_scaling=ridge.cv_auc_by_scaling_,
        calibration=job.model.calibration, selected_estimator=fitted.selected.name,
        selected_by=fitted.selected_by, model_comparison=fitted.comparison,
        feature_importance_of=fitted.explained.name, alpha_selected_by=job.split.group_by,
        blocked_cv_block_size_deg=blocks_used,
        cell_cv_auc=cell.auc, cell_cv_auc_by_fold=cell.by_fold, cv_auc_cell_by_alpha=cell.by_alpha,
        cv_auc_sd_cell_by_alpha=cell.sd_by_alpha, cell_cv_auc_unavailable=fitted.unavailable.get("cell"),
        blocked_cv_auc=blocked.auc, blocked_cv_auc_by_fold=blocked.by_fold, cv_auc_blocked_by_alpha=blocked.by_alpha,
        cv_auc_sd_blocked_by_alpha=blocked.sd_by_alpha, blocked_cv_auc_unavailable=fitted.unavailable.get("block"),
        cv_auc={str(a): float(m) for a, m in zip(chosen.alphas, chosen.auc.mean(axis=1))},
        cv_auc_by_fold={str(a): [float(v) for v in row] for a, row in zip(ridge.alphas_, ridge.cv_auc_)},
        oof_auc_calibration_set=fitted.oof_auc,
        **_held_out(fitted),
        estimates=None if estimates is None else estimates.as_dict(),
        warnings=list(table.notes) + join_notes + fitted.caveats,
        **cells.as_dict())


def join_notes(labels: Labels, joined: JoinedLabels, job: Job) -> list[str]:
    """A caveat when many labels fall on no cell: the features may not cover the labels,
    or features.cell_size may be smaller than the grid's cells."""
    unmatched = len(joined.unmatched)
    if unmatched <= MAX_UNMATCHED_SHARE * labels.n_kept:
        return []
    if job.years:
        tables = f"each year's feature table ({', '.join(str(year) for year in job.years)})"
    elif job.features.join:
        tables = f"each of the feature tables ({', '.join(name for name, _ in job.features.tables())})"
    else:
        tables = job.features.path
    note = (f"{unmatched} of the {labels.n_kept} labels kept ({unmatched / labels.n_kept:.0%}) fall on no cell "
            f"with features (unmatched_labels.csv): check that {tables} covers the labels, and "
            f"features.cell_size ({job.features.cell_size:g}) against its grid")
    warn(note)
    return [note]


class _CVSummary(NamedTuple):
    """A cross-validation as metrics.json holds it; all ``None`` where it was not made."""

    auc: float | None = None
    by_fold: list[float] | None = None
    by_alpha: dict[str, float] | None = None
    sd_by_alpha: dict[str, float] | None = None


def _cv_summary(found: CrossValidation | None) -> _CVSummary:
    if found is None:
        return _CVSummary()
    alphas, mean, sd = found.curve()
    return _CVSummary(float(found.at_best.mean()), [float(v) for v in found.at_best],
                      {str(a): float(m) for a, m in zip(alphas, mean)}, {str(a): float(v) for a, v in zip(alphas, sd)})


def _held_out(fitted: FittedModel) -> dict[str, Any]:
    """The test set's measures, as :class:`RunMetrics` types them."""
    tested = fitted.tested.as_dict()
    tested["bootstrap"] = Bootstrap(**tested["bootstrap"])
    tested["reliability_test"] = [ReliabilityBin(**row) for row in tested["reliability_test"]]
    if tested["test_auc_by_sample_type"] is not None:
        tested["test_auc_by_sample_type"] = {k: SubsetAUC(**v) for k, v in tested["test_auc_by_sample_type"].items()}
    return tested


def describe_run(job: Job, table: FeatureTable, cluster: dict[str, Any]) -> dict[str, Any]:
    """What the manifest says of a run besides its partitions: inputs, settings (without
    credentials), versions, cluster."""
    settings = job.as_dict()
    settings["storage_options"] = {protocol: sorted(options) for protocol, options
                                   in settings["storage_options"].items()}  # names, never values
    inputs = {"labels": job.labels.path, "features": job.features.path, "features_fingerprint": table.source["ukey"],
              "features_read_from": table.location, "features_filters": filters_of(job.features.path),
              "features_made": making_of(job.features.path)}
    if job.features.join:
        inputs["features_joined"] = [{"name": source["name"], "path": source["path"],
                                      "fingerprint": source["ukey"], "filters": filters_of(source["path"]),
                                      "made": making_of(source["path"])}
                                     for source in table.source["joined"]]
    return {"command": "run", "inputs": inputs,
            "settings": settings, "versions": versions(), "python": platform.python_version(),
            "cluster": cluster, "n_partitions": len(table.partitions)}


def labelled_cells(rows: pd.DataFrame, fitted: FittedModel) -> pd.DataFrame:
    table = rows.drop(columns=["partition", "row"]).copy()
    table["split"] = ""
    table.iloc[fitted.train, table.columns.get_loc("split")] = "train"
    table.iloc[fitted.test, table.columns.get_loc("split")] = "test"
    return table


def label_count_table(labels: Labels, y: np.ndarray, fitted: FittedModel) -> pd.DataFrame:
    kept = labels.points["label"].to_numpy()
    steps = {"kept by filters": kept, "joined to a cell": y, "train": y[fitted.train], "test": y[fitted.test]}
    return pd.DataFrame({name: [int((v == 0).sum()), int((v == 1).sum())] for name, v in steps.items()},
                        index=[0, 1]).T


def write_csv(path: str, frame: pd.DataFrame) -> None:
    with storage.writing(path) as tmp:
        frame.to_csv(tmp, index=False)
