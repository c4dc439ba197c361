"""A run's bookkeeping in its output folder: the lock, the run key, the manifest, resuming.

* **Lock.** ``.asm-dask.lock`` says which run is writing the folder. A second run into the
  same folder stops with one line naming the first; a lock left by a run that died on
  this machine is taken over.
* **Run key.** A fingerprint of everything the predictions depend on: the inputs'
  fingerprints, the settings (not the output path, the report settings or the storage
  credentials) and the package versions.
* **Manifest.** ``manifest.json``: what the run read, how it was set, the model's hash
  and each prediction partition once its file exists, rewritten whole after every change.
* **Resume.** A run of the same key and model skips the partitions already written;
  any difference discards them all.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import socket
import time
import uuid
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import numpy as np

from . import storage
from .calibrate import CalibratedEstimator, CalibratedModel
from .config import DEFAULT_ESTIMATORS, Job
from .errors import InputError

if TYPE_CHECKING:  # the table's modules need process_alive from here
    from .table import FeatureTable

PACKAGES = ("asm_dask", "numpy", "scipy", "scikit-learn", "pyarrow", "dask", "distributed",
            "geopandas", "dask-geopandas")
#: packages the estimators other than ridge are searched, fitted and saved with
ESTIMATOR_PACKAGES = ("dask-ml", "skops")
LOCK_FILE = ".asm-dask.lock"
MANIFEST_FILE = "manifest.json"


class OutputLock:
    """Holds ``output`` for one run of ``command`` (``run`` or ``predict``), as a context manager.

    The lock is a file created exclusively (see :func:`asm_dask.storage.create_exclusively`)
    that names its run, host, process and start time, removed when the run ends, however
    it ends. A lock whose process is gone from this host is stale and taken over; one
    from another host cannot be checked, so the message says how to remove it. A folder
    holding the output of the other command is refused (see :func:`check_output_kind`).
    """

    def __init__(self, output: str, command: str = "run"):
        self.output = output
        self.command = command
        self.path = storage.join(output, LOCK_FILE)
        self.holder = {"run": uuid.uuid4().hex[:12], "host": socket.gethostname(), "pid": os.getpid(),
                       "user": _user(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def __enter__(self) -> "OutputLock":
        self._created_folder = not storage.exists(self.output)
        storage.make_folder(self.output)
        data = json.dumps(self.holder).encode()
        for _ in range(3):
            if storage.create_exclusively(self.path, data):
                try:
                    check_output_kind(self.output, self.command)
                except InputError:
                    self.__exit__()
                    raise
                return self
            other = storage.read_json(self.path)
            if other is None:  # removed meanwhile, or being written: try again
                time.sleep(0.1)
                continue
            if not self._is_stale(other):
                raise InputError(
                    f"{self.output}: in use by another asm-dask run ({other.get('run')}, "
                    f"{other.get('user', '?')}@{other.get('host')} process {other.get('pid')}, started "
                    f"{other.get('started')}); wait for it to finish, choose another output folder, or "
                    f"remove {self.path} if that run is dead")
            storage.remove(self.path)
        raise InputError(f"{self.output}: could not take the lock {self.path}; another run keeps taking it")

    def __exit__(self, *exc_info: Any) -> None:
        current = storage.read_json(self.path)
        if current is not None and current.get("run") == self.holder["run"]:
            storage.remove(self.path)
        # A run stopped by bad input leaves no output folder it made behind.
        if self._created_folder and storage.local_path(self.output) and not storage.list_names(self.output):
            storage.remove(self.output)

    def _is_stale(self, other: dict[str, Any]) -> bool:
        return other.get("host") == self.holder["host"] and not process_alive(int(other.get("pid", 0)))


def check_output_kind(output: str, command: str) -> None:
    """Refuse to write ``command``'s output over another command's: a prediction over the
    run whose model it applies would replace that run's predictions and metrics."""
    previous = storage.read_json(storage.join(output, MANIFEST_FILE))
    if previous is not None and previous.get("command", "run") != command:
        raise InputError(f"{output}: holds the output of asm-dask {previous.get('command', 'run')}; "
                         f"choose another folder for asm-dask {command}")


#: every name a run, a prediction or the demo writes directly in its output folder (and
#: the feature store's folder there, for features on object storage); an output folder
#: holding anything else is not asm-dask's, and is refused
OUTPUT_NAMES = frozenset({
    LOCK_FILE, MANIFEST_FILE, "asm-dask.log", "metrics.json", "model.json", "model.skops", "model_card.json",
    "predictions", "figures", "probability.tif", "hotspots.geojson", "hotspots.csv", "admin_summary.csv",
    "admin_summary.geojson", "feature_importance.csv", "map.html", "report.html", "labelled_cells.csv",
    "unmatched_labels.csv", "truth_comparison.json", ".asm_dask_store"})


