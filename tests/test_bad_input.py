"""Bad input: one clear line naming the file and the problem, exit 2, no output written."""

import numpy as np
import pytest

from asm_dask.config import load_job
from asm_dask.errors import InputError
from asm_dask.job import run_job
from builders import asm_dask, grid_features, labels_frame, write_feather, write_job

LATS = np.round(np.arange(8.005, 8.2, 0.01), 3)
LONS = np.round(np.arange(-11.995, -11.8, 0.01), 3)


@pytest.fixture
def inputs(tmp_path):
    """Valid labels and features; each test breaks one thing."""
    features = grid_features(LATS, LONS)
    rng = np.random.default_rng(0)
    points = list(zip(rng.uniform(-11.99, -11.81, 120), rng.uniform(8.01, 8.19, 120)))
    labels = labels_frame(points, rng.integers(0, 2, 120))
    return tmp_path, labels, features


def _run(tmp_path, labels, features, client, **job_extra):
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_feather(features, tmp_path / "features.feather")
    job = load_job(write_job(tmp_path, tmp_path / "labels.csv", tmp_path / "features.feather", **job_extra))
    with pytest.raises(InputError) as error:
        run_job(job, client)
    assert not (tmp_path / "out").exists()
    return str(error.value)


def test_cli_reports_one_line_and_exits_2(inputs):
    tmp_path, labels, features = inputs
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_feather(features, tmp_path / "features.feather")
    job = write_job(tmp_path, tmp_path / "missing.csv", tmp_path / "features.feather")
    done = asm_dask("run", job)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"asm-dask: error: {tmp_path / 'missing.csv'}: labels file not found"
    assert not (tmp_path / "out").exists()

    job.write_text(job.read_text() + "modle: {alphas: [1]}\n")
    done = asm_dask("run", job)
    assert done.returncode == 2 and "unknown key(s) ['modle']" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_missing_column(inputs, client):
    tmp_path, labels, features = inputs
    message = _run(tmp_path, labels.drop(columns="mine_type"), features, client)
    assert "labels.csv: missing required column(s) ['mine_type']" in message


def test_unparseable_image_id(inputs, client):
    tmp_path, labels, features = inputs
    features.loc[17, "image_id"] = "lat_8--4__lon_eleven"
    message = _run(tmp_path, labels, features, client)
    assert message == f"{tmp_path / 'features.feather'}: row 18: cannot parse image_id 'lat_8--4__lon_eleven' " \
                      "(expected like 'lat_8--405__lon_-11--235')"


@pytest.mark.parametrize("store", ["never", "always"])
def test_features_without_rows(inputs, client, store):
    tmp_path, labels, features = inputs
    message = _run(tmp_path, labels, features.iloc[:0], client, features_settings={"store": store})
    assert message.startswith(f"{tmp_path / 'features.feather'}: no rows")


def test_categorical_image_ids_are_read_as_text(inputs, client, tmp_path):
    _, labels, features = inputs
    features["image_id"] = features["image_id"].astype("category")
    labels.to_csv(tmp_path / "labels.csv", index=False)
    features.to_feather(tmp_path / "features.feather")
    result = run_job(load_job(write_job(tmp_path, tmp_path / "labels.csv", tmp_path / "features.feather")), client)
    assert result.metrics["n_cells"] == len(features)


def test_coordinates_out_of_range(inputs, client):
    tmp_path, labels, features = inputs
    labels.loc[5, "lon"] = 200.0
    assert "labels.csv: row 6: coordinates out of range" in _run(tmp_path, labels, features, client)


def test_duplicate_cells(inputs, client):
    tmp_path, labels, features = inputs
    features.loc[30, "image_id"] = features.loc[2, "image_id"]
    assert "features.feather: rows 3 and 31 describe the same cell" in _run(tmp_path, labels, features, client)


def test_one_class_after_filtering(inputs, client):
    tmp_path, labels, features = inputs
    labels.loc[labels["label"] == 0, "confidence"] = 1
    assert "hold only class(es) [1]" in _run(tmp_path, labels, features, client)


def test_no_label_on_any_cell(inputs, client):
    tmp_path, labels, features = inputs
    labels["lat"] = labels["lat"] + 5
    message = _run(tmp_path, labels, features, client)
    assert "none of the 120 labels falls on a cell" in message


def test_missing_features_file(inputs, client):
    tmp_path, labels, features = inputs
    labels.to_csv(tmp_path / "labels.csv", index=False)
    job = load_job(write_job(tmp_path, tmp_path / "labels.csv", tmp_path / "nope.feather"))
    with pytest.raises(InputError, match="nope.feather: features file not found"):
        run_job(job, client)
    assert not (tmp_path / "out").exists()


def test_nan_features_are_dropped_counted_and_reported(inputs, client):
    tmp_path, labels, features = inputs
    features.loc[[3, 4], "feature_1"] = np.nan
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_feather(features, tmp_path / "features.feather")
    result = run_job(load_job(write_job(tmp_path, tmp_path / "labels.csv", tmp_path / "features.feather")), client)
    assert result.metrics["n_cells_dropped_nonfinite"] == 2
    assert result.metrics["n_cells"] == len(features) - 2


@pytest.mark.parametrize("split, expected", [
    ({"group_by": "block", "block_size": 5}, "holding out split.test_size=0.2 of 1 labelled block(s)"),
    ({"test_size": 0.999}, "leaves no training or no test set"),
])
def test_a_split_that_leaves_nothing_to_train_or_test_on(inputs, client, split, expected):
    tmp_path, labels, features = inputs
    assert expected in _run(tmp_path, labels, features, client, split=split)
