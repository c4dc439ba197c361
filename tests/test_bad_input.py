"""Bad input: one clear line naming the file and the problem, exit 2, no output written."""

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from builders import OWN_LINE, cli, grid_features, labels_frame, write_feather, write_job

import asm_dask
from asm_dask.config import load_job
from asm_dask.errors import InputError

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
        asm_dask.run(job, client)
    assert not (tmp_path / "out").exists()
    return str(error.value)


def test_cli_reports_one_line_and_exits_2(inputs):
    tmp_path, labels, features = inputs
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_feather(features, tmp_path / "features.feather")
    job = write_job(tmp_path, tmp_path / "missing.csv", tmp_path / "features.feather")
    done = cli("run", job)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"asm-dask: error: {tmp_path / 'missing.csv'}: labels file not found"
    assert not (tmp_path / "out").exists()

    job.write_text(job.read_text() + "modle: {alphas: [1]}\n")
    done = cli("run", job)
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
    run = asm_dask.run(write_job(tmp_path, tmp_path / "labels.csv", tmp_path / "features.feather"), client)
    assert run.metrics.n_cells == len(features)


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
    labels["sample_type"] = "targeted"  # a probability sample is kept whole, whatever the filters
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
        asm_dask.run(job, client)
    assert not (tmp_path / "out").exists()


def test_nan_features_are_dropped_counted_and_reported(inputs, client):
    tmp_path, labels, features = inputs
    features.loc[[3, 4], "feature_1"] = np.nan
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_feather(features, tmp_path / "features.feather")
    run = asm_dask.run(write_job(tmp_path, tmp_path / "labels.csv", tmp_path / "features.feather"), client)
    assert run.metrics.n_cells_dropped_nonfinite == 2
    assert run.metrics.n_cells == len(features) - 2


@pytest.mark.parametrize("split, expected", [
    ({"group_by": "block", "block_size": 5}, "holding out split.test_size=0.2 of 1 labelled block(s)"),
    ({"test_size": 0.999}, "leaves no training or no test set"),
])
def test_a_split_that_leaves_nothing_to_train_or_test_on(inputs, client, split, expected):
    tmp_path, labels, features = inputs
    assert expected in _run(tmp_path, labels, features, client, split=split)


