"""The whole job through the command line, checked against an in-memory scikit-learn run."""

import json

import dask_geopandas
import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from builders import cli
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupShuffleSplit, StratifiedKFold

import asm_dask
from asm_dask.deploy import open_client
from asm_dask.model.persistence import load_model
from asm_dask.read.grid import cell_ids


def test_outputs_of_a_run(local_run, country):
    out, done = local_run
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ["n_labels_read", "n_labels_kept", "n_labels_joined", "n_labels_unmatched", "n_cells",
                "n_train", "n_test", "best_alpha", "cv_auc", "test_auc_uncalibrated", "test_auc_calibrated"]:
        assert key in metrics
    assert metrics["n_labels_read"] == country.n_labels
    assert metrics["n_labels_joined"] + metrics["n_labels_unmatched"] == metrics["n_labels_kept"]
    assert metrics["n_labels_unmatched"] > 0 and metrics["n_labels_on_shared_edges"] > 0
    assert metrics["n_train"] + metrics["n_test"] == metrics["n_labels_joined"]
    assert metrics["n_cells"] == country.n_cells
    alphas = metrics["alphas_searched"]
    assert metrics["alpha_grid"] == "auto" and set(metrics["cv_auc"]) == {str(a) for a in alphas}
    assert min(alphas) < metrics["best_alpha"] < max(alphas) and not metrics["alpha_at_grid_edge"]
    assert metrics["test_auc_uncalibrated"] > 0.7  # the planted signal is found
    low, high = metrics["test_auc_ci95"]
    assert low < metrics["test_auc_calibrated"] < high
    assert metrics["bootstrap"]["resamples"] == 2000
    assert 0 < metrics["brier_test"] < 0.25
    assert sum(row["n"] for row in metrics["reliability_test"]) == metrics["n_test"]
    by_type = metrics["test_auc_by_sample_type"]
    assert set(by_type) == {"random", "targeted"}
    assert sum(entry["n"] for entry in by_type.values()) == metrics["n_test"]
    assert metrics["alpha_selected_by"] == "cell" and metrics["cell_cv_auc"] == pytest.approx(
        metrics["cv_auc"][str(metrics["best_alpha"])])
    # The small test country spans too few half-degree blocks for five blocked folds: the
    # blocked CV uses smaller blocks, and says so.
    assert 0.05 <= metrics["blocked_cv_block_size_deg"] < 0.5 and 0.5 < metrics["blocked_cv_auc"] <= 1
    assert any("the blocked CV used blocks of" in w for w in metrics["warnings"])
    assert "warning: blocks of split.block_size=0.5 degrees were too few" in done.stderr
    unmatched = pd.read_csv(out / "unmatched_labels.csv")
    assert len(unmatched) == metrics["n_labels_unmatched"]
    for figure in ["roc.png", "label_counts.png", "probability_map.png", "cv_auc.png", "reliability.png",
                   "feature_maps.png"]:
        assert (out / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["completed_partitions"] == list(range(manifest["n_partitions"]))
    assert "test ROC AUC" in done.stdout and str(out / "metrics.json") in done.stdout


def test_predictions_read_back_with_geopandas_dask_geopandas_and_duckdb(local_run, country):
    out, _ = local_run
    predictions = out / "predictions"
    frame = gpd.read_parquet(predictions)
    assert list(frame.columns) == ["cell_id", "lat", "lon", "score", "probability", "geometry"]
    first_file = sorted(predictions.glob("part-*.parquet"))[0]
    assert "bbox" in pq.read_schema(first_file).names  # GeoParquet 1.1 covering, for bbox filters
    assert len(frame) == country.n_cells and frame["cell_id"].is_unique
    assert frame.crs == "EPSG:4326"
    assert frame["probability"].between(0, 1).all()
    square = frame.geometry.iloc[0]
    assert square.bounds == pytest.approx((frame["lon"][0] - 0.005, frame["lat"][0] - 0.005,
                                           frame["lon"][0] + 0.005, frame["lat"][0] + 0.005))
    assert (frame["cell_id"] == cell_ids(frame["lat"], frame["lon"], 0.01)).all()
    lazy = dask_geopandas.read_parquet(predictions)
    assert lazy.npartitions > 1 and len(lazy.compute()) == country.n_cells
    [(count, total)] = duckdb.sql(
        f"select count(*), sum(probability) from read_parquet('{predictions}/*.parquet')").fetchall()
    assert count == country.n_cells and total == pytest.approx(frame["probability"].sum())


def _tie_exact(decision_function, X):
    """Scores with equal feature rows scored once, so that they tie exactly.

    Labels that share a cell share a feature row. BLAS can score two equal rows a
    rounding error apart (1e-17), which breaks their ROC AUC tie at random; asm_dask
    ties them, and so must the reference for the AUCs to be comparable to 1e-6.
    """
    unique, inverse = np.unique(X, axis=0, return_inverse=True)
    return decision_function(unique)[inverse.ravel()]


def test_results_equal_scikit_learn_in_memory(local_run, country):
    """The notebook's estimators, in memory, on the same rows and folds, agree to 1e-6."""
    out, _ = local_run
    metrics = json.loads((out / "metrics.json").read_text())
    features = pd.read_feather(country.features)
    coords = features["image_id"].str.replace("--", ".").str.extract(r"lat_(.*)__lon_(.*)").astype(float)
    features["cell_id"] = cell_ids(coords[0].to_numpy(), coords[1].to_numpy(), 0.01)
    rows = pd.read_csv(out / "labelled_cells.csv").merge(features, on="cell_id", how="left")
    X = rows[[f"feature_{j}" for j in range(40)]].to_numpy(np.float64)
    y, groups = rows["label"].to_numpy(), rows["cell_id"].to_numpy()
    assert len(np.unique(groups)) < len(groups)  # some cells hold several labels

    train, test = next(GroupShuffleSplit(test_size=0.2, random_state=1991).split(X, y, groups))
    assert (rows["split"].to_numpy()[test] == "test").all() and (rows["split"].to_numpy()[train] == "train").all()
    X_train, y_train = X[train], y[train]
    # Folds of whole cells, stratified by each cell's majority class.
    cells, cell_of_row = np.unique(groups[train], return_inverse=True)
    cell_class = pd.Series(y_train).groupby(cell_of_row).mean().ge(0.5).astype(int).to_numpy()
    folds = [(np.flatnonzero(~np.isin(cell_of_row, valid)), np.flatnonzero(np.isin(cell_of_row, valid)))
             for _, valid in StratifiedKFold(5, shuffle=True, random_state=1991).split(cells, cell_class)]
    alphas = metrics["alphas_searched"]
    cv_auc = {alpha: np.mean([roc_auc_score(y_train[valid], _tie_exact(
        RidgeClassifier(alpha=alpha).fit(X_train[fit], y_train[fit]).decision_function, X_train[valid]))
        for fit, valid in folds]) for alpha in alphas}
    np.testing.assert_allclose([metrics["cv_auc"][str(a)] for a in alphas], list(cv_auc.values()), atol=1e-6)
    best = max(alphas, key=cv_auc.get)
    search = GridSearchCV(RidgeClassifier(), {"alpha": alphas}, cv=folds, scoring="roc_auc").fit(X_train, y_train)
    assert metrics["best_alpha"] == best == search.best_params_["alpha"]

    oof = np.empty(len(train))
    for fit, valid in folds:
        oof[valid] = _tie_exact(RidgeClassifier(alpha=best).fit(X_train[fit], y_train[fit]).decision_function,
                                X_train[valid])
    isotonic = IsotonicRegression(out_of_bounds="clip").fit(oof, y_train)
    scores = _tie_exact(search.decision_function, X[test])
    assert metrics["test_auc_uncalibrated"] == pytest.approx(roc_auc_score(y[test], scores), abs=1e-6)
    assert metrics["test_auc_calibrated"] == pytest.approx(roc_auc_score(y[test], isotonic.predict(scores)), abs=1e-6)

    predicted = pd.read_parquet(out / "predictions", columns=["cell_id", "score", "probability"])
    predicted = predicted.set_index("cell_id").loc[groups[test]]
    np.testing.assert_allclose(predicted["score"], scores, atol=1e-6)
    np.testing.assert_allclose(predicted["probability"], isotonic.predict(scores), atol=1e-6)
    model = load_model(out)
    test_rows = rows.iloc[test][[f"feature_{j}" for j in range(40)]]
    np.testing.assert_allclose(model.predict_proba(test_rows)[:, 1], predicted["probability"], atol=1e-9)


def test_demo_command_runs_on_built_in_data(tmp_path):
    done = cli("demo", "--out", tmp_path / "demo", "--cells", 900, "--features", 16)
    assert done.returncode == 0, done.stderr
    assert "Dask dashboard: http" in done.stderr
    metrics = json.loads((tmp_path / "demo" / "results" / "metrics.json").read_text())
    assert metrics["n_cells"] > 800 and metrics["n_features"] == 16
    for name in ("probability.tif", "hotspots.geojson", "hotspots.csv", "feature_importance.csv", "map.html",
                 "report.html"):
        assert (tmp_path / "demo" / "results" / name).stat().st_size > 0, name


@pytest.mark.parametrize("store", ["auto", "always"])
def test_inputs_from_an_fsspec_url(country, tmp_path, store):
    """Inputs behind a URL (here fsspec's in-memory filesystem) go through fsspec, not the
    disk: read in place, or through a store that goes with the output."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for source in (country.labels, country.features):
        memory.pipe(f"/country/{source.name}", source.read_bytes())
    job = {"labels": {"path": "memory://country/SLE_mines.csv"},
           "features": {"path": "memory://country/SLE_features.feather", "store": store},
           "output": str(tmp_path / "out")}
    with open_client() as client:  # in-process workers see the memory filesystem
        run = asm_dask.run(job, client)
    assert run.metrics.n_cells == country.n_cells
    assert run.metrics.features_read == ("in place" if store == "auto" else "feature store")
    assert (tmp_path / "out" / ".asm_dask_store").is_dir() == (store == "always")


def test_an_output_folder_behind_a_url(country):
    """Every file of a run goes through fsspec: here its in-memory filesystem, read by the
    in-process workers and this test alike."""
    import fsspec
    import geopandas as gpd

    with open_client() as client:  # in-process workers see the memory filesystem
        run = asm_dask.run({"labels": str(country.labels), "features": str(country.features),
                            "output": "memory://runs/sle"}, client)
        reread = asm_dask.open_run("memory://runs/sle").predictions(columns=["cell_id"]).compute()
    memory = fsspec.filesystem("memory")
    names = {path.rsplit("/", 1)[1] for path in memory.ls("/runs/sle", detail=False)}
    assert {"manifest.json", "metrics.json", "model.json", "report.html", "map.html", "probability.tif",
            "figures", "predictions"} <= names and ".asm-dask.lock" not in names
    grid = gpd.read_parquet("/runs/sle/predictions", filesystem=memory)
    assert len(grid) == run.metrics.n_cells == country.n_cells
    assert len(reread) == country.n_cells
    memory.rm("/runs", recursive=True)


def test_ingest_command_builds_the_store_that_run_reuses(country, tmp_path):
    from builders import write_job

    job = write_job(tmp_path, country.labels, country.features,
                    features_settings={"store_path": str(tmp_path / "store"), "rows_per_partition": 500})
    done = cli("ingest", job)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["n_cells"] == country.n_cells and summary["n_partitions"] >= 3
    stamp = (tmp_path / "store").stat().st_mtime_ns
    run = cli("run", job)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["inputs"]["features_read_from"] == summary["store"]  # auto uses a store that exists
    assert (tmp_path / "store").stat().st_mtime_ns == stamp  # nothing ingested again


def test_spatially_blocked_split(country, tmp_path, client):
    run = asm_dask.run({"labels": {"path": str(country.labels)}, "features": {"path": str(country.features)},
                        "output": str(tmp_path / "out"), "split": {"group_by": "block", "block_size": 0.05}}, client)
    assert run.metrics.split_group_by == "block"
    cells = pd.read_csv(tmp_path / "out" / "labelled_cells.csv")
    block = (np.floor((cells["cell_lat"] + 90) / 0.05).astype(int).astype(str) + "/"
             + np.floor((cells["cell_lon"] + 180) / 0.05).astype(int).astype(str))
    train_blocks, test_blocks = set(block[cells["split"] == "train"]), set(block[cells["split"] == "test"])
    assert train_blocks and test_blocks and not train_blocks & test_blocks
    assert run.metrics.n_test_groups == len(test_blocks)


def test_the_notebooks_alphas_standardized_features_and_sigmoid_calibration(country, tmp_path, client):
    """Settings other than the defaults reach the fit and are recorded; the notebook's list,
    too narrow for these features, ends at its edge and says so."""
    job = {"labels": {"path": str(country.labels)}, "features": {"path": str(country.features)},
           "output": str(tmp_path / "out"),
           "model": {"alphas": [0.01, 0.1, 1, 10], "standardize": True, "calibration": "sigmoid"}}
    with pytest.warns(asm_dask.AsmDaskWarning, match="the best alpha, 10, is at the edge"):
        metrics = asm_dask.run(job, client).metrics
    assert metrics.alpha_grid == "given" and metrics.alphas_searched == [0.01, 0.1, 1.0, 10.0]
    assert metrics.standardize is True and metrics.calibration == "sigmoid"
    assert metrics.best_alpha == 10.0 and metrics.alpha_at_grid_edge is True
    # Platt scaling is strictly monotone: it cannot move the ROC AUC.
    assert metrics.test_auc_change_from_calibration == pytest.approx(0, abs=1e-12)
    model = json.loads((tmp_path / "out" / "model.json").read_text())
    assert model["standardize"] is True and model["calibration"]["method"] == "sigmoid"


def test_a_test_set_too_small_to_judge_is_said_so(country, tmp_path, client):
    job = {"labels": {"path": str(country.labels)}, "features": {"path": str(country.features)},
           "output": str(tmp_path / "out"), "split": {"test_size": 0.04}}
    with pytest.warns(asm_dask.AsmDaskWarning, match=r"only \d label\(s\) of one class") as warned:
        metrics = asm_dask.run(job, client).metrics
    fewest = min(metrics.n_test_asm, metrics.n_test_not_asm)
    assert fewest < 10 and metrics.n_test_asm + metrics.n_test_not_asm == metrics.n_test
    assert any(f"only {fewest} label(s) of one class" in w for w in metrics.warnings)
    assert any(f"only {fewest} label(s) of one class" in str(w.message) for w in warned)
    assert metrics.bootstrap.resamples_with_both_classes <= 2000


def test_columns_left_unread_and_gaps_in_the_numbering_are_said(country, tmp_path):
    """Nothing is left out silently: columns the run does not read are named."""
    import pyarrow as pa
    import pyarrow.feather as feather
    from builders import write_job

    table = feather.read_table(country.features).drop_columns(["feature_7"])
    table = table.append_column("X_0", pa.array(np.zeros(len(table), np.float32)))
    table = table.append_column("lat", pa.array(np.zeros(len(table))))
    features = tmp_path / "features.feather"
    feather.write_feather(table, features)
    done = cli("run", write_job(tmp_path, country.labels, features))
    assert done.returncode == 0, done.stderr
    unread = (f"{features}: 2 column(s) not read: X_0, lat (features: the 39 columns feature_0..feature_39; "
              "coordinates: the image_id column; features.prefix chooses other feature columns)")
    gaps = f"{features}: feature numbers have gaps: 1 missing between feature_0 and feature_39 (first: 7)"
    assert f"[asm-dask] warning: {unread}" in done.stderr and f"[asm-dask] warning: {gaps}" in done.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["warnings"][:2] == [unread, gaps]
