"""What a run writes in its output folder, and that it never writes where an input lies."""

from __future__ import annotations

import os
import re

from .. import storage
from ..config import FeaturesConfig, Job
from ..config.problems import listed
from ..errors import InputError
from ..storage.paths import check_input, check_output_folder, check_remote_folder

LOCK_FILE = ".asm-dask.lock"
MANIFEST_FILE = "manifest.json"


#: the folders a run or a prediction writes in its output folder: the feature store's for
#: features on object storage, and the scratch space of a Dask worker told to work there
OUTPUT_FOLDERS = frozenset({"predictions", "figures", ".asm_dask_store", "dask-scratch-space", "years", "changes"})
#: every name a run or a prediction writes directly in its output folder; an output
#: folder holding anything else is not asm-dask's, and is refused
OUTPUT_NAMES = OUTPUT_FOLDERS | {
    LOCK_FILE, MANIFEST_FILE, "asm-dask.log", "metrics.json", "model.json", "model.skops", "model_card.json",
    "probability.tif", "hotspots.geojson", "hotspots.csv", "admin_summary.csv", "admin_summary.geojson",
    "feature_importance.csv", "map.html", "report.html", "labelled_cells.csv", "unmatched_labels.csv",
    "truth_comparison.json", "next_labels.csv", "next_labels.geojson", "next_labels.gpx", "years.csv",
    "district_years.csv"}


#: what ``asm-dask sample`` and ``asm-dask change`` write in their output folders
SAMPLE_NAMES = frozenset({"sample.csv", "sample.geojson", "sample.gpx", "design.json"})
CHANGE_NAMES = frozenset({"change.tif", "change_hotspots.geojson", "change_hotspots.csv", "change.json"})

#: what a run or a prediction may have written before its manifest (the log, the model,
#: the model's figures, the first partitions): all an interrupted first run leaves. Any
#: other of asm-dask's names without a manifest beside it is a user's file.
BEFORE_MANIFEST = frozenset({"asm-dask.log", "dask-scratch-space", "model.json", "model.skops", "figures",
                             "predictions", "years"})
#: what asm-dask writes inside each of its folders: anything else there is a user's
FOLDER_CONTENTS = {"predictions": re.compile(r"part-\d{5}\.parquet"), "figures": re.compile(r"[\w-]+\.png"),
                   "years": re.compile(r"\d+"), "changes": re.compile(r"\d+-\d+")}

#: what stays when another run replaces an earlier one in its folder: the lock and the log
#: this run holds, and what is not a run's output (a feature store, a worker's scratch space)
KEPT_ACROSS_RUNS = frozenset({LOCK_FILE, "asm-dask.log", ".asm_dask_store", "dask-scratch-space"})

#: what a run of one feature table writes that a run of a table per year does not, and the reverse
ONE_TABLE_OUTPUTS = ("predictions", "probability.tif", "hotspots.geojson", "hotspots.csv", "admin_summary.csv",
                     "admin_summary.geojson")
YEARS_OUTPUTS = ("years", "changes", "years.csv", "district_years.csv")


def remove_stale_outputs(output: str, years: tuple[int, ...], run_key: str) -> None:
    """Remove what an earlier run into ``output`` wrote that this one (of ``years``, or of
    one table) will not write again: another run's maps would be read as this one's. An
    earlier run of another ``run_key`` (other settings or inputs) is removed whole, before
    this one writes anything: one that stops half-way leaves no other run's report or
    metrics beside its own model."""
    names = set(storage.list_names(output))
    previous = storage.read_json(storage.join(output, MANIFEST_FILE))
    if isinstance(previous, dict) and previous.get("run_key") != run_key:
        # its manifest last: removed part-way (a folder that refuses it), the earlier run is
        # removed again by the next run of this job
        for name in sorted(names & (OUTPUT_NAMES - KEPT_ACROSS_RUNS), key=lambda name: name == MANIFEST_FILE):
            storage.remove(storage.join(output, name))
        return
    stale = [name for name in (ONE_TABLE_OUTPUTS if years else YEARS_OUTPUTS) if name in names]
    if years:
        stale += ["changes"] if "changes" in names else []  # its pairs are all written again
        stale += [storage.join("years", name) for name in storage.list_names(storage.join(output, "years"))
                  if name not in {str(year) for year in years}]
    for name in stale:
        storage.remove(storage.join(output, name))


