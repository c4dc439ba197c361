"""Apply a finished run's model to other features: a neighbouring country, another year.

The same streamed predictions as a run (partitioned GeoParquet, resumable, out of core),
its maps (COG, hotspots, ``map.html``), and a ``model_card.json`` that says where the
model came from and what it scored where it was trained. There are no labels here, so
no metrics beyond counts: the training metrics are the model's, measured where its
labels were, and a new place can differ.

Before any feature is read the file's schema must match the model's: the same feature
names after ordering (so the same number), and cells on the model's grid.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import storage
from ..config import FeaturesConfig, JoinedFeatures
from ..config.problems import listed
from ..errors import InputError
from ..model.classifier import CalibratedClassifier
from ..model.persistence import load_model
from ..read.csv_chunks import iter_csv_chunks
from ..read.features import FeatureLayout, chunk_sizes, detect_layout, filters_of, making_of, read_chunk
from ..read.grid import cells_apart, grid_spacing
from ..read.sources import open_sources
from ..read.table import FeatureTable
from ..records.fingerprint import fingerprint, versions
from ..records.lock import OutputLock
from ..records.manifest import describe_cluster
from ..records.outputs import check_apart, check_output_kind, remove_stale_outputs, store_root
from .mapping import predict_and_map
from .metrics import PredictionMetrics, write_metrics

#: a prediction's map shows no labels, and measures its hotspots against none
NO_LABELS = pd.DataFrame({"lat": [], "lon": [], "label": []})
#: what the model card repeats of the training run's metrics
TRAINING_METRICS = ("test_auc_calibrated", "test_auc_ci95", "test_auc_uncalibrated", "brier_test",
                    "cell_cv_auc", "blocked_cv_auc", "best_alpha", "calibration", "n_train", "n_test",
                    "n_labels_joined", "n_cells", "mean_probability", "selected_estimator", "model_comparison",
                    "warnings")


@dataclass(frozen=True)
class TrainedRun:
    """A finished run's model and what it recorded about itself."""

    folder: str
    model: CalibratedClassifier
    manifest: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def cell_size(self) -> float:
        return float(self.manifest["settings"]["features"]["cell_size"])

    @property
    def sources(self) -> list[tuple[str | None, tuple[str, ...]]]:
        """The feature sources the model was trained on, in order: each one's name (None
        for a run of one table) and its columns as its file names them."""
        names = tuple(self.model.feature_names_in_)
        if not self.manifest["inputs"].get("features_joined"):
            return [(None, names)]
        sources: dict[str, list[str]] = {}
        for name in names:  # a source's name holds no '.': its columns are '<name>.<column>'
            source, column = name.split(".", 1)
            sources.setdefault(source, []).append(column)
        return [(source, tuple(columns)) for source, columns in sources.items()]

    def trained_on(self) -> list[TrainedSource]:
        """Each source's table the model was trained on, and how its features were made."""
        inputs = self.manifest["inputs"]
        return [TrainedSource(inputs["features"], inputs.get("features_filters"), inputs.get("features_made"))] + \
            [TrainedSource(j["path"], j.get("filters"), j.get("made")) for j in inputs.get("features_joined", ())]

    def features_config(self, features: tuple[str, ...]) -> FeaturesConfig:
        """How to read ``features`` (one file per source) as the model's feature table."""
        names = [name for name, _ in self.sources]
        if len(features) == 1:
            return FeaturesConfig(path=features[0], cell_size=self.cell_size)
        return FeaturesConfig(path=features[0], cell_size=self.cell_size, name=names[0],
                              join=tuple(JoinedFeatures(path=path, name=name)
                                         for path, name in zip(features[1:], names[1:])))


@dataclass(frozen=True)
class TrainedSource:
    """A table a model was trained on: its path, and, if ``asm-dask featurize`` made it,
    its filters' fingerprint and how it was made (:func:`~asm_dask.read.features.making_of`)."""

    path: str
    filters: str | None
    made: dict[str, Any] | None


