"""Short fingerprints: what keys a run, a feature table, a store and a prediction.

* **Run key.** A fingerprint of everything the predictions depend on: the inputs'
  fingerprints, the settings (not the output path, the report settings or the storage
  credentials) and the package versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib.metadata import version
from typing import Any

from .. import storage
from ..config import DEFAULT_ESTIMATORS, Job

PACKAGES = ("asm_dask", "numpy", "scipy", "scikit-learn", "pyarrow", "dask", "distributed",
            "geopandas", "dask-geopandas")
#: packages the estimators other than ridge are searched, fitted and saved with
ESTIMATOR_PACKAGES = ("dask-ml", "skops")
#: hexadecimal digits of a fingerprint
FINGERPRINT_DIGITS = 16


def fingerprint(value: Any) -> str:
    """A short SHA-256 of ``value``'s JSON (keys sorted; what JSON cannot hold, as text)."""
    return digest(json.dumps(value, sort_keys=True, default=str).encode())


def digest(*parts: bytes) -> str:
    """A short SHA-256 of ``parts``, one after the other: of bits that JSON would not
    keep exactly (arrays of floats)."""
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(part)
    return hashed.hexdigest()[:FINGERPRINT_DIGITS]


def versions() -> dict[str, str]:
    return {name: version(name) for name in PACKAGES}


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
    if not settings["features"]["join"]:  # one table, as before tables were joined: the same key as then
        del settings["features"]["join"], settings["features"]["name"]
    for joined in settings["features"].get("join", ()):
        joined.pop("path")
    # a job of one table, as before tables by year: the same key as then
    if not settings["features"].pop("years"):
        del settings["labels"]["year"]
    for year in job.years:  # the tables' fingerprints are in table_key
        table = settings["features"].setdefault("years", {})[str(year)] = dataclasses.asdict(job.features.years[year])
        for entry in [table, *table["join"]]:
            entry.pop("path")
    packages = versions()
    if settings["model"]["estimators"] == DEFAULT_ESTIMATORS and settings["model"]["select"] is None:
        # ridge alone, as before these settings existed: the same key as then
        del settings["model"]["estimators"], settings["model"]["select"]
    else:
        packages.update({name: version(name) for name in ESTIMATOR_PACKAGES})
    return fingerprint({"features": table_key, "labels": labels_digest, "settings": settings, "versions": packages})