def _cli_error(folder: Path, job: dict, *args: str) -> str:
    """Run ``asm-dask run`` on ``job`` (beside valid inputs in ``folder``) as a user would;
    it must fail at once with one line, exit 2, and write no output."""
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    done = cli("run", folder / "job.yaml", *args, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("asm-dask: error: ") and not done.stdout
    assert not (folder / "out").exists()
    return done.stderr.strip().removeprefix("asm-dask: error: ")


@pytest.fixture
def valid(inputs):
    """Valid inputs and a job file's content for them; each test breaks one thing."""
    tmp_path, labels, features = inputs
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_feather(features, tmp_path / "features.feather")
    return tmp_path, {"labels": {"path": "labels.csv"}, "features": {"path": "features.feather"}, "output": "out"}


@pytest.mark.parametrize("section, settings, expected", [
    ("model", {"alphas": "abc"}, "model.alphas: expected 'auto' or a non-empty list of distinct positive numbers, got 'abc'"),
    ("model", {"alphas": 0.5}, "model.alphas: expected 'auto' or a non-empty list of distinct positive numbers, got 0.5"),
    ("model", {"cv_folds": "five"}, "model.cv_folds: expected an integer >= 2, got 'five'"),
    ("model", {"standardize": "no"}, "model.standardize: expected true, false or 'auto', got 'no'"),
    ("split", {"test_size": "half"}, "split.test_size: expected a number between 0 and 1, exclusive, got 'half'"),
    ("split", {"seed": "abc"}, "split.seed: expected an integer from 0 to 4294967295, got 'abc'"),
    ("features", {"path": "features.feather", "rows_per_partition": "many"},
     "features.rows_per_partition: expected an integer >= 1, or null, got 'many'"),
    ("labels", {"path": "labels.csv", "filters": {"exclude_mine_types": [1]}},
     "labels.filters.exclude_mine_types: expected a mine type or a list of them, as text, or null, got [1]"),
    ("report", {"hotspot_threshold": "high"}, "report.hotspot_threshold: expected a probability in (0, 1], got 'high'"),
])
def test_a_setting_of_the_wrong_type_is_one_line(valid, section, settings, expected):
    folder, job = valid
    assert _cli_error(folder, {**job, section: settings}) == f"{folder / 'job.yaml'}: {expected}"


def test_output_that_is_an_existing_file(valid):
    folder, job = valid
    (folder / "results").write_text("keep me")
    assert _cli_error(folder, {**job, "output": "results"}) == \
        f"{folder / 'results'}: is a file, expected a folder (output)"
    assert (folder / "results").read_text() == "keep me"
    assert _cli_error(folder, job, "--out", folder / "results") == \
        f"{folder / 'results'}: is a file, expected a folder (output)"
    assert _cli_error(folder, job, "--out", folder / "results" / "run") == \
        f"{folder / 'results' / 'run'}: {folder / 'results'} is a file, not a folder (output)"
    assert (folder / "results").read_text() == "keep me"


@pytest.fixture
def unwritable(tmp_path):
    """A folder that cannot be written in: one without write permission, or /proc for
    root, whom permissions do not stop."""
    if os.geteuid() == 0:
        yield Path("/proc")
        return
    folder = tmp_path / "read_only"
    folder.mkdir(mode=0o555)
    yield folder
    folder.chmod(0o755)


def test_output_that_cannot_be_written(valid, unwritable):
    folder, job = valid
    message = _cli_error(folder, {**job, "output": str(unwritable / "asm_dask_out" / "run")})
    assert message.startswith(f"{unwritable / 'asm_dask_out' / 'run'}: cannot write the output folder in {unwritable}: ")
    assert message.endswith(" (output)")
    assert not (unwritable / "asm_dask_out").exists()


def test_labels_path_that_is_a_folder(valid):
    folder, job = valid
    (folder / "labels").mkdir()
    assert _cli_error(folder, {**job, "labels": "labels"}) == \
        f"{folder / 'labels'}: is a folder, expected a CSV file (labels.path)"


def test_features_path_that_is_a_folder(valid):
    # A Parquet dataset folder is not read: features are opened as one file.
    folder, job = valid
    (folder / "dataset.parquet").mkdir()
    assert _cli_error(folder, {**job, "features": "dataset.parquet"}) == \
        f"{folder / 'dataset.parquet'}: is a folder, expected a Feather, Parquet or CSV file (features.path)"


def test_a_symbolic_link_loop(valid):
    folder, job = valid
    (folder / "mines.csv").symlink_to(folder / "mines_link.csv")
    (folder / "mines_link.csv").symlink_to(folder / "mines.csv")
    assert _cli_error(folder, {**job, "labels": "mines.csv"}) == \
        f"{folder / 'mines.csv'}: cannot be opened: a symbolic link loop (labels.path)"
    assert _cli_error(folder, job, "--out", folder / "mines.csv" / "out") == \
        f"{folder / 'mines.csv'}: cannot be opened: a symbolic link loop (output)"


def test_a_local_path_with_a_double_colon(valid):
    folder, job = valid
    (folder / "survey::2024").mkdir()
    os.replace(folder / "labels.csv", folder / "survey::2024" / "labels.csv")
    message = _cli_error(folder, {**job, "labels": "survey::2024/labels.csv"})
    assert message == (f"{folder / 'job.yaml'}: labels.path: expected a local path without '::' (fsspec reads "
                       "'a::b' as a chain of URLs; rename the file or its folder), "
                       f"got 'survey::2024/labels.csv'")


def test_one_mine_type_without_brackets_filters_that_type(valid):
    # Not a string of letters that filters nothing: a list of one.
    from asm_dask.read.labels import read_labels

    folder, job = valid
    frame = labels_frame([(-11.9, 8.1)] * 4, [0, 0, 1, 1]).assign(mine_type=["commercial", "artisanal"] * 2)
    frame.to_csv(folder / "labels.csv", index=False)
    (folder / "job.yaml").write_text(yaml.safe_dump(
        {**job, "labels": {"path": "labels.csv", "filters": {"exclude_mine_types": "commercial"}}}))
    assert read_labels(load_job(folder / "job.yaml").labels).removed["mine_type"] == 2


def _broken_features(folder: Path, features, problem: str) -> str:
    """Write ``folder``/job.yaml on features broken by ``problem``, found only inside a Dask
    task; return the one line that must name it."""
    if problem == "image_id":
        features.loc[17, "image_id"] = "lat_8--4__lon_eleven"
        path = write_feather(features, folder / "features.feather")
        expected = (f"{path}: row 18: cannot parse image_id 'lat_8--4__lon_eleven' "
                    "(expected like 'lat_8--405__lon_-11--235')")
    elif problem == "nan coordinate":
        coordinates = features["image_id"].str.replace("--", ".").str.extract(r"lat_(.*)__lon_(.*)").astype(float)
        table = features.drop(columns="image_id").assign(lat=coordinates[0], lon=coordinates[1])
        table.loc[5, "lat"] = np.nan
        path = write_feather(table, folder / "features.feather")
        expected = (f"{path}: row 6: coordinates out of range or missing (lat=nan, lon={table.loc[5, 'lon']}); "
                    "expected -90..90 and -180..180 degrees")
    else:  # a value in a CSV that is not a number
        features["feature_2"] = features["feature_2"].astype(object)
        features.loc[40, "feature_2"] = "x1"
        path = folder / "features.csv"
        features.to_csv(path, index=False)
        expected = f"{path}: row 41, column 'feature_2': cannot read 'x1' as a number"
    (folder / "job.yaml").write_text(yaml.safe_dump(
        {"labels": {"path": "labels.csv"}, "features": {"path": path.name}, "output": "out"}))
    return expected


def _failed_in_a_task(folder: Path, *args: str) -> tuple[str, str]:
    """Run ``asm-dask run`` on ``folder``/job.yaml, which must fail inside a task; check that
    the console holds asm-dask's own lines and one error line last, exit 2, and that the
    output folder holds only the log; return the error and the log."""
    done = cli("run", folder / "job.yaml", *args, timeout=120)
    assert done.returncode == 2, done.stderr
    *own, last = done.stderr.strip().splitlines()
    assert all(OWN_LINE.match(line) for line in own), done.stderr
    assert "Traceback" not in done.stderr and "Compute Failed" not in done.stderr, done.stderr
    log = folder / "out" / "asm-dask.log"
    assert last.startswith("asm-dask: error: ") and last.endswith(f" (details: {log})")
    assert os.listdir(folder / "out") == ["asm-dask.log"]
    text = log.read_text()
    assert text.startswith(f"==== asm-dask run {folder / 'job.yaml'} {' '.join(args)}".rstrip())
    assert "Traceback (most recent call last)" in text and "[asm-dask] open features..." in text
    error = last.removeprefix("asm-dask: error: ").removesuffix(f" (details: {log})")
    assert text.rstrip().endswith(f"InputError: {error}")
    return error, text


@pytest.mark.parametrize("problem", ["image_id", "nan coordinate", "csv value"])
def test_an_error_inside_a_task_is_one_line_and_the_traceback_is_in_the_log(valid, inputs, problem):
    folder, _ = valid
    expected = _broken_features(folder, inputs[2], problem)
    error, log = _failed_in_a_task(folder)
    assert error == expected
    assert "distributed.worker ERROR: Compute Failed" in log  # the in-process worker's own record
    if problem == "csv value":  # the feature store the CSV was being converted into is gone
        assert not (folder / "features.csv.asm_dask_store").exists()


def test_an_error_inside_a_worker_process_of_a_local_cluster(valid, inputs):
    folder, _ = valid
    expected = _broken_features(folder, inputs[2], "image_id")
    (folder / "processes.yaml").write_text("kind: local\nprocesses: true\nn_workers: 2\n")
    error, log = _failed_in_a_task(folder, "--cluster", str(folder / "processes.yaml"))
    assert error == expected
    assert 'grid.py", line' in log  # where the worker raised it


def test_an_error_inside_a_task_on_a_running_scheduler(valid, inputs, dask_scheduler_with_workers):
    cluster = dask_scheduler_with_workers(n_workers=2)
    folder, _ = valid
    expected = _broken_features(folder, inputs[2], "csv value")
    error, log = _failed_in_a_task(folder, "--scheduler", cluster.address)
    assert error == expected
    assert "in iter_csv_chunks" in log  # the worker's frames travel with the error
    # The worker's own report stays where that worker's output goes.
    assert any("Compute Failed" in (cluster.log_folder / f"worker-{i}.log").read_text() for i in range(2))


def test_verbose_shows_the_details_on_the_console_too(valid, inputs):
    folder, _ = valid
    expected = _broken_features(folder, inputs[2], "image_id")
    done = cli("run", folder / "job.yaml", "--verbose", timeout=120)
    log = folder / "out" / "asm-dask.log"
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"asm-dask: error: {expected} (details: {log})"
    assert "Compute Failed" in done.stderr and "Traceback (most recent call last)" in done.stderr
    assert "Compute Failed" in log.read_text() and "Traceback (most recent call last)" in log.read_text()


def test_a_csv_value_is_found_by_row_past_the_first_block(tmp_path, monkeypatch):
    # Arrow reads a CSV in blocks (64 MB); rows are counted on across them.
    from asm_dask.read import csv_chunks
    from asm_dask.read.features import detect_layout

    frame = grid_features(LATS, LONS)
    frame["feature_4"] = frame["feature_4"].astype(object)
    frame.loc[350, "feature_4"] = "1,5"
    frame.to_csv(tmp_path / "f.csv", index=False)
    monkeypatch.setattr(csv_chunks, "CSV_BLOCK_BYTES", 4096)
    layout = detect_layout(str(tmp_path / "f.csv"))
    with pytest.raises(InputError) as error:
        list(csv_chunks.iter_csv_chunks(layout))
    assert str(error.value) == f"{tmp_path / 'f.csv'}: row 351, column 'feature_4': cannot read '1,5' as a number"
