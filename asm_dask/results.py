"""A finished run or prediction, as Python sees it: :class:`Run`.

Everything is read from the output folder (local or on object storage) when first
asked for, so :func:`asm_dask.open_run` is instant and a run made elsewhere, last week,
reads the same as one just made.
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import storage
from .errors import InputError

if TYPE_CHECKING:
    import dask_geopandas
    import geopandas

    from .model.classifier import CalibratedClassifier
    from .pipeline.metrics import PredictionMetrics, RunMetrics

#: the map's height in a notebook, pixels
MAP_HEIGHT = 480


@dataclass(frozen=True)
class RunFiles:
    """Where a run's (or a prediction's) files are; ``None`` for a file it does not have."""

    folder: str
    report: str | None
    map: str
    probability_tif: str
    hotspots_geojson: str
    hotspots_csv: str
    predictions: str
    metrics: str
    manifest: str
    figures: str
    #: the command line's log; a run made from Python keeps none
    log: str | None
    model: str | None
    model_skops: str | None
    model_card: str | None
    feature_importance: str | None
    admin_summary_csv: str | None
    admin_summary_geojson: str | None
    labelled_cells: str | None
    unmatched_labels: str | None
    #: a run of a table per year: ``years.csv``, ``district_years.csv`` and ``changes/``
    years_csv: str | None = None
    district_years_csv: str | None = None
    changes: str | None = None


class Run:
    """A finished run (``asm-dask run``, :func:`asm_dask.run`) or prediction
    (``asm-dask predict``, :func:`asm_dask.predict`) in its output folder.

    Parameters
    ----------
    folder : str
        The output folder, a local path or an fsspec URL.
    metrics : RunMetrics or PredictionMetrics, optional
        What it measured, if known already; else read from ``metrics.json`` when asked for.
    storage_options : mapping, optional
        fsspec options by protocol to read the folder with (a job's ``storage_options``).

    Attributes
    ----------
    folder : str
    kind : {"run", "predict", "run year"}
        The command that made it (``run year``: a year's map of a run of a table per year).
    years : tuple of int
        A run of a table per year: the years mapped (each one's map is :meth:`year`'s; the
        maps, hotspots and predictions read here are the last year's); else empty.
    storage_options : dict
    """

    def __init__(self, folder: str, metrics: RunMetrics | PredictionMetrics | None = None,
                 storage_options: Mapping[str, Mapping[str, Any]] | None = None):
        self.folder = str(folder)
        self.storage_options = {protocol: dict(options) for protocol, options in (storage_options or {}).items()}
        self.manifest: dict[str, Any] = self._finished_manifest()
        self.kind: str = self.manifest.get("command", "run")
        self.years: tuple[int, ...] = tuple(self.manifest.get("years", ()))
        if metrics is not None:
            self.__dict__["metrics"] = metrics

    def _finished_manifest(self) -> dict[str, Any]:
        with storage.configured(self.storage_options):
            manifest = storage.read_json(storage.join(self.folder, "manifest.json"))
        if not isinstance(manifest, dict):
            raise InputError(f"{self.folder}: no asm-dask run or prediction here (no readable manifest.json)")
        if manifest.get("status") != "complete":
            raise InputError(f"{self.folder}: not finished (status {manifest.get('status')!r}); run the same "
                             "command again to complete it")
        return manifest

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Read its files with its storage options, as long as the folder still holds this
        run: another run into the same folder since makes this object stale."""
        with storage.configured(self.storage_options):
            now = storage.read_json(storage.join(self.folder, "manifest.json"))
            if not isinstance(now, dict) or any(now.get(key) != self.manifest.get(key)
                                                for key in ("run_key", "model_hash", "status")):
                raise InputError(f"{self.folder}: holds another run now (or one in progress): this Run is stale; "
                                 "open the folder again with asm_dask.open_run")
            yield

    def __repr__(self) -> str:
        return f"<asm_dask.Run {self.kind} in {self.folder}>"

    @functools.cached_property
    def metrics(self) -> RunMetrics | PredictionMetrics:
        """What it measured (``metrics.json``), typed: a run's
        :class:`~asm_dask.pipeline.metrics.RunMetrics`, a prediction's
        :class:`~asm_dask.pipeline.metrics.PredictionMetrics`."""
        from .pipeline.metrics import PredictionMetrics, RunMetrics

        with self._reading():
            data = storage.read_json(self.files.metrics)
        if not isinstance(data, dict):
            raise InputError(f"{self.files.metrics}: missing or not JSON")
        return (RunMetrics if self.kind == "run" else PredictionMetrics).from_dict(data)

    @property
    def warnings(self) -> list[str]:
        """What a reader of its numbers must know first."""
        return list(self.metrics.warnings)

    @functools.cached_property
    def model(self) -> CalibratedClassifier:
        """The fitted, calibrated model that predicted every cell (a prediction's: the
        model of the run it applied), with ``predict_proba``."""
        from .model.persistence import load_model

        source = self.folder if self.kind == "run" else self.manifest["model_from"]
        with self._reading():
            return load_model(source)

    @functools.cached_property
    def model_card(self) -> dict[str, Any] | None:
        """A prediction's ``model_card.json``: where its model came from; ``None`` for a run."""
        if not self.files.model_card:
            return None
        with self._reading():
            return storage.read_json(self.files.model_card)

    @functools.cached_property
    def files(self) -> RunFiles:
        """The paths of its files."""
        with storage.configured(self.storage_options):
            names = set(storage.list_names(self.folder))

        def path(name: str) -> str:
            return storage.join(self.folder, name)

        def optional(name: str) -> str | None:
            return path(name) if name in names else None

        maps = storage.join(self.folder, "years", str(self.years[-1])) if self.years else self.folder
        return RunFiles(
            folder=self.folder, report=optional("report.html"), map=path("map.html"),
            probability_tif=storage.join(maps, "probability.tif"),
            hotspots_geojson=storage.join(maps, "hotspots.geojson"), hotspots_csv=storage.join(maps, "hotspots.csv"),
            predictions=storage.join(maps, "predictions"), metrics=path("metrics.json"),
            manifest=path("manifest.json"), figures=path("figures"), log=optional("asm-dask.log"),
            model=optional("model.json"), model_skops=optional("model.skops"), model_card=optional("model_card.json"),
            feature_importance=optional("feature_importance.csv"), admin_summary_csv=optional("admin_summary.csv"),
            admin_summary_geojson=optional("admin_summary.geojson"), labelled_cells=optional("labelled_cells.csv"),
            unmatched_labels=optional("unmatched_labels.csv"), years_csv=optional("years.csv"),
            district_years_csv=optional("district_years.csv"), changes=optional("changes"))

    def year(self, year: int) -> Run:
        """A run of a table per year: ``year``'s map (predictions, hotspots, its metrics)."""
        year = int(year) if isinstance(year, str) and year.isdigit() else year
        if year not in self.years:
            raise InputError(f"{self.folder}: no map of {year}; "
                             + (f"the years mapped are {', '.join(map(str, self.years))}" if self.years
                                else "a run of one feature table has no years"))
        return Run(storage.join(self.folder, "years", str(year)), storage_options=self.storage_options)

    def change(self, first: int, second: int) -> geopandas.GeoDataFrame:
        """A run of a table per year: the clusters of new and abandoned ASM from ``first`` to
        ``second`` (consecutive years, or the first and the last), largest first."""
        import geopandas

        folder = storage.join(self.folder, "changes", f"{first}-{second}")
        with self._reading():
            if not storage.exists(storage.join(folder, "change.json")):
                raise InputError(f"{self.folder}: no change from {first} to {second}; there is one for each pair "
                                 "of consecutive years, and from the first to the last")
            return geopandas.read_file(io.BytesIO(storage.read_bytes(storage.join(folder,
                                                                                  "change_hotspots.geojson"))))

    def predictions(self, columns: list[str] | None = None) -> dask_geopandas.GeoDataFrame:
        """Every cell's prediction, lazily: a dask-geopandas GeoDataFrame of the partitioned
        GeoParquet, a partition per file (``cell_id``, ``lat``, ``lon``, ``score``,
        ``probability``, the cell's square as ``geometry``, and ``bbox``, GeoParquet's
        covering box of each square, which lets readers skip row groups by area);
        ``columns`` reads only those."""
        import dask_geopandas

        protocol = storage.filesystem(self.files.predictions)[0].protocol
        protocol = protocol if isinstance(protocol, str) else protocol[0]
        with self._reading():
            return dask_geopandas.read_parquet(self.files.predictions, columns=columns,
                                               storage_options=self.storage_options.get(protocol))

    def hotspots(self) -> geopandas.GeoDataFrame:
        """The hotspots, ranked: connected cells at or above the hotspot threshold (the
        columns of ``hotspots.csv``, and each hotspot's outline); none, with the same columns."""
        import geopandas
        import pandas as pd

        with self._reading():
            found = geopandas.read_file(io.BytesIO(storage.read_bytes(self.files.hotspots_geojson)))
            if len(found):
                return found
            columns = pd.read_csv(io.BytesIO(storage.read_bytes(self.files.hotspots_csv)), nrows=0).columns
        return geopandas.GeoDataFrame({name: pd.Series(dtype=object) for name in columns},
                                      geometry=geopandas.GeoSeries([], crs=found.crs or "EPSG:4326"))

    def summary(self) -> str:
        """Its headline numbers, as a person reads them (what the command line prints)."""
        m = self.metrics.as_dict()
        if self.kind != "run":
            dropped = m["n_cells_dropped_nonfinite"]
            return (f"{m['n_cells']:,} cells predicted with the model of {self.manifest['model_from']} (mean "
                    f"probability {m['mean_probability']:.3f}; {m['n_hotspots']:,} hotspots at probability >= "
                    f"{m['hotspot_threshold']:g})"
                    + (f"; {dropped:,} cells left out: a feature is NaN, infinite or missing" if dropped else ""))
        searched = m["alphas_searched"]
        edge = " (AT THE EDGE of the grid searched)" if m["alpha_at_grid_edge"] else ""
        lines = [f"best alpha {m['best_alpha']:g} of {len(searched)} searched, "
                 f"{min(searched):g} to {max(searched):g}{edge}"]
        cv = [f"{name} CV AUC {m[key]:.3f}" for name, key in (("cell", "cell_cv_auc"), ("blocked", "blocked_cv_auc"))
              if key in m]
        lines.append(", ".join(cv) + f" (alpha chosen on {m['alpha_selected_by']} folds)")
        compared = m["model_comparison"]
        if len(compared) > 1:
            why = "named by model.select" if m["selected_by"] == "model.select" else "the highest CV AUC"
            others = ", ".join(f"{name} {entry['cv_auc']:.3f}" for name, entry in compared.items())
            lines.append(f"selected estimator {m['selected_estimator']} ({why}) of {len(compared)} compared "
                         f"on the same folds, CV AUC: {others}")
        low, high = m["test_auc_ci95"]
        lines.append(f"test ROC AUC {m['test_auc_calibrated']:.3f} calibrated ({m['calibration']}), "
                     f"95% interval {low:.3f} to {high:.3f}; {m['test_auc_uncalibrated']:.3f} uncalibrated; "
                     f"Brier {m['brier_test']:.3f}")
        lines.append(f"{m['n_labels_joined']} labels joined, {m['n_labels_unmatched']} on no cell; "
                     f"{m['n_cells']:,} cells predicted")
        if not self.years:
            lines.append(f"{m['n_hotspots']:,} hotspots at probability >= {m['hotspot_threshold']:g}, "
                         f"{m['n_hotspots_without_asm_label']:,} without a known ASM label (field validation "
                         "candidates)")
        for year, found in (m.get("years") or {}).items():
            lines.append(f"{year}: {found['n_labels_joined']} labels, {found['n_cells']:,} cells mapped, "
                         f"expected ASM {found['expected_asm_km2']:,.0f} km², {found['n_hotspots']:,} hotspots "
                         f"(years/{year}/)")
        for change in m.get("changes") or ():
            lines.append(f"{change['from_map']} to {change['to_map']}: ASM newly likely in {change['n_new_cells']:,} "
                         f"cells ({change['new_area_km2']:,.1f} km², {change['n_new_clusters']} clusters), no longer "
                         f"in {change['n_abandoned_cells']:,} ({change['abandoned_area_km2']:,.1f} km², "
                         f"{change['n_abandoned_clusters']} clusters)")
        return "\n".join(lines)

    def map(self) -> MapView:
        """The interactive map (``map.html``, which works offline), to show in a notebook."""
        with self._reading():
            return MapView(storage.read_bytes(self.files.map).decode())

    def _repr_html_(self) -> str:
        """A notebook's view: the headline numbers and the interactive map."""
        lines = "".join(f"<li>{html.escape(line)}</li>" for line in self.summary().splitlines())
        warned = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
        caveats = f"<p><b>Warnings</b></p><ul>{warned}</ul>" if warned else ""
        return (f"<div><p><b>asm_dask {self.kind}</b> in <code>{html.escape(self.folder)}</code></p>"
                f"<ul>{lines}</ul>{caveats}{self.map()._repr_html_()}</div>")


@dataclass(frozen=True)
class MapView:
    """``map.html`` shown inline in a notebook (in a frame of its own, so that its
    scripts do not meet the notebook's)."""

    page: str

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.page, quote=True)}" style="width: 100%; '
                f'height: {MAP_HEIGHT}px; border: 1px solid #ccc;"></iframe>')