def check_apart(inputs: dict[str, str], output: str, output_key: str, own: frozenset[str] = OUTPUT_NAMES,
                folders: frozenset[str] = OUTPUT_FOLDERS,
                before_manifest: frozenset[str] | None = BEFORE_MANIFEST) -> None:
    """Refuse, before anything runs, an output folder that would touch an input.

    ``inputs`` maps each input's setting (``labels.path``) to its path or URL. No input may
    be the output folder or lie inside it (a run writes files of its own names there, and
    clears ``predictions/``), nor may the output folder lie inside an input folder. The
    output folder must be new, empty, or hold an earlier asm-dask output (entries named in
    ``own``, of which ``folders`` are folders): one that holds anything else is a user's
    folder, and a run never writes among a user's files. So is one without a manifest that
    holds more of those names than ``before_manifest`` (``None``: no manifest is looked
    for), and a folder of asm-dask's names holding what asm-dask does not write there (a
    run clears ``predictions/`` and removes another kind of run's ``years/``). An entry of
    its own names that is a link (asm-dask would write, or clear, where it leads) or not of
    its kind (a file where asm-dask writes a folder) is refused too.
    """
    out = storage.normalized(output)
    for key, path in inputs.items():
        where = storage.normalized(path)
        if where == out or _inside(where, out):
            raise InputError(f"{path}: lies in the output folder {output} ({key}, {output_key}), where asm-dask "
                             "writes its own files; choose an output folder apart from the inputs")
        if _inside(out, where):
            raise InputError(f"{output}: the output folder lies inside {path} ({output_key}, {key}); choose "
                             "an output folder apart from the inputs")
    # Hidden entries are left alone: a run's temporary files, a file manager's (.DS_Store).
    names = storage.list_names(output)
    foreign = [name for name in names if name not in own and not name.startswith(".")]
    if foreign:
        raise InputError(f"{output}: holds files that are not asm-dask's ({listed(foreign)}); the output folder "
                         f"({output_key}) must be new, empty, or an earlier asm-dask output")
    for name in (name for name in names if name in own):
        _check_own_entry(storage.join(output, name), name in folders, FOLDER_CONTENTS.get(name), output_key)
    if before_manifest is not None and MANIFEST_FILE not in names:
        unmarked = [name for name in names if name in own and name not in before_manifest and not name.startswith(".")]
        if unmarked:
            raise InputError(f"{output}: holds {', '.join(unmarked[:3])} but no {MANIFEST_FILE}: not an earlier "
                             f"asm-dask output; the output folder ({output_key}) must be new, empty, or an earlier "
                             "asm-dask output")
    log = storage.local_path(storage.join(output, "asm-dask.log"))
    for key, path in inputs.items():
        local = storage.local_path(path)
        if log and local and os.path.exists(log) and os.path.exists(local) and os.path.samefile(log, local):
            raise InputError(f"{log}: is the {key} input {path} (a link to it); the run appends its log there")


def _check_own_entry(path: str, folder: bool, contents: re.Pattern | None, output_key: str) -> None:
    """An entry of asm-dask's own names in an output folder is a real file or folder of
    the kind asm-dask writes there, not a link; a folder holds only names ``contents``
    matches, where given."""
    local = storage.local_path(path)
    if local is not None and os.path.islink(local):
        raise InputError(f"{path}: is a link (to {os.readlink(local)}); asm-dask writes and clears its own "
                         f"files there: remove the link, or choose another output folder ({output_key})")
    fs, fs_path = storage.filesystem(path)
    if folder and fs.isfile(fs_path):
        raise InputError(f"{path}: is a file where asm-dask writes a folder of that name; remove it, or choose "
                         f"another output folder ({output_key})")
    if not folder and fs.isdir(fs_path):
        raise InputError(f"{path}: is a folder where asm-dask writes a file of that name; remove it, or choose "
                         f"another output folder ({output_key})")
    if folder and contents is not None:
        foreign = [name for name in storage.list_names(path)
                   if not name.startswith(".") and not contents.fullmatch(name)]
        if foreign:
            raise InputError(f"{storage.join(path, foreign[0])}: is not asm-dask's, in a folder asm-dask writes and "
                             f"clears; move it, or choose another output folder ({output_key})")


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def check_output_kind(output: str, command: str) -> None:
    """Refuse to write ``command``'s output over another command's: a prediction over the
    run whose model it applies would replace that run's predictions and metrics."""
    path = storage.join(output, MANIFEST_FILE)
    previous = storage.read_json(path)
    if previous is None and storage.exists(path) or previous is not None and not isinstance(previous, dict):
        raise InputError(f"{path}: not a manifest of asm-dask (damaged, or another program's); remove it, or "
                         "choose another output folder")
    if previous is not None and previous.get("command", "run") != command:
        raise InputError(f"{output}: holds the output of asm-dask {previous.get('command', 'run')}; "
                         f"choose another folder for asm-dask {command}")




