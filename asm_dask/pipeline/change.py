"""``asm-dask change``: two maps made by one model (a run and a prediction of another
year, or two predictions) compared cell by cell (:mod:`asm_dask.report.change`)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import storage
from ..errors import InputError
from ..prediction.stream import read_prediction_grid
from ..records.outputs import CHANGE_NAMES, check_files_output, check_output_kind
from ..report.change import Change, map_change, write_change


@dataclass(frozen=True)
class ChangeResult:
    """The change between two maps, and the files written."""

    change: Change
    files: dict[str, str]


def _finished_map(folder: str) -> tuple[dict, dict]:
    manifest = storage.read_json(storage.join(folder, "manifest.json"))
    metrics = storage.read_json(storage.join(folder, "metrics.json"))
    if not isinstance(manifest, dict) or not isinstance(metrics, dict) or manifest.get("status") != "complete":
        raise InputError(f"{folder}: no finished asm-dask run or prediction here")
    if manifest.get("years"):
        years = [storage.join(folder, "years", str(year)) for year in manifest["years"]]
        raise InputError(f"{folder}: a run of a map per year ({', '.join(map(str, manifest['years']))}); compare "
                         f"two of them ({years[0]} and {years[-1]}...): its changes/ holds the changes between "
                         "consecutive years and from the first to the last")
    return manifest, metrics


def compare_maps(earlier: str, later: str, out: str, hotspot_threshold: float | None = None) -> ChangeResult:
    """Compare the map in ``earlier`` with the one in ``later`` into ``out``; the threshold
    is the later map's unless given. Maps of other models, or of other grids, are one
    line: a change between them would be the models' difference, not the ground's."""
    (first, first_metrics), (second, second_metrics) = _finished_map(earlier), _finished_map(later)
    if first.get("model_hash") != second.get("model_hash"):
        raise InputError(f"{later}: made by another model than {earlier} (model hash {second.get('model_hash')} "
                         f"against {first.get('model_hash')}): compare maps of one model, e.g. a run and "
                         "asm-dask predict of its model on another year's features")
    if first_metrics["cell_size"] != second_metrics["cell_size"]:
        raise InputError(f"{later}: cells of {second_metrics['cell_size']:g} degrees, {earlier}: of "
                         f"{first_metrics['cell_size']:g}")
    # a year's map lies in its run's folder, which holds the run's own changes
    kept = [earlier, later] + [manifest["model_from"] for manifest in (first, second)
                               if manifest.get("command") == "run year"]
    for folder in kept:
        inside = storage.normalized(out) + "/"
        if inside.startswith(storage.normalized(folder).rstrip("/") + "/"):
            raise InputError(f"{out}: is {folder}, or in it; the change goes to a folder of its own (--out)")
    check_output_kind(out, "change")
    check_files_output({"EARLIER": earlier, "LATER": later}, out, CHANGE_NAMES)
    threshold = second_metrics["hotspot_threshold"] if hotspot_threshold is None else hotspot_threshold
    cell_size = float(first_metrics["cell_size"])
    grids = [read_prediction_grid(storage.join(folder, "predictions")) for folder in (earlier, later)]
    names = (storage.normalized(earlier).rstrip("/").rsplit("/", 1)[-1],
             storage.normalized(later).rstrip("/").rsplit("/", 1)[-1])
    raster, change = map_change(grids[0], grids[1], cell_size, threshold, names)
    if not change.counts["n_cells_compared"]:
        raise InputError(f"{later}: shares no cell with {earlier}")
    return ChangeResult(change, write_change(out, raster, change))
