"""The Python API as a notebook uses it: what it takes, what it refuses in one line, and
what a Run reads; found by a new user's trial of the API."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

import asm_dask
from asm_dask import InputError


@pytest.fixture(scope="module")
def finished(country, tmp_path_factory, client):
    """A run of the small country, made from Python: its Run and its folder."""
    out = tmp_path_factory.mktemp("api") / "run"
    return asm_dask.run({"labels": country.labels, "features": country.features, "output": out}, client), out


def test_paths_and_numpy_values_are_taken_as_a_job_file_would_hold_them(country, tmp_path):
    job = asm_dask.load_job({"labels": country.labels, "features": {"path": country.features},
                             "output": tmp_path / "out",
                             "model": {"cv_folds": np.int64(4), "alphas": np.array([0.1, 1.0, 10.0])},
                             "split": {"test_size": np.float64(0.25)}})
    assert job.labels.path == str(country.labels) and job.output == str(tmp_path / "out")
    assert job.model.cv_folds == 4 and job.model.alphas == (0.1, 1.0, 10.0) and job.split.test_size == 0.25
    assert job.replace(output=tmp_path / "other").output == str(tmp_path / "other")


@pytest.mark.parametrize(("call", "message"), [
    (lambda c, t: asm_dask.run([c.labels, c.features]),
     "job: expected a job file's path, a mapping of its settings or a Job, got [PosixPath("),
    (lambda c, t: asm_dask.run(None), "job: expected a job file's path, a mapping of its settings or a Job, got null"),
    (lambda c, t: asm_dask.load_job({"labels": c.labels, "features": c.features, "output": t}, base=3),
     "base: expected a path or URL, got 3"),
    (lambda c, t: asm_dask.run({"labels": c.labels, "features": pd.read_feather(c.features), "output": t}),
     "job: features: expected a mapping, a path, or a list of them (tables joined by cell), got a pandas.DataFrame"),
    (lambda c, t: asm_dask.run({"labels": c.labels, "features": c.features, "output": t}, client=3),
     "client: expected a distributed.Client or a scheduler's address, got 3"),
    (lambda c, t: asm_dask.predict(t, pd.read_feather(c.features)),
     "features: expected a path or URL, got a pandas.DataFrame"),
    (lambda c, t: asm_dask.predict(t, c.features, hotspot_threshold="0.5"),
     "hotspot_threshold: expected a probability in (0, 1], got '0.5'"),
    (lambda c, t: asm_dask.predict(t, c.features, out=""), "out: expected a path or URL, got ''"),
    (lambda c, t: asm_dask.open_run(t, storage_options={"s3": "key"}),
     "storage_options: expected a mapping of protocol to options"),
])
def test_arguments_of_the_wrong_kind_are_one_line(country, tmp_path, call, message):
    with pytest.raises(InputError) as error:
        call(country, tmp_path / "out")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_numpy_numbers_are_taken_as_arguments(finished, country, tmp_path, client):
    """What a notebook computes is often a NumPy number: an integer or a probability all the same."""
    run, _ = finished
    drawn = asm_dask.sample(run, n=np.int64(12), strata=np.int64(2), seed=np.int64(1), out=tmp_path / "sampled")
    assert len(drawn.cells) == 12 and len(drawn.design["strata"]) == 2
    predicted = asm_dask.predict(run, country.features, out=tmp_path / "predicted", client=client,
                                 hotspot_threshold=np.float32(0.5))
    assert predicted.metrics.n_hotspots == run.metrics.n_hotspots
    changed = asm_dask.change(run, predicted, out=tmp_path / "changed", hotspot_threshold=np.float64(0.5))
    assert changed.change.counts["n_new_cells"] == 0
    with pytest.raises(InputError, match=r"^n: expected an integer >= 2, got true$"):
        asm_dask.sample(run, n=True)


def test_a_scheduler_address_serves_as_the_client(country, tmp_path, dask_scheduler_with_workers):
    cluster = dask_scheduler_with_workers(n_workers=1)
    run = asm_dask.run({"labels": country.labels, "features": country.features, "output": tmp_path / "out"},
                       client=cluster.address)
    assert run.metrics.n_cells == country.n_cells
    with dask.config.set({"distributed.comm.timeouts.connect": "3s"}), \
            pytest.raises(InputError, match=r"^cannot reach the Dask scheduler at tcp://127.0.0.1:1: "):
        asm_dask.run({"labels": country.labels, "features": country.features, "output": tmp_path / "again"},
                     client="tcp://127.0.0.1:1")


def test_a_runs_warnings_point_at_the_line_that_called_it(country, tmp_path, client):
    job = {"labels": country.labels, "features": country.features, "output": tmp_path / "out",
           "model": {"alphas": [0.01, 0.1]}}
    with pytest.warns(asm_dask.AsmDaskWarning, match="the best alpha, 0.1, is at the edge") as caught:
        asm_dask.run(job, client)
    assert {Path(w.filename).name for w in caught if issubclass(w.category, asm_dask.AsmDaskWarning)} \
        == {"test_api.py"}
    X = np.random.default_rng(0).normal(size=(200, 5))
    with pytest.warns(asm_dask.AlphaAtGridEdgeWarning) as caught:
        asm_dask.RidgeGridClassifier(alphas=[1e6, 1e7]).fit(X, (X[:, 0] > 0).astype(int))
    assert [Path(w.filename).name for w in caught] == ["test_api.py"]
    # the estimators' own kinds are caveats as well: one filter silences them all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", asm_dask.AsmDaskWarning)
        asm_dask.RidgeGridClassifier(alphas=[1e6, 1e7]).fit(X, (X[:, 0] > 0).astype(int))


def test_a_run_has_no_log_of_its_own_and_says_so(finished):
    run, out = finished
    assert run.files.log is None and not (out / "asm-dask.log").exists()
    assert run.files.report == str(out / "report.html")


def test_a_notebook_shows_a_run_as_its_numbers_and_its_interactive_map(finished):
    run, _ = finished
    page = run._repr_html_()
    assert "test ROC AUC" in page and page.count("<iframe srcdoc=") == 1
    assert "leaflet" in page.lower()  # the map's own script, inline: it works offline
    assert run.map()._repr_html_().startswith("<iframe srcdoc=")


def test_no_hotspots_keep_the_columns_of_hotspots_csv(finished, country, tmp_path, client):
    run, _ = finished
    columns = list(pd.read_csv(run.files.hotspots_csv, nrows=0).columns)
    assert len(run.hotspots()) == run.metrics.n_hotspots > 0
    assert list(run.hotspots().columns) == columns + ["geometry"]
    # Platt scaling never reaches 1: no cell is a hotspot at 1.
    none = asm_dask.run({"labels": country.labels, "features": country.features, "output": tmp_path / "none",
                         "model": {"calibration": "sigmoid"}, "report": {"hotspot_threshold": 1}}, client)
    assert none.metrics.n_hotspots == 0
    empty = none.hotspots()
    assert empty.empty and list(empty.columns) == columns + ["geometry"] and empty.crs.to_epsg() == 4326


def test_a_run_written_over_by_another_is_stale_not_mixed(country, tmp_path, client):
    job = {"labels": country.labels, "features": country.features, "output": tmp_path / "out",
           "model": {"alphas": [1.0, 10.0, 100.0]}}
    first = asm_dask.run(job, client)
    with pytest.warns(asm_dask.AsmDaskWarning):
        asm_dask.run({**job, "model": {"alphas": [1000.0, 1e4]}}, client)
    given = (lambda: asm_dask.predict(first, country.features, out=tmp_path / "predicted"),
             lambda: asm_dask.sample(first, 20, out=tmp_path / "sampled"),
             lambda: asm_dask.change(first, tmp_path / "out", out=tmp_path / "changed"))
    for read in (lambda: first.model, lambda: first.predictions(), lambda: first.hotspots(), first.map, *given):
        with pytest.raises(InputError, match=r"holds another run now .* this Run is stale; open the folder again"):
            read()
    assert not any((tmp_path / name).exists() for name in ("predicted", "sampled", "changed"))
    assert first.metrics.alphas_searched == [1.0, 10.0, 100.0]  # read when it was made
    assert asm_dask.open_run(tmp_path / "out").metrics.alphas_searched == [1000.0, 1e4]


def test_the_working_folder_does_not_change_where_a_run_is(finished, tmp_path, monkeypatch):
    run, out = finished
    monkeypatch.chdir(tmp_path)
    assert asm_dask.open_run(out).folder == str(out) == os.fspath(run.folder)