def check_apart(inputs: dict[str, str], output: str, output_key: str, own: frozenset[str] = OUTPUT_NAMES) -> None:
    """Refuse, before anything runs, an output folder that would touch an input.

    ``inputs`` maps each input's setting (``labels.path``) to its path or URL. No input may
    be the output folder or lie inside it (a run writes files of its own names there, and
    clears ``predictions/``), nor may the output folder lie inside an input folder. The
    output folder must be new, empty, or hold an earlier asm-dask output (entries named in
    ``own``): one that holds anything else is a user's folder, and a run never writes among
    a user's files.
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
    foreign = [name for name in storage.list_names(output) if name not in own and not name.startswith(".")]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InputError(f"{output}: holds files that are not asm-dask's ({shown}); the output folder "
                         f"({output_key}) must be new, empty, or an earlier asm-dask output")
    log = storage.local_path(storage.join(output, "asm-dask.log"))
    for key, path in inputs.items():
        local = storage.local_path(path)
        if log and local and os.path.exists(log) and os.path.exists(local) and os.path.samefile(log, local):
            raise InputError(f"{log}: is the {key} input {path} (a link to it); the run appends its log there")


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        pass
    return True


def run_key(job: Job, table_key: str) -> str:
    """Fingerprint of everything a prediction depends on; the output path is not part of it."""
    fs, path = storage.filesystem(job.labels.path)
    labels_digest = hashlib.sha256(fs.cat_file(path)).hexdigest()
    settings = job.as_dict()
    for section in ("output", "report", "storage_options"):  # where, what is drawn, credentials
        settings.pop(section)
    settings["labels"].pop("path")
    for key in ("path", "store", "store_path"):
        settings["features"].pop(key)
    packages = versions()
    if settings["model"]["estimators"] == DEFAULT_ESTIMATORS and settings["model"]["select"] is None:
        # ridge alone, as before these settings existed: the same key as then
        del settings["model"]["estimators"], settings["model"]["select"]
    else:
        packages.update({name: version(name) for name in ESTIMATOR_PACKAGES})
    key = {"features": table_key, "labels": labels_digest, "settings": settings, "versions": packages}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    return {name: version(name) for name in PACKAGES}


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


def model_hash(model: CalibratedModel | CalibratedEstimator) -> str:
    """Fingerprint of what a model predicts: its parameters, or for an estimator that is
    not linear, what it scores (:attr:`CalibratedEstimator.fingerprint`), and its calibration."""
    digest = hashlib.sha256(model.calibrator.method.encode())
    if isinstance(model, CalibratedEstimator):
        digest.update(model.fingerprint.encode())
        arrays = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for _, v in sorted(model.calibrator.params.items())]
    else:
        arrays = model.parameters()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


class RunManifest:
    """What a run read, how it was set, and which prediction partitions are written.

    Saved as ``manifest.json`` in the output folder after every change, whole.
    """

    def __init__(self, output: str, run_key: str, description: dict[str, Any]):
        self.output = output
        self.path = storage.join(output, MANIFEST_FILE)
        self.data = {"run_key": run_key, **description, "model_hash": None,
                     "status": "running", "completed_partitions": [], "partition_counts": {}}

    def resume(self, predictions_dir: str, model_digest: str, file_name: Any) -> set[int]:
        """Partitions that a previous run of the same key and model completed, whose
        files (named by ``file_name(index)``) are in ``predictions_dir``.

        Anything else in ``predictions_dir`` is stale and removed.
        """
        previous = storage.read_json(self.path)
        present = set(storage.list_names(predictions_dir))
        keep: set[int] = set()
        if previous and previous.get("run_key") == self.data["run_key"] \
                and previous.get("model_hash") == model_digest:
            counts = previous.get("partition_counts", {})
            keep = {i for i in previous.get("completed_partitions", [])
                    if file_name(i) in present and str(i) in counts}
        wanted = {file_name(i) for i in keep}
        for name in present - wanted:
            storage.remove(storage.join(predictions_dir, name))
        self.data["model_hash"] = model_digest
        self.data["completed_partitions"] = sorted(keep)
        self.data["partition_counts"] = {str(i): previous["partition_counts"][str(i)] for i in sorted(keep)}
        self.data["resumed_partitions"] = len(keep)
        self.save()
        return keep

    def mark_written(self, index: int, counts: dict[str, int]) -> None:
        self.data["completed_partitions"].append(index)
        self.data["partition_counts"][str(index)] = counts
        self.save()

    def counts(self) -> dict[str, int]:
        """Cells written and rows left out for non-finite features, over every partition."""
        counts = self.data["partition_counts"].values()
        return {name: sum(c[name] for c in counts) for name in ("n_cells", "n_dropped_nonfinite")}

    def finish(self, **extra: Any) -> None:
        self.data["completed_partitions"].sort()
        self.data.update(status="complete", **extra)
        self.save()

    def save(self) -> None:
        storage.write_text(self.path, json.dumps(self.data, indent=1, default=str))
