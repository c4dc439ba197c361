"""A run of a feature table per year: one model, a map of every year, and where mining
spread.

read (each label with its year) -> join (each label to its own year's table) -> fit (one
model on the labels of every year; the years of a cell share its group, so they fall on
one side of the split and of every fold) -> calibrate -> predict every year -> compare
the years -> write and report. The model, its metrics and the report are in the output
folder as a run's are; besides them:

* ``years/<year>/``: the year's map as ``asm-dask predict`` writes one (predictions,
  ``probability.tif``, hotspots, ``map.html``, ``metrics.json``, its manifest), each
  resumable on its own;
* ``changes/<from>-<to>/``: consecutive years, and the first to the last
  (:mod:`asm_dask.report.change`);
* ``years.csv`` and, with boundaries, ``district_years.csv``: the expected ASM area of
  each year, with the probability sample's estimates where that year has one.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd

from .. import storage
from ..config import EstimateConfig, Job
from ..errors import InputError, warn
from ..estimation.next_labels import next_labels
from ..model.persistence import save_model
from ..model.split import split_groups
from ..read.features import filters_of, making_of
from ..read.grid import cell_area_km2
from ..read.labels import Labels, read_labels
from ..read.sources import cell_ids_of, open_sources
from ..read.table import FeatureTable, start_reading_columns
from ..records.fingerprint import fingerprint, run_key
from ..records.lock import OutputLock
from ..records.manifest import RunManifest, describe_cluster
from ..records.outputs import remove_stale_outputs
from ..report.build import write_districts
from ..report.change import map_change, write_change
from ..report.districts import read_boundaries
from ..report.field_sample import write_next_labels
from ..report.years import YearsReport
from ..runtime.progress import stage, timed
from ..spatial.join import JoinedLabels
from .estimates import Estimated, check_sample, estimate_from_sample
from .fit import fit_labelled_cells
from .mapping import Mapped, predict_and_map
from .metrics import PredictionMetrics, write_metrics
from .run import (
    RunResult,
    describe_run,
    join_notes,
    labelled_rows,
    run_metrics,
    top_feature_positions,
    write_csv,
    write_run_report,
)

log = logging.getLogger(__name__)


def run_years(job: Job, client: Any) -> RunResult:
    """Run ``job``, of a feature table per year, on ``client``'s cluster."""
    with OutputLock(job.output, "run"), client.as_current():
        timings: dict[str, float] = {}
        with stage(timings, "read labels"):
            labels = read_labels(job.labels, job.estimate.sample_types, job.years)
            by_year = {year: labels.of_year(year) for year in job.years}
        with stage(timings, "open features"):
            tables, coverage_notes = open_years(job, client)
            for year, table in tables.items():
                check_sample(by_year[year], table, job.estimate.sample_types, EstimateConfig().sample_types,
                             job.labels.path)
            last = tables[job.years[-1]]
            boundaries = None if job.report.boundaries is None else \
                read_boundaries(job.report.boundaries, [b for t in tables.values() for b in t.bounds if b is not None])
        with stage(timings, "join"):
            joined, X = join_years(by_year, tables, job, client)
            rows = joined.rows
            y = rows["label"].to_numpy().astype(int)
            # a cell's id is the same in every year: its years share a group
            groups = split_groups(rows["cell_id"].to_numpy(), rows["cell_lat"].to_numpy(),
                                  rows["cell_lon"].to_numpy(), job.split)
        fitted = fit_labelled_cells(X, y, groups, rows, last.feature_names, job, timings, client)
        del X

        out, report_timings = job.output, {}
        key = run_key(job, fingerprint([[year, table.key] for year, table in tables.items()]))
        remove_stale_outputs(out, job.years, key)
        manifest = RunManifest(out, key, describe_years(job, tables, describe_cluster(client)))
        manifest.record_model(fitted.model.fingerprint_)
        save_model(fitted.model, out, last.cell_size)
        trained_cells = rows["cell_id"].to_numpy()[fitted.train]
        top_features = start_reading_columns(last, top_feature_positions(last, fitted), client)
        mapped, estimated = {}, {}
        for year, table in tables.items():
            mapped[year] = map_year(out, year, table, fitted.model, key, client, job, by_year[year], boundaries,
                                    timings)
            with timed(timings, "report"):
                estimated[year] = estimate_from_sample(by_year[year], rows, table, mapped[year].grid, trained_cells,
                                                       job.estimate.sample_types, job.report.hotspot_threshold,
                                                       mapped[year].maps, where=str(year))
                if estimated[year].districts is not None:
                    write_districts(year_folder(out, year), estimated[year].districts)
        with timed(timings, "report"):
            changes = compare_years(out, {year: m.grid for year, m in mapped.items()}, last.cell_size,
                                    job.report.hotspot_threshold)
            series = write_series(out, mapped, estimated, last.cell_size)
            latest = mapped[job.years[-1]]
            notes = coverage_notes + join_notes(labels, joined, job) + \
                [note for e in estimated.values() for note in e.notes]
            metrics = run_metrics(labels, joined, last, fitted, job, latest.counts, notes,
                                  estimated[job.years[-1]].country)
            metrics = dataclasses.replace(metrics, years=_years_metrics(rows, fitted, mapped, estimated, series),
                                          changes=[change.counts for change in changes.values()])
            maps = latest.maps if estimated[job.years[-1]].districts is None else \
                dataclasses.replace(latest.maps, districts=estimated[job.years[-1]].districts)
            years_report = YearsReport(maps={year: m.maps for year, m in mapped.items()}, changes=changes,
                                       series=series)
            write_run_report(out, job, labels, joined, fitted, last, metrics, maps, top_features(), report_timings,
                             sample=estimated[job.years[-1]].cells, years=years_report,
                             features=", ".join(f"{year}: {job.features.years[year].path}" for year in job.years))
            if job.report.next_labels:
                write_next_labels(out, next_labels(latest.grid, labels.points[["lat", "lon"]],
                                                   job.report.next_labels, job.report.hotspot_threshold,
                                                   last.cell_size))
            write_metrics(storage.join(out, "metrics.json"), metrics)
        manifest.finish(timings_s=timings, report_timings_s=report_timings)
    return RunResult(output=out, metrics=metrics, timings=timings)


