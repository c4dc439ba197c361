"""Several feature sources in one job (``features`` as a list, or ``join``): joined by
cell, each source's columns under its name; cells missing from a source left out and
counted; the model applied to the same sources by ``asm-dask predict``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from builders import cli, write_job

import asm_dask
from asm_dask.config import job_from_dict
from asm_dask.errors import InputError
from asm_dask.read.grid import parse_image_ids

N_FIRST = 25  #: of the country's 40 features, those in the first source; the rest in the second


@pytest.fixture(scope="module")
def split_country(country, tmp_path_factory):
    """The shared country's features cut in two sources: the first 25 columns as the
    notebook's Feather, the other 15 as a CSV of lat/lon and ``band_`` columns in another
    row order, and the same with 40 cells missing from the second source."""
    folder = tmp_path_factory.mktemp("sources")
    whole = pd.read_feather(country.features)
    columns = [c for c in whole.columns if c.startswith("feature_")]
    whole[["image_id"] + columns[:N_FIRST]].to_feather(folder / "mosaiks.feather")
    lat, lon = parse_image_ids(pa.array(whole["image_id"]), "features", 0)
    second = pd.DataFrame({"lat": lat, "lon": lon})
    for i, column in enumerate(columns[N_FIRST:]):
        second[f"band_{i}"] = whole[column]
    second = second.sample(frac=1, random_state=0)
    second.to_csv(folder / "embedding.csv", index=False)
    second.iloc[40:].to_csv(folder / "embedding_gaps.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def joined_run(country, split_country, client):
    job = {"labels": str(country.labels), "output": str(split_country / "joined"),
           "features": [str(split_country / "mosaiks.feather"),
                        {"path": str(split_country / "embedding.csv"), "name": "s2"}]}
    return asm_dask.run(job, client=client)


def test_a_list_of_tables_is_the_first_with_the_others_joined(tmp_path):
    listed = job_from_dict({"labels": "l.csv", "output": "o", "features": [
        {"path": "a/mosaiks.parquet", "cell_size": 0.005}, "alphaearth_2024.parquet",
        {"path": "dem.tif.parquet", "name": "elevation", "prefix": "mean_"}]}, base=tmp_path)
    written = job_from_dict({"labels": "l.csv", "output": "o", "features": {
        "path": "a/mosaiks.parquet", "cell_size": 0.005,
        "join": ["alphaearth_2024.parquet", {"path": "dem.tif.parquet", "name": "elevation", "prefix": "mean_"}]}},
        base=tmp_path)
    assert listed == written
    tables = listed.features.tables()
    assert [name for name, _ in tables] == ["mosaiks", "alphaearth_2024", "elevation"]
    # every table on the first's grid, read as it is
    assert [(t.path, t.cell_size, t.prefix, t.join) for _, t in tables] == [
        (str(tmp_path / "a/mosaiks.parquet"), 0.005, None, ()),
        (str(tmp_path / "alphaearth_2024.parquet"), 0.005, None, ()),
        (str(tmp_path / "dem.tif.parquet"), 0.005, "mean_", ())]


@pytest.mark.parametrize("features, message", [
    (["a/x.parquet", "b/x.parquet"], "features: expected tables of distinct names (x is repeated"),
    (["a.parquet", {"path": "b.parquet", "store": "always"}],
     "features[1]: unknown key(s) ['store']; known keys: ['name', 'path', 'prefix']"),
    (["a.parquet", {"path": "b.parquet", "name": "2024"}], "features[1].name: expected a name of letters"),
    (["a.parquet", 7], "features[1]: expected a mapping or a path, got 7"),
    ([{"path": "a.parquet", "cell_size": 0}, "b.parquet"], "features[0].cell_size: expected a number > 0, got 0"),
    ([], "features: expected a mapping, a path, or a non-empty list of them"),
    ({"path": "a.parquet", "join": 7}, "features.join: expected a list of feature tables"),
    ({"path": "a.parquet", "join": [{"path": "b.parquet", "prefix": 3}]}, "features.join.0.prefix: expected text"),
])
def test_a_wrong_list_of_sources_is_one_line(features, message, tmp_path):
    with pytest.raises(InputError) as error:
        job_from_dict({"labels": "l.csv", "output": "o", "features": features}, base=tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_joined_sources_make_the_same_map_as_one_table_of_their_columns(joined_run, local_run):
    """The country's 40 features in two files, in other row orders and formats, fit and
    predict exactly as the one file holding them all."""
    out, _ = local_run
    whole = json.loads((out / "metrics.json").read_text())
    joined = joined_run.metrics.as_dict()
    assert joined["n_features"] == 40 and joined["n_cells_not_in_every_source"] == 0
    for key in ("n_cells", "n_labels_joined", "best_alpha", "cell_cv_auc", "test_auc_calibrated", "brier_test"):
        assert joined[key] == whole[key], key
    names = pd.read_csv(joined_run.folder + "/feature_importance.csv")["feature"]
    assert set(names) == {f"mosaiks.feature_{i}" for i in range(N_FIRST)} | {f"s2.band_{i}" for i in range(15)}
    ours, theirs = (pd.read_parquet(folder, columns=["cell_id", "probability"]).set_index("cell_id").sort_index()
                    for folder in (joined_run.folder + "/predictions", out / "predictions"))
    pd.testing.assert_frame_equal(ours, theirs)
    inputs = json.loads(open(joined_run.folder + "/manifest.json").read())["inputs"]
    assert [(j["name"], j["path"].rsplit("/", 1)[-1]) for j in inputs["features_joined"]] == [("s2", "embedding.csv")]


def test_cells_missing_from_a_source_are_left_out_and_counted(country, split_country, client, tmp_path):
    job = {"labels": str(country.labels), "output": str(tmp_path / "gaps"), "model": {"alphas": [10.0]},
           "features": [str(split_country / "mosaiks.feather"), str(split_country / "embedding_gaps.csv")]}
    with pytest.warns(UserWarning, match="40 of the 1,51\\d cells of mosaiks are not in embedding_gaps"):
        run = asm_dask.run(job, client=client)
    metrics = run.metrics.as_dict()
    n_whole = len(pd.read_feather(country.features, columns=["image_id"]))
    assert metrics["n_cells_not_in_every_source"] == 40
    assert metrics["n_cells"] == n_whole - 40
    assert any("are left out" in w for w in metrics["warnings"])
    predicted = pd.read_parquet(tmp_path / "gaps" / "predictions", columns=["lat", "lon"])
    second = pd.read_csv(split_country / "embedding_gaps.csv", usecols=["lat", "lon"])
    key = lambda f: set(zip(np.round(f["lat"], 3), np.round(f["lon"], 3)))  # noqa: E731
    assert key(predicted) == key(second)  # every cell that both sources hold, and no other


def test_predict_reads_the_same_sources_in_the_runs_order(joined_run, split_country, client, tmp_path):
    first, second = split_country / "mosaiks.feather", split_country / "embedding.csv"
    prediction = asm_dask.predict(joined_run, [first, second], out=tmp_path / "again", client=client)
    ours, theirs = (pd.read_parquet(folder, columns=["cell_id", "probability"]).set_index("cell_id").sort_index()
                    for folder in (prediction.folder + "/predictions", joined_run.folder + "/predictions"))
    pd.testing.assert_frame_equal(ours, theirs)
    card = json.loads((tmp_path / "again" / "model_card.json").read_text())
    assert card["applied_to"]["features_joined"][0]["name"] == "s2"
    with pytest.raises(InputError, match="trained on 2 feature sources \\(mosaiks, s2\\); 1 FEATURES file was given"):
        asm_dask.predict(joined_run, first, out=tmp_path / "one", client=client)
    with pytest.raises(InputError, match="the model expects 25 features feature_0..feature_24; the file has 15"):
        asm_dask.predict(joined_run, [second, first], out=tmp_path / "swapped", client=client)
    assert not (tmp_path / "one").exists() and not (tmp_path / "swapped").exists()


def test_the_command_line_joins_and_predicts_several_sources(country, split_country, tmp_path):
    job = write_job(tmp_path, country.labels, split_country / "mosaiks.feather",
                    {"join": [str(split_country / "embedding.csv")]}, model={"alphas": [10.0]})
    done = cli("run", job)
    assert done.returncode == 0, done.stderr
    done = cli("predict", tmp_path / "out", split_country / "mosaiks.feather", split_country / "embedding.csv",
               "--out", tmp_path / "predicted")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "predicted" / "metrics.json").read_text())["n_features"] == 40
    missing = write_job(tmp_path, country.labels, split_country / "mosaiks.feather",
                        {"join": [str(tmp_path / "nowhere.parquet")]})
    done = cli("run", missing, "--out", tmp_path / "never")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("nowhere.parquet: features file not found"), done.stderr
    assert not (tmp_path / "never").exists()


def test_a_table_on_another_grid_is_one_line_before_any_fit(country, split_country, client, tmp_path):
    """A source on cells of 0.02 degrees joined to cells of 0.01 shares none of them."""
    coarse = pd.read_csv(split_country / "embedding.csv")
    coarse = coarse.assign(lat=(coarse.lat // 0.02) * 0.02 + 0.01, lon=(coarse.lon // 0.02) * 0.02 + 0.01) \
        .drop_duplicates(["lat", "lon"])
    coarse.to_parquet(tmp_path / "coarse.parquet", index=False)
    job = {"labels": str(country.labels), "output": str(tmp_path / "out"),
           "features": [str(split_country / "mosaiks.feather"), str(tmp_path / "coarse.parquet")]}
    with pytest.raises(InputError) as error, pytest.warns(UserWarning):
        asm_dask.run(job, client=client)
    assert str(error.value).startswith(f"{tmp_path / 'coarse.parquet'}: none of its {len(coarse):,} cells is a "
                                       "cell of mosaiks")
    assert not (tmp_path / "out").exists()