def check_run_paths(job: Job) -> None:
    """Check, before a cluster starts, that the inputs are files that can be read, that
    the output folder (and a feature store's) can be written, locally or at a URL, and
    that no output touches an input (:func:`check_apart`).

    Call :func:`asm_dask.storage.configure` with the job's ``storage_options`` first, so
    that URLs are reached as the run will reach them.
    """
    check_input(job.labels.path, "labels.path", "labels file", "a CSV file")
    inputs = {"labels.path": job.labels.path}
    for key, features in ([(f"features.years.{year}", job.features.of_year(year)) for year in job.years]
                          or [("features", job.features)]):
        inputs.update(_feature_inputs(features, key, job.output))
    if job.report.boundaries is not None:
        # A folder can hold polygons (a File Geodatabase is one): only its presence is checked.
        check_input(job.report.boundaries.path, "report.boundaries.path", "boundaries file", None)
        inputs["report.boundaries.path"] = job.report.boundaries.path
    if job.features.store_path and "://" in job.features.store_path:
        check_remote_folder(job.features.store_path, "features.store_path")
    elif job.features.store_path and os.path.isfile(job.features.store_path):
        raise InputError(f"{job.features.store_path}: is a file, expected a folder (features.store_path)")
    check_output_folder(job.output, "output")
    if job.features.store_path:  # a store the run writes beside its outputs would mix with them
        inputs["features.store_path"] = job.features.store_path
    check_apart(inputs, job.output, "output")


def _feature_inputs(features: FeaturesConfig, key: str, output: str) -> dict[str, str]:
    """The feature tables of ``features`` (at ``key`` in the job), checked to be readable
    files, and the stores beside them, by key."""
    check_input(features.path, f"{key}.path", "features file", "a Feather, Parquet or CSV file")
    inputs = {f"{key}.path": features.path}
    for i, (joined, (_, table)) in enumerate(zip(features.join, features.tables()[1:])):
        joined_key = f"{key}.join.{i}.path"
        check_input(joined.path, joined_key, "features file", "a Feather, Parquet or CSV file")
        inputs[joined_key] = joined.path
        if not features.store_path and not storage.is_url(joined.path):
            inputs[f"the feature store beside {joined_key}"] = store_root(table, output)
    if not features.store_path and not storage.is_url(features.path):
        inputs[f"the feature store beside {key}.path"] = store_root(features, output)
    return inputs


def check_files_output(inputs: dict[str, str], output: str, names: frozenset[str]) -> None:
    """The output folder of a command that writes a few files of ``names`` (``sample``,
    ``change``): a folder that can be written, apart from the maps it reads (``inputs``),
    new, empty or holding only files of those names."""
    check_output_folder(output, "--out")
    check_apart(inputs, output, "--out", own=names, folders=frozenset(), before_manifest=None)


def check_prediction_paths(run_folder: str, features: tuple[str, ...], output: str) -> None:
    """The run folder, the features files (one per source of the run) and the output
    folder of a prediction, before a cluster starts."""
    check_input(run_folder, "RUN_DIR", "run folder", None)
    for path in features:
        check_input(path, "FEATURES", "features file", "a Feather, Parquet or CSV file")
    check_output_folder(output, "--out")


def store_root(config: FeaturesConfig, output: str) -> str:
    """Where a job's feature stores go: ``features.store_path`` if set; else beside a local
    features file, or inside the output folder for a remote one."""
    if config.store_path:
        return config.store_path
    if storage.is_url(config.path):
        return storage.join(output, ".asm_dask_store")
    return config.path.removeprefix("file://") + ".asm_dask_store"