def describe_years(job: Job, tables: dict[int, FeatureTable], cluster: dict[str, Any]) -> dict[str, Any]:
    """What the manifest says of a run of a table per year: a run's description, whose
    ``inputs`` name the last year's table (a prediction of the model checks its features
    against them), and every year's."""
    description = describe_run(job.of_year(job.years[-1]), tables[job.years[-1]], cluster)
    settings = job.as_dict()
    description["settings"].update(labels=settings["labels"], features=settings["features"])
    description["inputs"]["features_by_year"] = {
        str(year): {"path": table.source["path"], "fingerprint": table.source["ukey"],
                    "filters": filters_of(table.source["path"])} for year, table in tables.items()}
    description["years"] = list(job.years)
    return description


def open_years(job: Job, client: Any) -> tuple[dict[int, FeatureTable], list[str]]:
    """Every year's feature table, checked to be one kind of features on one grid: the same
    columns, made (where ``asm-dask featurize`` made them) the same way with the same
    filters, on cells centred alike, each year's its own file; and the notes of the years
    that lack cells of the others."""
    seen: dict[str, int] = {}
    for year in job.years:
        for _, table in job.features.of_year(year).tables():
            path = storage.normalized(table.path)
            if path in seen:
                raise InputError(f"{table.path}: the table of both {seen[path]} and {year} (features.years): each "
                                 "year is mapped from features of its own imagery")
            seen[path] = year
    tables = {year: open_sources(job.features.of_year(year), job.output, client) for year in job.years}
    (first_year, first), *others = tables.items()
    first_path = first.source["path"]
    for year, table in others:
        path = table.source["path"]
        if table.feature_names != first.feature_names:
            named = "; a joined table's columns are prefixed with its name, its file's name by default: name " \
                    "each year's tables alike (name: mosaiks...)" if "joined" in table.source else ""
            raise InputError(f"{path}: the features of {year} are not those of {first_year} ({first_path}): "
                             f"{_span(table.feature_names)} against {_span(first.feature_names)}; every year's "
                             f"table holds the same features{named}")
        if filters_of(path) != filters_of(first_path):
            raise InputError(f"{path}: made with other random convolutional filters than {first_year}'s table "
                             f"({first_path}): other filters make other features; featurize every year with "
                             f"--filters {first_path}")
        made, first_made = making_of(path), making_of(first_path)
        if made and first_made and made != first_made:
            differ = "; ".join(f"{key} {made.get(key)} where {first_year}'s has {value}"
                               for key, value in first_made.items() if made.get(key) != value)
            raise InputError(f"{path}: made by asm-dask featurize otherwise than {first_year}'s table "
                             f"({first_path}): {differ}")
    ids = {year: np.concatenate(cell_ids_of(table, str(year), client)) for year, table in tables.items()}
    for year, table in others:
        if not np.isin(ids[year], ids[first_year]).any():
            raise InputError(f"{table.source['path']}: none of its {table.n_rows:,} cells is a cell of "
                             f"{first_year}'s table ({first_path}): every year's table is on one grid, of cells "
                             f"of {first.cell_size:g} degrees centred alike")
    every = np.unique(np.concatenate(list(ids.values())))
    notes = []
    for year, table in tables.items():
        missing = len(every) - len(np.unique(ids[year]))
        if missing:
            notes.append(f"features: {year}'s table ({table.source['path']}) lacks {missing:,} of the "
                         f"{len(every):,} cells the years hold together: its map, and its totals in years.csv and "
                         "district_years.csv, cover fewer cells; each change compares the cells both its years hold")
    for note in notes:
        warn(note)
    return tables, notes