@dataclass(frozen=True)
class Prediction:
    """``run``'s model to apply to ``features`` into ``output``, checked by :func:`plan_prediction`."""

    run: TrainedRun
    features: tuple[str, ...]  #: one file per source of the run
    output: str


@dataclass(frozen=True)
class PredictResult:
    output: str
    metrics: PredictionMetrics
    model_card: dict[str, Any]


def load_run(folder: str) -> TrainedRun:
    """The model of the finished run in ``folder``; :class:`InputError` if there is none."""
    manifest_file = storage.join(folder, "manifest.json")
    manifest = storage.read_json(manifest_file)
    if manifest is None:
        raise InputError(f"{folder}: no asm-dask run here (no readable manifest.json)")
    if not isinstance(manifest, dict):
        raise InputError(f"{manifest_file}: not a manifest of asm-dask")
    if manifest.get("command") == "run year":
        raise InputError(f"{folder}: the map of {manifest.get('year')} of the run in {manifest.get('model_from')}; "
                         "give the run's folder, which holds the model")
    if manifest.get("command", "run") != "run":
        raise InputError(f"{folder}: holds the output of asm-dask {manifest.get('command')}, not of a run")
    if manifest.get("status") != "complete":
        raise InputError(f"{folder}: the run is not finished (status {manifest.get('status')!r}); "
                         "run it again to complete it")
    # what the prediction and its model card read of the run
    missing = [key for key in ("run_key", "model_hash", "inputs", "versions") if key not in manifest]
    try:
        cell_size = float(manifest["settings"]["features"]["cell_size"])
        float(manifest["settings"]["report"]["hotspot_threshold"])
    except (KeyError, TypeError, ValueError):
        missing.append("settings")
    if missing:
        raise InputError(f"{manifest_file}: not a complete manifest of an asm-dask run (no {', '.join(missing)})")
    metrics = storage.read_json(storage.join(folder, "metrics.json"))
    model = load_model(folder, cell_size=cell_size)
    model_file = storage.join(folder, "model.json")
    if not isinstance(metrics, dict):
        raise InputError(f"{storage.join(folder, 'metrics.json')}: missing, not JSON, or not a run's metrics")
    selected = metrics.get("selected_estimator", "ridge")
    if model.name != selected:
        raise InputError(f"{model_file}: holds a {model.name} model; the run selected {selected} (metrics.json)")
    if model.fingerprint_ != manifest.get("model_hash"):
        raise InputError(f"{model_file}: not the model this run predicted with "
                         "(its hash differs from manifest.json's)")
    return TrainedRun(folder, model, manifest, metrics)


def plan_prediction(run: TrainedRun, features: tuple[str, ...], output: str) -> Prediction:
    """A prediction whose output folder and features are checked, before any work: the
    output is not the run's folder or inside it, and ``features`` (a file for each source
    the model was trained on, in the run's order) hold the model's features on the
    model's grid; a one-line :class:`InputError` if not."""
    _check_output(run.folder, output)
    sources = run.sources
    if len(features) != len(sources):
        names = ", ".join(str(name) for name, _ in sources)
        raise InputError(f"{run.folder}: the model was trained on {len(sources)} feature "
                         f"source{'s' if len(sources) > 1 else ''}{f' ({names})' if sources[0][0] else ''}; "
                         f"{len(features)} FEATURES file{'s were' if len(features) > 1 else ' was'} given"
                         + ("; give one for each, in this order" if len(sources) > 1 else ""))
    inputs = {"RUN_DIR": run.folder}
    for i, path in enumerate(features):
        key = "FEATURES" if len(features) == 1 else f"FEATURES ({sources[i][0]})"
        inputs[key] = path
        if not storage.is_url(path):
            inputs[f"the feature store beside {key}"] = store_root(FeaturesConfig(path=path), output)
    check_apart(inputs, output, "--out")
    manifest = storage.join(run.folder, "manifest.json")
    for path, (name, columns), trained in zip(features, sources, run.trained_on()):
        layout = detect_layout(path)  # the schema and the first chunk's coordinates only
        check_feature_names(columns, layout, name)
        check_grid(layout, run.cell_size)
        check_filters(path, trained.filters, trained.path, manifest)
        check_making(path, trained.made, trained.path, manifest)
    return Prediction(run, tuple(features), output)


