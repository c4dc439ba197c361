"""Small input files written by hand, for tests that need exact coordinates or bad values."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import yaml

LABEL_COLUMNS = ["lon", "lat", "unique_id", "country", "sample_type", "mine_type", "confidence",
                 "label", "proportion_inspected"]


def image_id(lat: float, lon: float) -> str:
    return f"lat_{lat:.3f}__lon_{lon:.3f}".replace(".", "--")


def grid_features(lats, lons, n_features: int = 6, seed: int = 0) -> pd.DataFrame:
    """A full grid of cells with random features, in the notebook's layout."""
    rng = np.random.default_rng(seed)
    lat, lon = np.meshgrid(lats, lons, indexing="ij")
    frame = pd.DataFrame({"image_id": [image_id(a, b) for a, b in zip(lat.ravel(), lon.ravel())]})
    values = rng.random((lat.size, n_features), dtype=np.float32)
    for j in range(n_features):
        frame[f"feature_{j}"] = values[:, j]
    return frame


def write_feather(frame: pd.DataFrame, path: Path, chunksize: int | None = None) -> Path:
    feather.write_feather(pa.Table.from_pandas(frame, preserve_index=False), path, chunksize=chunksize)
    return path


def labels_frame(points, labels) -> pd.DataFrame:
    """Labels that pass the notebook's filters, at the given (lon, lat) points."""
    n = len(points)
    return pd.DataFrame({
        "lon": [p[0] for p in points], "lat": [p[1] for p in points],
        "unique_id": [f"T-{i}" for i in range(n)], "country": "TST", "sample_type": "random",
        "mine_type": "artisanal", "confidence": 5, "label": list(labels), "proportion_inspected": 1.0})


def write_job(folder: Path, labels: Path | str, features: Path | str, features_settings: dict | None = None,
              **extra) -> Path:
    """A job file in ``folder`` with ``output: out`` and the given sections."""
    job = {"labels": {"path": str(labels)}, "features": {"path": str(features), **(features_settings or {})},
           "output": "out", **extra}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def cli(*args, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    """Run the command line as a user would, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "asm_dask.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **popen)


#: lines asm-dask itself prints on stderr while it runs: stages and warnings, the dashboard
#: link, and progress ("predict cells: [####      ] 2/4 (0.3 s)")
OWN_LINE = re.compile(r"\[asm-dask\] |Dask dashboard: |[\w :]+: \[[# ]{20}\] \d+/\d+ \(")


def chromium(*args: str, tmp_path) -> subprocess.CompletedProcess:
    """Debian's headless chromium on ``args``, without network."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Debian's chromium is needed for these tests (apt-get install chromium; .ci/run does)"
    # No network: a proxy on a closed port takes every request, so the data layers must
    # come from the file itself.
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--proxy-server=http://127.0.0.1:9",
         "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=8000", *args],
        capture_output=True, text=True, timeout=120)
