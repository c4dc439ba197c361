"""Inputs, feature store and outputs on object storage: a real S3 API server on 127.0.0.1.

``moto_server`` serves the S3 API as s3fs's own test suite uses it; the runs reach it
through s3fs as they would reach AWS, MinIO or Ceph.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
import yaml
from builders import cli

import asm_dask

ACCESS = {"AWS_ACCESS_KEY_ID": "asm-dask-test", "AWS_SECRET_ACCESS_KEY": "asm-dask-test-secret",
          "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """The environment a user of this endpoint has: the AWS variables, nothing else."""
        return {**ACCESS, "AWS_ENDPOINT_URL": self.endpoint}

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(key=ACCESS["AWS_ACCESS_KEY_ID"], secret=ACCESS["AWS_SECRET_ACCESS_KEY"],
                                 endpoint_url=self.endpoint, skip_instance_cache=True)

    def storage_options(self) -> dict:
        """The same access, as a job file's ``storage_options``."""
        return {"s3": {"key": ACCESS["AWS_ACCESS_KEY_ID"], "secret": ACCESS["AWS_SECRET_ACCESS_KEY"],
                       "endpoint_url": self.endpoint}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    """``moto_server`` on a free port of 127.0.0.1, for the tests of this module."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        # its request recordings (read by a test) go beside its log, not into the working folder
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "MOTO_RECORDER_FILEPATH": str(log.with_name("requests"))})
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start:\n{log.read_text()}") from exc
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        server.kill()
        server.wait()


def _without_aws(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}


def _upload_country(fs, country, bucket: str) -> tuple[str, str]:
    fs.mkdir(bucket)
    fs.put_file(str(country.labels), f"{bucket}/in/SLE_mines.csv")
    fs.put_file(str(country.features), f"{bucket}/in/SLE_features.feather")
    return f"s3://{bucket}/in/SLE_mines.csv", f"s3://{bucket}/in/SLE_features.feather"


def test_a_run_with_inputs_store_and_output_on_s3_completes_and_resumes(s3, country, tmp_path,
                                                                        dask_scheduler_with_workers):
    import duckdb
    import geopandas as gpd

    fs = s3.filesystem()
    labels, features = _upload_country(fs, country, "asm-run")
    job = {"labels": labels, "output": "s3://asm-run/results/sle",
           "features": {"path": features, "store": "always", "store_path": "s3://asm-run/store"}}

    # First run: worker processes that have no AWS variables of their own; the job file's
    # storage_options reach them.
    processes = dask_scheduler_with_workers(n_workers=2)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({**job, "storage_options": s3.storage_options()}))
    first = cli("run", job_file, "--scheduler", processes.address, env=_without_aws(os.environ))
    assert first.returncode == 0, first.stderr
    assert "s3://asm-run/results/sle/report.html" in first.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]

    out = "asm-run/results/sle"
    names = {path.rsplit("/", 1)[1] for path in fs.ls(out)}
    assert {"manifest.json", "metrics.json", "model.json", "report.html", "map.html", "probability.tif",
            "hotspots.geojson", "feature_importance.csv", "labelled_cells.csv", "figures",
            "predictions"} <= names
    assert ".asm-dask.lock" not in names  # released
    manifest = json.loads(fs.cat_file(f"{out}/manifest.json"))
    assert manifest["status"] == "complete"
    assert manifest["inputs"]["features_read_from"].startswith("s3://asm-run/store/")
    assert manifest["settings"]["storage_options"] == {"s3": ["endpoint_url", "key", "secret"]}
    assert ACCESS["AWS_SECRET_ACCESS_KEY"] not in fs.cat_file(f"{out}/manifest.json").decode()
    parts = sorted(fs.ls(f"{out}/predictions"))
    assert len(parts) == manifest["n_partitions"] == len(manifest["completed_partitions"])
    assert not [p for p in parts if p.rsplit("/", 1)[1].startswith(".")]  # no temporary objects
    store_files = fs.ls(manifest["inputs"]["features_read_from"].removeprefix("s3://"))
    assert any(name.endswith("store.json") for name in store_files)
    stamps = {p: fs.info(p)["LastModified"] for p in parts}

    # The predictions read back as partitioned GeoParquet, by geopandas and by DuckDB.
    grid = gpd.read_parquet(f"{out}/predictions", filesystem=fs)
    assert len(grid) == country.n_cells and grid.crs.to_epsg() == 4326
    assert grid["probability"].between(0, 1).all()
    con = duckdb.connect()
    con.register_filesystem(fs)
    n, mean = con.execute(f"select count(*), avg(probability) from "
                          f"read_parquet('s3://{out}/predictions/*.parquet')").fetchone()
    assert n == country.n_cells and mean == pytest.approx(grid["probability"].mean())

    # Second run: the default local cluster, credentials from the AWS variables alone.
    job_file.write_text(yaml.safe_dump(job))
    second = cli("run", job_file, env={**_without_aws(os.environ), **s3.env})
    assert second.returncode == 0, second.stderr
    assert f"resuming: {len(parts)} of {len(parts)} prediction partitions already written" in second.stderr
    assert {p: fs.info(p)["LastModified"] for p in sorted(fs.ls(f"{out}/predictions"))} == stamps
    assert json.loads(fs.cat_file(f"{out}/metrics.json"))["n_cells"] == country.n_cells
    log = fs.cat_file(f"{out}/asm-dask.log").decode()  # both runs' records, one after the other
    assert log.count("==== asm-dask run") == 2 and "resuming: " in log.split("==== asm-dask run")[2]

    # The run's model, applied from object storage to features there, into object storage.
    applied = cli("predict", "s3://asm-run/results/sle", features, "--out", "s3://asm-run/applied",
                       env={**_without_aws(os.environ), **s3.env})
    assert applied.returncode == 0, applied.stderr
    card = json.loads(fs.cat_file("asm-run/applied/model_card.json"))
    assert card["model"]["from_run"] == "s3://asm-run/results/sle" and card["applied_to"]["n_cells"] == country.n_cells
    assert len(gpd.read_parquet("asm-run/applied/predictions", filesystem=fs)) == country.n_cells
    assert fs.exists("asm-run/applied/probability.tif") and not fs.exists("asm-run/applied/.asm-dask.lock")


def test_an_s3_output_that_cannot_be_written_is_one_line_before_anything_runs(s3, country, tmp_path):
    fs = s3.filesystem()
    labels, features = _upload_country(fs, country, "asm-bad")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({"labels": labels, "features": features,
                                        "output": "s3://no-such-bucket/out"}))
    done = cli("run", job_file, env={**_without_aws(os.environ), **s3.env}, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "asm-dask: error: s3://no-such-bucket/out: cannot write the folder: ")
    assert "Traceback" not in done.stderr
    job_file.write_text(yaml.safe_dump({"labels": "s3://asm-bad/in/missing.csv", "features": features,
                                        "output": "s3://asm-bad/out"}))
    done = cli("run", job_file, env={**_without_aws(os.environ), **s3.env}, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == \
        "asm-dask: error: s3://asm-bad/in/missing.csv: labels file not found"
    assert not fs.exists("asm-bad/out")


def test_the_lock_on_s3_lets_one_run_in(s3):
    from asm_dask import storage
    from asm_dask.errors import InputError
    from asm_dask.records.lock import OutputLock

    fs = s3.filesystem()
    fs.mkdir("asm-lock")
    with storage.configured(s3.storage_options()):
        with OutputLock("s3://asm-lock/out") as first:
            assert fs.exists("asm-lock/out/.asm-dask.lock")
            with pytest.raises(InputError, match=rf"^s3://asm-lock/out: in use by another asm-dask run "
                                                 rf"\({first.holder['run']}, "):
                with OutputLock("s3://asm-lock/out"):
                    pass
        assert not fs.exists("asm-lock/out/.asm-dask.lock")
        with OutputLock("s3://asm-lock/out"):  # free again
            pass


def test_a_jobs_storage_options_serve_its_call_and_its_run_and_nothing_after(s3, country, client):
    """A notebook's later reads (and later jobs) never meet a job's endpoint and keys: not
    in this process, not on the workers of the client it passed; the Run keeps them."""
    import fsspec

    fs = s3.filesystem()
    labels, features = _upload_country(fs, country, "asm-api")
    job = {"labels": labels, "features": features, "output": "s3://asm-api/out",
           "storage_options": s3.storage_options()}
    before = {protocol: dict(options) for protocol, options in fsspec.config.conf.items()}
    run = asm_dask.run(job, client)
    assert fsspec.config.conf == before
    assert set(client.run(lambda: repr(__import__("fsspec").config.conf.get("s3"))).values()) == {"None"}
    # The Run reads its folder with them: here, and on the workers for the predictions.
    assert run.metrics.n_cells == country.n_cells
    assert len(run.predictions(columns=["cell_id"]).compute()) == country.n_cells
    assert len(run.hotspots()) == run.metrics.n_hotspots
    assert run.model.n_features_in_ == 40 and fsspec.config.conf == before
    again = asm_dask.open_run("s3://asm-api/out", storage_options=s3.storage_options())
    assert again.metrics == run.metrics
    applied = asm_dask.predict(again, features, out="s3://asm-api/applied", client=client)
    assert applied.metrics.n_cells == country.n_cells and fsspec.config.conf == before


def _range_bytes(recording: str, key: str) -> tuple[int, int]:
    """Requests for ``key`` in a moto recording, and the bytes their ranges asked for."""
    requests, fetched = 0, 0
    for line in recording.splitlines():
        entry = json.loads(line)
        if entry["method"] == "GET" and entry["url"].split("?")[0].endswith(key):
            requests += 1
            start, end = entry["headers"]["Range"].removeprefix("bytes=").split("-")
            fetched += int(end) - int(start) + 1
    return requests, fetched


def test_a_cell_of_a_cloud_optimized_geotiff_on_s3_costs_its_blocks_not_the_file(s3, tmp_path, client):
    """A featurization of four cells of a 33 MB COG on object storage fetches its header
    and the blocks under the cells (as the S3 server records the requests), and makes
    the features the same file makes when read from disk."""
    import numpy as np
    import rasterio
    import rasterio.shutil
    import requests
    from pyproj import Transformer
    from rasterio.transform import from_origin

    plain, cog = tmp_path / "plain.tif", tmp_path / "scene.tif"
    pixels = np.random.default_rng(0).integers(1, 4000, (3, 2048, 2048)).astype("uint16")
    with rasterio.open(plain, "w", driver="GTiff", width=2048, height=2048, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500_000, 600_000, 10, 10), nodata=0) as dst:
        dst.write(pixels)
    rasterio.shutil.copy(plain, cog, driver="COG", blocksize=256, compress="NONE")
    fs = s3.filesystem()
    fs.mkdir("asm-imagery")
    fs.put(str(cog), "asm-imagery/scene.tif")
    # four cells of 0.005 degrees (about 55 pixels) in the middle of the scene
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(510_240, 589_760)
    west, south = round(lon, 2), round(lat, 2)
    grid = {"cell_size": 0.005, "bbox": [west, south, west + 0.01, south + 0.01]}
    method = {"name": "pool", "stats": ["mean", "std"]}

    requests.post(f"{s3.endpoint}/moto-api/recorder/reset-recording", timeout=10)
    requests.post(f"{s3.endpoint}/moto-api/recorder/start-recording", timeout=10)
    remote = asm_dask.featurize({"imagery": {"path": "s3://asm-imagery/scene.tif"}, "grid": grid, "method": method,
                                 "output": str(tmp_path / "remote.parquet"),
                                 "storage_options": s3.storage_options()}, client)
    requests.post(f"{s3.endpoint}/moto-api/recorder/stop-recording", timeout=10)
    recording = requests.get(f"{s3.endpoint}/moto-api/recorder/download-recording", timeout=10).text
    local = asm_dask.featurize({"imagery": {"path": str(cog)}, "grid": grid, "method": method,
                                "output": str(tmp_path / "local.parquet")}, client)

    assert remote.n_featurized == local.n_featurized == 4
    pd.testing.assert_frame_equal(pd.read_parquet(remote.output), pd.read_parquet(local.output))
    n_requests, fetched = _range_bytes(recording, "asm-imagery/scene.tif")
    block = 256 * 256 * 3 * 2
    # 110 x 110 pixels lie on at most 4 blocks; each process that opens the file reads its header
    assert 0 < n_requests and fetched < 12 * block, (n_requests, fetched)
    assert fetched < 0.1 * cog.stat().st_size