def join_years(labels: dict[int, Labels], tables: dict[int, FeatureTable], job: Job,
               client: Any) -> tuple[JoinedLabels, np.ndarray]:
    """Each year's labels joined to that year's table (its rows' ``year``), and the
    labelled cells' features, year after year."""
    parts = []
    for year, table in tables.items():
        if labels[year].n_kept:
            parts.append(labelled_rows(labels[year], table, job.of_year(year), client))
    if not parts:
        raise InputError(f"{job.labels.path}: no label has a year of features.years")
    joined = JoinedLabels(
        rows=pd.concat([part.rows for part, _ in parts], ignore_index=True),
        unmatched=pd.concat([part.unmatched for part, _ in parts]).sort_values("label_row").reset_index(drop=True),
        n_on_shared_edges=sum(part.n_on_shared_edges for part, _ in parts),
        n_partitions_read=sum(part.n_partitions_read for part, _ in parts))
    return joined, np.concatenate([X for _, X in parts])


def year_folder(out: str, year: int) -> str:
    return storage.join(out, "years", str(year))


def map_year(out: str, year: int, table: FeatureTable, model: Any, key: str, client: Any, job: Job,
             labels: Labels, boundaries: Any, timings: dict[str, float]) -> Mapped:
    """``year``'s map in ``years/<year>/``, as a prediction of the run's model writes one;
    its manifest is keyed by the run's key and the year, so each year resumes on its own."""
    folder = year_folder(out, year)
    storage.make_folder(folder)
    report_timings: dict[str, float] = {}
    year_timings: dict[str, float] = {}
    description = {"command": "run year", "year": year, "model_from": out,
                   "inputs": {"features": table.source["path"], "features_fingerprint": table.source["ukey"],
                              "features_read_from": table.location}, "n_partitions": len(table.partitions)}
    mapped = predict_and_map(folder, table, model, fingerprint([key, year]), description, client,
                             hotspot_threshold=job.report.hotspot_threshold,
                             labels=pd.DataFrame(labels.points.drop(columns="geometry")), boundaries=boundaries,
                             timings=year_timings, report_timings=report_timings)
    write_metrics(storage.join(folder, "metrics.json"), PredictionMetrics(
        **mapped.counts.as_dict(), n_features=table.n_features, cell_size=table.cell_size,
        features_read="in place" if table.kind == "file" else "feature store", warnings=list(table.notes)))
    mapped.manifest.finish(timings_s=year_timings, report_timings_s=report_timings)
    for name, seconds in year_timings.items():
        timings[name] = timings.get(name, 0.0) + seconds
    return mapped