def _check_output(run_folder: str, output: str) -> None:
    """The output of a prediction with the run in ``run_folder`` is neither that folder
    nor inside it, and holds no run."""
    run, out = (storage.normalized(path) for path in (run_folder, output))
    if out == run or out.startswith(run.rstrip("/") + "/"):
        raise InputError(f"{output}: is {'the run folder' if out == run else 'inside the run folder'} "
                         f"{run_folder}; predictions of other features go to a folder of their own (--out)")
    check_output_kind(output, "predict")


def check_filters(features: str, trained: str | None, trained_on: str, manifest: str) -> None:
    """Features made with other random convolutional filters than those of the table the
    model was trained on (``trained``, of ``trained_on``, as ``manifest`` says) are other
    features, whatever their names: refused."""
    given = filters_of(features)
    if trained != given:
        made = f"with the filters {given}" if given else "without asm-dask featurize's filters"
        were = f"with the filters {trained}" if trained else "without asm-dask featurize's filters"
        raise InputError(f"{features}: made {made}; the model was trained on features made {were} "
                         f"({manifest}): other filters make other features"
                         + (f"; featurize with --filters {trained_on}" if trained else ""))


def check_making(features: str, trained: dict[str, Any] | None, trained_on: str, manifest: str) -> None:
    """Features that ``asm-dask featurize`` made otherwise (another method, other bands or
    scaling) than the table the model was trained on are other features: refused. A
    table made elsewhere carries no description: nothing to compare."""
    given = making_of(features)
    if trained is None or given is None or given == trained:
        return
    differ = [key for key in trained if trained[key] != given.get(key) and key != "filters"]
    if differ:
        shown = "; ".join(f"{key} {given.get(key)} where the model's had {trained[key]}" for key in differ)
        raise InputError(f"{features}: made by asm-dask featurize otherwise than {trained_on}, the table the model "
                         f"was trained on ({manifest}): {shown}")


def predict_with_run(plan: Prediction, client: Any, hotspot_threshold: float | None = None) -> PredictResult:
    """Predict every cell of ``plan.features`` with its run's model into ``plan.output``."""
    run, features, output = plan.run, plan.features, plan.output
    with OutputLock(output, "predict"):
        timings: dict[str, float] = {}
        report_timings: dict[str, float] = {}
        table = open_sources(run.features_config(features), output, client)
        threshold = hotspot_threshold if hotspot_threshold is not None else \
            run.manifest["settings"]["report"]["hotspot_threshold"]
        key = _predict_key(run, table)
        remove_stale_outputs(output, (), key)
        mapped = predict_and_map(output, table, run.model, key, _describe(run, table, client),
                                 client, hotspot_threshold=threshold, labels=NO_LABELS, boundaries=None,
                                 timings=timings, report_timings=report_timings)
        metrics = PredictionMetrics(
            **mapped.counts.as_dict(), n_features=table.n_features, cell_size=table.cell_size,
            features_read="in place" if table.kind == "file" else "feature store", warnings=list(table.notes))
        write_metrics(storage.join(output, "metrics.json"), metrics)
        card = model_card(run, table, metrics)
        storage.write_text(storage.join(output, "model_card.json"), json.dumps(card, indent=1, default=str))
        mapped.manifest.finish(timings_s=timings, report_timings_s=report_timings)
    return PredictResult(output, metrics, card)


def check_feature_names(expected: tuple[str, ...], layout: FeatureLayout, source: str | None = None) -> None:
    """The file's feature columns, in order, are the model's (those of its ``source``,
    where it was trained on several): one line naming the difference."""
    found = layout.feature_columns
    features = layout.path + (f" (given for the model's source {source}: FEATURES go in the run's order)"
                              if source else "")
    if found == tuple(expected):
        return
    if len(found) != len(expected):
        kept, known = set(found), set(expected)
        differ = "; ".join(f"{what} {listed(names)}" for what, names in (
            ("missing", [name for name in expected if name not in kept]),
            ("not the model's", [name for name in found if name not in known])) if names)
        raise InputError(f"{features}: the model expects {len(expected)} features {_span(expected)}; "
                         f"the file has {len(found)} ({_span(found)}): {differ}")
    position = next(i for i, (a, b) in enumerate(zip(expected, found)) if a != b)
    raise InputError(f"{features}: the model expects features {_span(expected)}; the file has "
                     f"{_span(found)} (feature {position + 1} is {found[position]!r}, expected "
                     f"{expected[position]!r})")


