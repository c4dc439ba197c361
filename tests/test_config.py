from pathlib import Path

import pytest

from asm_dask.config import job_from_dict, load_job
from asm_dask.errors import InputError


def test_minimal_job_gets_the_notebooks_settings(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "labels: {path: SLE_mines.csv}\nfeatures: {path: data/SLE_features.feather}\noutput: out/sle\n")
    job = load_job(tmp_path / "job.yaml")
    assert job.labels.path == str(tmp_path / "SLE_mines.csv")
    assert job.features.path == str(tmp_path / "data" / "SLE_features.feather")
    assert job.output == str(tmp_path / "out" / "sle")
    assert job.labels.filters.min_proportion_inspected == 0.2
    assert job.labels.filters.exclude_mine_types == ("commercial",)
    assert job.labels.filters.min_confidence == 3
    assert job.features.cell_size == 0.01
    assert job.split.test_size == 0.2 and job.split.seed == 1991
    assert job.model.alphas == "auto" and job.model.cv_folds == 5
    assert job.model.standardize is False and job.model.calibration == "isotonic"
    assert job.features.store == "auto" and job.features.store_path is None


def test_the_notebooks_alphas_are_searched_as_given(tmp_path):
    job = job_from_dict({"labels": "a.csv", "features": "f.feather", "output": "o",
                         "model": {"alphas": [0.01, 0.1, 1, 10]}})
    assert job.model.alphas == (0.01, 0.1, 1.0, 10.0)


def test_numbers_yaml_reads_as_text_are_taken_as_numbers(tmp_path):
    # YAML 1.1 reads 1e-12 and 1e12 (no decimal point) as strings.
    (tmp_path / "job.yaml").write_text("labels: a.csv\nfeatures: f.feather\noutput: o\n"
                                       "model: {alphas: [1e-12, 1e12, 5]}\n")
    assert load_job(tmp_path / "job.yaml").model.alphas == (1e-12, 1e12, 5.0)


def test_one_mine_type_without_brackets_is_a_list_of_one(tmp_path):
    job = job_from_dict({"labels": {"path": "a.csv", "filters": {"exclude_mine_types": "commercial"}},
                         "features": "f.feather", "output": "o"})
    assert job.labels.filters.exclude_mine_types == ("commercial",)


def test_the_sierra_leone_job_spells_out_the_defaults():
    jobs = Path(__file__).parents[1] / "jobs"
    job = load_job(jobs / "sierra_leone.yaml")
    minimal = job_from_dict({"labels": {"path": job.labels.path}, "features": {"path": job.features.path},
                             "output": job.output})
    assert job == minimal


@pytest.mark.parametrize("text, message", [
    ("labels: {path: a.csv}\nfeatures: {path: f.feather}\noutput: o\nmodle: {}\n", "unknown key(s) ['modle']"),
    ("labels: {path: a.csv, filter: {}}\nfeatures: {path: f}\noutput: o\n", "labels: unknown key(s) ['filter']"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\nmodel: {alphas: []}\n", "model.alphas"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\nmodel: {alphas: abc}\n", "model.alphas: expected 'auto'"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\nmodel: {alphas: 0.5}\n", "model.alphas: expected 'auto'"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\nmodel: {alphas: [1, x]}\n", "positive numbers"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\nmodel: {alphas: [.inf]}\n", "positive numbers"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\nmodel: {alphas: [1, 10, 1]}\n", "repeated"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: null\n", "output: expected a path"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: [a, b]\n", "output: expected a path"),
    ("labels: {path: null}\nfeatures: {path: f}\noutput: o\n", "labels.path: expected a path"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\nmodel: {calibration: platt}\n", "model.calibration"),
    ("labels: {path: a.csv}\noutput: o\n", "missing required key 'features'"),
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\nsplit: {test_size: 1.5}\n", "test_size"),
    ("labels: [oops\n", "not valid YAML"),
    ("labels: {path: a.csv}\nfeatures: {path: f, store: /data/st}\noutput: o\n",
     "features.store must be one of auto, always, never, got '/data/st' (the store's folder is features.store_path)"),
    ("labels: {path: a.csv}\nfeatures: {path: f, store_path: [x]}\noutput: o\n", "features.store_path: expected a path"),
])
def test_bad_job_files_are_rejected_with_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        load_job(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_filters_can_be_switched_off(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "labels: {path: l.csv, filters: {min_confidence: null, exclude_mine_types: []}}\n"
        "features: {path: f.feather}\noutput: o\n")
    filters = load_job(tmp_path / "job.yaml").labels.filters
    assert filters.min_confidence is None and filters.exclude_mine_types == ()
    assert filters.min_proportion_inspected == 0.2