def year_pairs(years: list[int]) -> list[tuple[int, int]]:
    """Consecutive years, then the first and the last (where that is not a pair already)."""
    pairs = list(zip(years, years[1:]))
    return pairs + [(years[0], years[-1])] if len(years) > 2 else pairs


def compare_years(out: str, grids: dict[int, pd.DataFrame], cell_size: float, threshold: float) -> dict:
    """The change between the maps of each of :func:`year_pairs`, in ``changes/<from>-<to>/``."""
    changes = {}
    for first, second in year_pairs(list(grids)):
        raster, change = map_change(grids[first], grids[second], cell_size, threshold, (str(first), str(second)))
        write_change(storage.join(out, "changes", f"{first}-{second}"), raster, change)
        changes[(first, second)] = change
    return changes


def write_series(out: str, mapped: dict[int, Mapped], estimated: dict[int, Estimated],
                 cell_size: float) -> dict[str, pd.DataFrame | None]:
    """``years.csv`` (the country) and ``district_years.csv`` (with boundaries): each
    year's expected ASM area (the map's sum), and the sample's design-based and
    prediction-powered estimates with their 95% intervals where that year has a sample."""
    country, districts = [], []
    for year, m in mapped.items():
        area = cell_area_km2(m.grid["lat"].to_numpy(), cell_size)
        expected = m.grid["probability"].to_numpy() * area
        row = {"year": year, "n_cells": len(m.grid), "mean_probability": float(m.grid["probability"].mean()),
               "expected_asm_km2": float(expected.sum()), "n_hotspots": m.maps.counts["n_hotspots"]}
        found = {} if estimated[year].country is None else estimated[year].country.as_dict()["area_km2"]
        for name, short in (("design_based", "design"), ("prediction_powered", "ppi")):
            shown = found.get(name)
            row.update({f"asm_km2_{short}": np.nan if shown is None else shown["estimate"],
                        f"asm_km2_{short}_low": np.nan if shown is None else shown["ci95"][0],
                        f"asm_km2_{short}_high": np.nan if shown is None else shown["ci95"][1]})
        country.append(row)
        if m.maps.districts is None:
            continue
        table = estimated[year].districts if estimated[year].districts is not None else m.maps.districts
        inside = m.maps.cell_district >= 0
        by_district = np.bincount(m.maps.cell_district[inside], weights=expected[inside],
                                  minlength=len(table))
        frame = pd.DataFrame({"name": table["name"], "year": year, "n_cells": table["n_cells"],
                              "mean_probability": table["mean_probability"], "expected_asm_km2": by_district})
        for column in [c for c in table.columns if c.startswith(("asm_km2_design", "asm_km2_ppi"))]:
            frame[column] = table[column].to_numpy()
        districts.append(frame)
    series = {"country": pd.DataFrame(country), "districts": pd.concat(districts, ignore_index=True)
              if districts else None}
    write_csv(storage.join(out, "years.csv"), series["country"])
    if series["districts"] is not None:
        write_csv(storage.join(out, "district_years.csv"), series["districts"])
    return series


def _years_metrics(rows: pd.DataFrame, fitted: Any, mapped: dict[int, Mapped], estimated: dict[int, Estimated],
                   series: dict[str, pd.DataFrame | None]) -> dict[str, Any]:
    """Per year: its labels (joined, train, test), its map's numbers and its estimates."""
    split = np.full(len(rows), "", dtype=object)
    split[fitted.train], split[fitted.test] = "train", "test"
    country = series["country"].set_index("year")
    found = {}
    for year, m in mapped.items():
        in_year = rows["year"].to_numpy() == year
        found[str(year)] = {
            "n_labels_joined": int(in_year.sum()), "n_train": int((split[in_year] == "train").sum()),
            "n_test": int((split[in_year] == "test").sum()), **m.counts.as_dict(),
            "expected_asm_km2": float(country.loc[year, "expected_asm_km2"]),
            "estimates": None if estimated[year].country is None else estimated[year].country.as_dict()}
    return found


def _span(names: tuple[str, ...]) -> str:
    return f"{len(names)} columns {names[0]}..{names[-1]}" if names else "no columns"
