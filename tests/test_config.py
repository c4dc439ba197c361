import os
from pathlib import Path

import pytest

from asm_dask.config import FeaturesConfig, LabelFilters, job_from_dict, load_job
from asm_dask.config.reading import resolve_path
from asm_dask.errors import InputError
from asm_dask.records.outputs import check_run_paths as check_paths

MINIMAL = {"labels": "a.csv", "features": "f.feather", "output": "o"}


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
    assert job.model.standardize == "auto" and job.model.calibration == "isotonic"
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
    # PyYAML keeps the last of a key given twice: a second output would send the run elsewhere
    ("labels: {path: a.csv}\nfeatures: {path: f}\noutput: o\noutput: p\n",
     "not valid YAML ('output' is given twice, at lines 3 and 4)"),
    ("labels: {path: a.csv}\nfeatures: {path: f, path: g}\noutput: o\n", "not valid YAML ('path' is given twice, at line 2)"),
    ("labels: {path: a.csv}\nfeatures: {path: f, store: /data/st}\noutput: o\n",
     "features.store: expected 'auto', 'always' or 'never' (the store's folder is features.store_path), got '/data/st'"),
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


@pytest.mark.parametrize("settings, message", [
    ({"model": {"alphas": "abc"}},
     "model.alphas: expected 'auto' or a non-empty list of distinct positive numbers, got 'abc'"),
    ({"model": {"alphas": 0.5}}, "model.alphas: expected 'auto' or a non-empty list of distinct positive numbers, got 0.5"),
    ({"model": {"cv_folds": "five"}}, "model.cv_folds: expected an integer >= 2, got 'five'"),
    ({"model": {"cv_folds": 5.5}}, "model.cv_folds: expected an integer >= 2, got 5.5"),
    ({"model": {"cv_folds": True}}, "model.cv_folds: expected an integer >= 2, got true"),
    ({"model": {"standardize": "yes"}}, "model.standardize: expected true, false or 'auto', got 'yes'"),
    ({"model": {"standardize": 1}}, "model.standardize: expected true, false or 'auto', got 1"),
    ({"model": {"calibration": None}}, "model.calibration: expected 'isotonic' or 'sigmoid', got null"),
    ({"split": {"test_size": "half"}}, "split.test_size: expected a number between 0 and 1, exclusive, got 'half'"),
    ({"split": {"seed": "abc"}}, "split.seed: expected an integer from 0 to 4294967295, got 'abc'"),
    ({"split": {"seed": -1}}, "split.seed: expected an integer from 0 to 4294967295, got -1"),
    ({"split": {"group_by": "district"}}, "split.group_by: expected 'cell' or 'block', got 'district'"),
    ({"split": {"block_size": 0}}, "split.block_size: expected a number > 0, got 0"),
    ({"split": 5}, "split: expected a mapping, got 5"),
    ({"features": {"path": "f", "rows_per_partition": "many"}},
     "features.rows_per_partition: expected an integer >= 1, or null, got 'many'"),
    ({"features": {"path": "f", "cell_size": True}}, "features.cell_size: expected a number > 0, got true"),
    ({"features": {"path": "f", "cell_size": ".nan"}}, "features.cell_size: expected a number > 0, got '.nan'"),
    ({"features": {"path": "f", "prefix": ""}}, "features.prefix: expected text, or null, got ''"),
    ({"features": 5}, "features: expected a mapping, a path, or a list of them (tables joined by cell), got 5"),
    ({"labels": {"path": "a.csv", "filters": {"min_proportion_inspected": 2}}},
     "labels.filters.min_proportion_inspected: expected a proportion from 0 to 1, or null, got 2"),
    ({"labels": {"path": "a.csv", "filters": {"min_confidence": "high"}}},
     "labels.filters.min_confidence: expected a number, or null, got 'high'"),
    ({"labels": {"path": "a.csv", "filters": {"exclude_mine_types": [1, 2]}}},
     "labels.filters.exclude_mine_types: expected a mine type or a list of them, as text, or null, got [1, 2]"),
    ({"report": {"hotspot_threshold": 0}}, "report.hotspot_threshold: expected a probability in (0, 1], got 0"),
    ({"report": {"boundaries": {"path": "b.gpkg"}}}, "report.boundaries: missing required key 'name_column'"),
    ({"report": {"boundaries": {"path": "b.gpkg", "name_column": ""}}},
     "report.boundaries.name_column: expected text, got ''"),
    ({"output": ["out"]}, "output: expected a path or URL of a folder, got ['out']"),
    ({"output": "a::b"}, "output: expected a folder path or URL without '::'"),
    ({"features": {"path": "f", "store_path": 3}}, "features.store_path: expected a path or URL of a folder, or null"),
    ({"storage_options": {"s3": "http://x"}}, "storage_options: expected a mapping of protocol to options"),
    ({"labels": "/data/a::b/labels.csv"}, "labels.path: expected a local path without '::' (fsspec reads 'a::b' "
                                          "as a chain of URLs; rename the file or its folder), got '/data/a::b/labels.csv'"),
    ({"features": "data::2024.feather"}, "features.path: expected a local path without '::'"),
])
def test_settings_of_the_wrong_type_name_the_key_the_value_and_what_was_expected(settings, message):
    with pytest.raises(InputError) as error:
        job_from_dict({**MINIMAL, **settings}, source="job.yaml")
    assert str(error.value).startswith(f"job.yaml: {message}")
    assert "\n" not in str(error.value)