def _span(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}" if names else "none"


def check_grid(layout: FeatureLayout, cell_size: float) -> None:
    """The file's cells are ``cell_size`` apart (or a whole multiple, where cells are
    missing), as the model's were: features of other squares describe other things.
    Judged on the file's first chunk, before anything else is read."""
    if layout.format == "csv":
        chunk = next(iter_csv_chunks(layout), None)
    else:
        chunk = read_chunk(layout, 0, 0, features=()) if chunk_sizes(layout) else None
    spacing = None if chunk is None else grid_spacing(chunk.lat, chunk.lon)
    if spacing is None:
        return
    if cells_apart(spacing.degrees, cell_size) is None:
        raise InputError(f"{layout.path}: cell centroids are {spacing.degrees:g} degrees apart ({spacing.where()}); "
                         f"the model was trained on cells of {cell_size:g} degrees")


def model_card(run: TrainedRun, table: FeatureTable, metrics: PredictionMetrics) -> dict[str, Any]:
    """Where the model came from, what it scored where it was trained, what it was applied to."""
    inputs = run.manifest["inputs"]
    return {
        "model": {"from_run": run.folder, "run_key": run.manifest["run_key"],
                  "model_hash": run.manifest["model_hash"], "estimator": run.model.name,
                  "params": run.model.best_params_, "calibration": run.model.calibrator_.method,
                  "n_features": run.model.n_features_in_,
                  "feature_names": f"{_span(tuple(run.model.feature_names_in_))}", "cell_size": run.cell_size,
                  "versions": run.manifest["versions"]},
        "trained_on": {"labels": inputs["labels"], "features": inputs["features"],
                       "features_fingerprint": inputs["features_fingerprint"],
                       **({"features_joined": inputs["features_joined"]} if "features_joined" in inputs else {}),
                       "settings": {k: run.manifest["settings"][k] for k in ("labels", "split", "model")}},
        "training_metrics": {k: run.metrics[k] for k in TRAINING_METRICS if k in run.metrics},
        "applied_to": {"features": table.source["path"], "features_fingerprint": table.source["ukey"],
                       **_joined(table),
                       "format": table.source["format"], "n_cells": metrics.n_cells,
                       "n_cells_dropped_nonfinite": metrics.n_cells_dropped_nonfinite,
                       "mean_probability": metrics.mean_probability,
                       "mean_probability_where_trained": run.metrics.get("mean_probability")},
        "caveat": "The training metrics were measured where the training labels are. Here there are no "
                  "labels: features from another place or year can differ from the training features "
                  "(other land cover, imagery, season), and nothing here measures how well the model "
                  "does on them. Check a sample of hotspots in the field before relying on the map.",
        "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _predict_key(run: TrainedRun, table: FeatureTable) -> str:
    return fingerprint({"model": run.manifest["model_hash"], "features": table.key, "versions": versions()})


def _describe(run: TrainedRun, table: FeatureTable, client: Any) -> dict[str, Any]:
    return {"command": "predict", "model_from": run.folder,
            "inputs": {"features": table.source["path"], "features_fingerprint": table.source["ukey"],
                       "features_read_from": table.location, **_joined(table)},
            "versions": versions(), "cluster": describe_cluster(client), "n_partitions": len(table.partitions)}


def _joined(table: FeatureTable) -> dict[str, Any]:
    """The sources joined to the first, as a run's manifest lists them; nothing for one table."""
    if "joined" not in table.source:
        return {}
    return {"features_joined": [{"name": source["name"], "path": source["path"], "fingerprint": source["ukey"]}
                                for source in table.source["joined"]]}
