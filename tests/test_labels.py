import warnings

import numpy as np
import pytest
from builders import labels_frame

from asm_dask.config import LabelFilters, LabelsConfig
from asm_dask.errors import InputError
from asm_dask.read.labels import read_labels


def _write(tmp_path, frame):
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    return LabelsConfig(path=str(path))


def test_the_notebooks_three_filters_in_order(tmp_path):
    frame = labels_frame([(0.0, 0.0)] * 6, [1, 0, 0, 1, 0, 1])
    frame["proportion_inspected"] = [0.1, 0.1, 0.5, 0.5, 0.5, 0.9]  # row 2 goes (0.1, label 0)
    frame["mine_type"] = ["artisanal", "none", "none", "commercial", "none", "artisanal"]  # row 4 goes
    frame["confidence"] = [3, 5, 2, 5, 4, 1]  # rows 3 and 6 go
    frame["extra_column"] = "ignored"
    labels = read_labels(_write(tmp_path, frame))
    assert labels.n_read == 6
    assert labels.removed == {"proportion_inspected": 1, "mine_type": 1, "confidence": 2}
    assert labels.points["label_row"].tolist() == [1, 5]
    assert labels.points["label"].tolist() == [1, 0]
    assert labels.points.crs == "EPSG:4326"


def test_switched_off_filters_need_no_column(tmp_path):
    frame = labels_frame([(1.0, 2.0), (1.5, 2.5)], [0, 1])[["lon", "lat", "label"]]
    config = LabelsConfig(path=_write(tmp_path, frame).path, filters=LabelFilters(None, (), None))
    assert read_labels(config).n_kept == 2


def test_a_mine_type_excluded_in_other_capitals_is_warned_of(tmp_path):
    """Mine types match exactly (the notebook's != "commercial"): one written as the labels
    do not, but as they do in other capitals, excludes nothing, and is said."""
    from asm_dask import AsmDaskWarning

    frame = labels_frame([(0.0, 0.0)] * 4, [1, 0, 1, 0])
    frame["mine_type"] = ["artisanal", "commercial", "commercial", "none"]
    config = LabelsConfig(path=_write(tmp_path, frame).path, filters=LabelFilters(None, ("Commercial",), None))
    with pytest.warns(AsmDaskWarning, match=r"exclude_mine_types: 'Commercial' is no mine_type of the labels, "
                                            r"'commercial' is \(2 rows\): mine types are matched exactly"):
        assert read_labels(config).n_kept == 4
    config = LabelsConfig(path=config.path, filters=LabelFilters(None, ("commercial", "alluvial"), None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a type no label holds in any capitals is no mistake to point at
        assert read_labels(config).n_kept == 2


def test_a_comma_at_the_end_of_every_row_is_read_and_a_value_there_named(tmp_path):
    """Every row one field longer than the header: pandas would take the first column for
    the index and shift the others (an error about 'lat' holding an id, before)."""
    path = tmp_path / "labels.csv"
    config = LabelsConfig(path=str(path), filters=LabelFilters(None, (), None))
    path.write_text("unique_id,lon,lat,label\nA,1.0,2.0,0,\nB,1.5,2.5,1,\n")
    points = read_labels(config).points
    assert points["unique_id"].tolist() == ["A", "B"] and points["lon"].tolist() == [1.0, 1.5]
    path.write_text("unique_id,lon,lat,label\nA,1.0,2.0,0,\nB,1.5,2.5,1,7\n")
    with pytest.raises(InputError, match=r"labels.csv: row 2: one field more than the header's 4 columns \('7'\); "
                                         "name its column in the header, or remove it$"):
        read_labels(config)


def test_filters_null_switches_them_all_off(tmp_path):
    from asm_dask import load_job

    frame = labels_frame([(0.0, 0.0)] * 3, [1, 0, 0])
    frame["mine_type"], frame["confidence"], frame["proportion_inspected"] = "commercial", 0, 0.0
    path = _write(tmp_path, frame).path
    for filters in (None, []):
        job = load_job({"labels": {"path": path, "filters": filters}, "features": "f.feather", "output": "o"})
        assert read_labels(job.labels).n_kept == 3


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="confidence"), "missing required column(s) ['confidence']"),
    (lambda f: f[["lon", "lat", "label"]],
     "missing required column(s) ['proportion_inspected', 'mine_type', 'confidence']; found ['lon', 'lat', 'label'] "
     "(labels.filters.min_proportion_inspected, labels.filters.exclude_mine_types, labels.filters.min_confidence: "
     "null switches off the filter that needs it)"),
    (lambda f: f.assign(lat=[0.0, 95.0, 0.0]), "row 2: coordinates out of range"),
    (lambda f: f.assign(lon=[0.0, np.nan, 0.0]), "row 2: coordinates out of range or missing"),
    (lambda f: f.assign(label=[0, 2, 1]), "row 2: label must be 0 or 1"),
    (lambda f: f.assign(confidence=[3, "high", 3]), "row 2: column 'confidence' must be a finite number"),
    (lambda f: f.assign(label=[1, 1, 1]), "hold only class(es) [1]"),
])
def test_bad_labels_name_the_file_and_the_problem(tmp_path, change, message):
    config = _write(tmp_path, change(labels_frame([(0.0, 0.0)] * 3, [0, 1, 0])))
    with pytest.raises(InputError) as error:
        read_labels(config)
    assert str(error.value).startswith(config.path) and message in str(error.value)


def test_missing_labels_file(tmp_path):
    with pytest.raises(InputError, match="labels file not found"):
        read_labels(LabelsConfig(path=str(tmp_path / "nope.csv")))