def test_every_problem_is_reported_on_one_line():
    with pytest.raises(InputError) as error:
        job_from_dict({**MINIMAL, "split": {"test_size": "half", "seed": "abc", "typo": 1}, "modle": {}}, source="j")
    assert str(error.value) == (
        "j: split.test_size: expected a number between 0 and 1, exclusive, got 'half'; "
        "split.seed: expected an integer from 0 to 4294967295, got 'abc'; "
        "split: unknown key(s) ['typo']; known keys: ['block_size', 'group_by', 'seed', 'test_size']; "
        "unknown key(s) ['modle']; known keys: ['estimate', 'features', 'labels', 'model', 'output', 'report', 'split', "
            "'storage_options']")


def test_whole_numbers_are_integers_and_exponent_text_is_a_number():
    job = job_from_dict({**MINIMAL, "model": {"cv_folds": 5.0},
                         "features": {"path": "f", "rows_per_partition": "1e6", "cell_size": "1e-2"}})
    assert job.model.cv_folds == 5 and isinstance(job.model.cv_folds, int)
    assert job.features.rows_per_partition == 1_000_000 and isinstance(job.features.rows_per_partition, int)
    assert job.features.cell_size == 0.01


def test_settings_keep_the_number_type_written_so_the_run_key_does_not_change():
    # as_dict feeds the run key: block_size 1 must stay 1, not become 1.0, and lists stay tuples.
    job = job_from_dict({**MINIMAL, "split": {"block_size": 1}, "model": {"alphas": [1, 10]},
                         "labels": {"path": "a.csv", "filters": {"exclude_mine_types": "commercial"}}}, base="/b")
    assert job.as_dict() == {
        "labels": {"path": "/b/a.csv", "filters": {"min_proportion_inspected": 0.2,
                                                   "exclude_mine_types": ("commercial",), "min_confidence": 3},
                   "year": None},
        "features": {"path": "/b/f.feather", "cell_size": 0.01, "prefix": None, "store": "auto",
                     "store_path": None, "rows_per_partition": None, "name": None, "join": (), "years": {}},
        "output": "/b/o",
        "split": {"test_size": 0.2, "seed": 1991, "group_by": "cell", "block_size": 1},
        "model": {"alphas": (1.0, 10.0), "cv_folds": 5, "standardize": "auto", "calibration": "isotonic",
                  "estimators": {"ridge": None}, "select": None},
        "report": {"hotspot_threshold": 0.5, "boundaries": None, "next_labels": 100},
        "estimate": {"sample_types": ("random",)},
        "storage_options": {}}
    assert type(job.as_dict()["split"]["block_size"]) is int


def test_null_sections_take_their_defaults_and_urls_pass_through():
    job = job_from_dict({**MINIMAL, "labels": {"path": "a.csv", "filters": None}, "split": None, "model": None,
                         "features": "simplecache::s3://bucket/f.parquet", "report": {"boundaries": None}})
    assert job.split == job_from_dict(MINIMAL).split
    # filters are the exception: null switches them off, as it does each one (and as
    # commenting out every line under ``filters:`` leaves it)
    assert job.labels.filters == LabelFilters(None, (), None)
    assert job.features.path == "simplecache::s3://bucket/f.parquet"


def test_sections_built_in_code_are_validated_but_not_resolved():
    assert LabelFilters(None, (), None).exclude_mine_types == ()
    assert FeaturesConfig(path="rel/f.feather").path == "rel/f.feather"
    with pytest.raises(ValueError, match="cell_size"):
        FeaturesConfig(path="f", cell_size="small")


def test_replace_checks_the_new_settings():
    job = job_from_dict(MINIMAL)
    assert job.replace(output="/elsewhere").output == "/elsewhere"
    assert job.replace(output="s3://bucket/out").output == "s3://bucket/out"
    with pytest.raises(InputError, match="^output: expected a path or URL of a folder"):
        job.replace(output=None)


def test_a_symbolic_link_loop_is_left_for_check_paths_to_name(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert resolve_path("a", tmp_path) == str(tmp_path / "a")


def test_a_job_file_that_is_not_text_is_one_line(tmp_path):
    (tmp_path / "job.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InputError, match="job.yaml: cannot read job file"):
        load_job(tmp_path / "job.yaml")


@pytest.fixture
def files(tmp_path):
    """A job whose inputs exist, in tmp_path."""
    (tmp_path / "labels.csv").write_text("lon,lat,label\n")
    (tmp_path / "features.feather").write_bytes(b"ARROW1")
    return tmp_path, {"labels": "labels.csv", "features": "features.feather", "output": "out"}


def _path_problem(files, **changes) -> str:
    folder, raw = files
    with pytest.raises(InputError) as error:
        check_paths(job_from_dict({**raw, **changes}, base=folder))
    assert not (folder / "out").exists()
    return str(error.value)


def test_check_paths_accepts_a_sound_job_and_writes_nothing(files):
    folder, raw = files
    before = sorted(os.listdir(folder))
    check_paths(job_from_dict({**raw, "output": "new/deeper/out"}, base=folder))
    assert sorted(os.listdir(folder)) == before


def test_check_paths_looks_at_urls_too():
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe_file("/check/labels.csv", b"lon,lat\n")
    memory.pipe_file("/check/f.feather", b"x")
    memory.pipe_file("/check/a_file", b"x")
    sound = {"labels": "memory://check/labels.csv", "features": "memory://check/f.feather",
             "output": "memory://check/out"}
    check_paths(job_from_dict(sound))
    assert sorted(memory.ls("/check", detail=False)) == ["/check/a_file", "/check/f.feather", "/check/labels.csv"]
    for changes, message in [
            ({"features": "memory://check/missing.feather"}, "memory://check/missing.feather: features file not found"),
            ({"labels": "memory://check"}, "memory://check: is a folder, expected a CSV file (labels.path)"),
            ({"output": "memory://check/a_file"}, "memory://check/a_file: is a file, expected a folder (output)"),
            ({"output": "memory://check/a_file/run"},
             "memory://check/a_file/run: memory://check/a_file is a file, not a folder (output)")]:
        with pytest.raises(InputError) as error:
            check_paths(job_from_dict({**sound, **changes}))
        assert str(error.value) == message


def test_check_paths_names_each_problem(files):
    folder, _ = files
    (folder / "a_folder").mkdir()
    (folder / "a_file").write_text("x")
    (folder / "loop_a").symlink_to(folder / "loop_b")
    (folder / "loop_b").symlink_to(folder / "loop_a")
    assert _path_problem(files, labels="nope.csv") == f"{folder / 'nope.csv'}: labels file not found"
    assert _path_problem(files, labels="a_folder") == f"{folder / 'a_folder'}: is a folder, expected a CSV file (labels.path)"
    assert _path_problem(files, features="a_folder") == \
        f"{folder / 'a_folder'}: is a folder, expected a Feather, Parquet or CSV file (features.path)"
    assert _path_problem(files, labels="loop_a") == f"{folder / 'loop_a'}: cannot be opened: a symbolic link loop (labels.path)"
    assert _path_problem(files, output="a_file") == f"{folder / 'a_file'}: is a file, expected a folder (output)"
    assert _path_problem(files, output="a_file/out") == \
        f"{folder / 'a_file' / 'out'}: {folder / 'a_file'} is a file, not a folder (output)"
    assert _path_problem(files, features={"path": "features.feather", "store_path": "a_file"}) == \
        f"{folder / 'a_file'}: is a file, expected a folder (features.store_path)"
    assert _path_problem(files, report={"boundaries": {"path": "b.gpkg", "name_column": "NAME"}}) == \
        f"{folder / 'b.gpkg'}: boundaries file not found"
    # A File Geodatabase is a folder: boundaries may be one.
    folder_boundaries = {"boundaries": {"path": "a_folder", "name_column": "NAME"}}
    check_paths(job_from_dict({**files[1], "report": folder_boundaries}, base=folder))


def test_check_paths_tries_to_write_the_output_folder(files, monkeypatch):
    # Root passes os.access everywhere; creating a file is the honest test.
    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("asm_dask.storage.paths.tempfile.TemporaryFile", refuse)
    folder, _ = files
    assert _path_problem(files) == \
        f"{folder / 'out'}: cannot write the output folder in {folder}: permission denied (output)"
