"""Read stage for features: every input layout lands in the same feature store."""

import os

import numpy as np
import pandas as pd
import pytest
from builders import grid_features, image_id, write_feather

from asm_dask.config import FeaturesConfig
from asm_dask.errors import InputError
from asm_dask.read.features import detect_layout
from asm_dask.read.grid import cell_ids
from asm_dask.read.store import open_store
from asm_dask.read.store_format import load_store, read_cells, read_features

LATS = np.round(np.arange(8.005, 8.1, 0.01), 3)
LONS = np.round(np.arange(-11.995, -11.9, 0.01), 3)


def _store_frame(store) -> pd.DataFrame:
    parts = []
    for i in range(len(store.partitions)):
        cells = read_cells(store.partition_path(i))
        for name, column in zip(store.feature_names, read_features(store.partition_path(i)).T):
            cells[name] = column
        parts.append(cells)
    return pd.concat(parts, ignore_index=True)


def _api_table(frame: pd.DataFrame, lat="lat", lon="lon", prefix="X_") -> pd.DataFrame:
    """The notebook's table in a MOSAIKS-API layout, feature columns renamed."""
    coords = frame["image_id"].str.replace("--", ".").str.extract(r"lat_(.*)__lon_(.*)").astype(float)
    table = pd.DataFrame({lat: coords[0], lon: coords[1]})
    for j in range(frame.shape[1] - 1):
        table[f"{prefix}{j}"] = frame[f"feature_{j}"]
    return table


def test_feather_with_image_ids_becomes_partitioned_store(tmp_path, client):
    frame = grid_features(LATS, LONS, n_features=12)
    path = write_feather(frame, tmp_path / "f.feather", chunksize=37)  # several record batches
    store = open_store(FeaturesConfig(path=str(path), rows_per_partition=16), str(tmp_path / "st"), client)
    assert store.n_cells == len(frame) and store.n_features == 12
    assert all(p.n_rows <= 16 for p in store.partitions) and len(store.partitions) > 3
    assert store.feature_names == tuple(f"feature_{j}" for j in range(12))
    got = _store_frame(store)
    assert [image_id(a, b) for a, b in zip(got["lat"], got["lon"])] == frame["image_id"].tolist()
    np.testing.assert_array_equal(got["feature_7"].to_numpy(), frame["feature_7"].to_numpy())
    assert (got["cell_id"].to_numpy() == cell_ids(got["lat"], got["lon"], 0.01)).all()


@pytest.mark.parametrize("fmt, lat, lon, prefix", [
    ("csv", "lat", "lon", "X_"), ("csv", "Lat", "Lon", "X_"), ("csv with a byte-order mark", "lat", "lon", "X_"),
    ("parquet", "lat", "lon", "planet_"), ("feather", "Latitude", "Longitude", "mosaiks_")])
def test_mosaiks_api_layouts(tmp_path, client, fmt, lat, lon, prefix):
    frame = grid_features(LATS, LONS, n_features=12)
    table = _api_table(frame, lat, lon, prefix)
    table.insert(2, "ID", np.arange(len(table)))  # extra columns are ignored
    table = table[[lat, lon, "ID"] + [f"{prefix}{j}" for j in (3, 0, 11, 1, 2, 10, 4, 5, 6, 7, 8, 9)]]
    path = tmp_path / f"features.{fmt.split()[0]}"
    {"csv": lambda: table.to_csv(path, index=False), "parquet": lambda: table.to_parquet(path),
     "csv with a byte-order mark": lambda: table.to_csv(path, index=False, encoding="utf-8-sig"),  # Excel's
     "feather": lambda: table.to_feather(path)}[fmt]()
    store = open_store(FeaturesConfig(path=str(path)), str(tmp_path / "st"), client)
    assert store.feature_names == tuple(f"{prefix}{j}" for j in range(12))  # numeric order
    got = _store_frame(store)
    np.testing.assert_allclose(got["lat"], table[lat])
    np.testing.assert_array_equal(got[f"{prefix}10"].to_numpy(), table[f"{prefix}10"].to_numpy())


def test_coordinates_stored_as_float32_are_the_decimals_written(tmp_path, client):
    """8.615 in float32 is 8.61499977...: read as the decimal written, the centroids lie
    0.01 apart, on the grid (they were refused as 0.00999928 apart, cells that overlap)."""
    table = _api_table(grid_features(LATS, LONS, n_features=6))
    path = tmp_path / "f.parquet"
    table.astype({"lat": np.float32, "lon": np.float32}).to_parquet(path)
    got = _store_frame(open_store(FeaturesConfig(path=str(path)), str(tmp_path / "st"), client))
    np.testing.assert_array_equal(got["lat"].to_numpy(), table["lat"].to_numpy())
    np.testing.assert_array_equal(got["lon"].to_numpy(), table["lon"].to_numpy())
    assert (got["cell_id"].to_numpy() == cell_ids(table["lat"], table["lon"], 0.01)).all()


def test_chunks_larger_than_a_partition_are_unpacked_in_column_groups(tmp_path, client, monkeypatch):
    # One Parquet row group of 100 rows, 12 features: with 7-row partitions and the
    # byte budget shrunk, the chunk is unpacked a few columns at a time.
    import asm_dask.read.store

    frame = grid_features(LATS, LONS, n_features=12)
    frame.loc[[20, 21], "feature_4"] = np.nan
    table = _api_table(frame, prefix="feature_")
    path = tmp_path / "f.parquet"
    table.to_parquet(path, row_group_size=1000)
    monkeypatch.setattr(asm_dask.read.store, "PARTITION_BYTES", 4 * 100 * 5)  # 5 columns of 100 rows
    store = open_store(FeaturesConfig(path=str(path), rows_per_partition=7), str(tmp_path / "st"), client)
    assert [p.n_rows for p in store.partitions[:3]] == [7, 7, 6]  # rows 21 and 22 dropped
    assert store.n_dropped_nonfinite == 2 and not os.path.exists(os.path.join(store.path, ".unpacked"))
    got = _store_frame(store)
    expected = table.dropna().reset_index(drop=True)
    np.testing.assert_array_equal(got[[f"feature_{j}" for j in range(12)]].to_numpy(),
                                  expected[[f"feature_{j}" for j in range(12)]].to_numpy())
    np.testing.assert_allclose(got["lat"], expected["lat"])


def test_store_is_reused_and_a_changed_input_invalidates_it(tmp_path, client):
    path = write_feather(grid_features(LATS, LONS), tmp_path / "f.feather")
    root = str(tmp_path / "st")
    first = open_store(FeaturesConfig(path=str(path)), root, client)
    stamp = os.stat(first.partition_path(0)).st_mtime_ns
    again = open_store(FeaturesConfig(path=str(path)), root, client)
    assert again.path == first.path and os.stat(again.partition_path(0)).st_mtime_ns == stamp
    other_settings = open_store(FeaturesConfig(path=str(path), rows_per_partition=7), root, client)
    assert other_settings.path != first.path
    write_feather(grid_features(LATS, LONS, seed=1), path)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    changed = open_store(FeaturesConfig(path=str(path)), root, client)
    assert changed.path not in (first.path, other_settings.path)
    assert sorted(os.listdir(root)) == [os.path.basename(changed.path)]  # stale stores removed
    assert load_store(changed.path) == changed


def test_cells_with_missing_features_are_dropped_and_counted(tmp_path, client):
    frame = grid_features(LATS, LONS)
    frame.loc[[4, 50], "feature_2"] = np.nan
    frame.loc[60, "feature_5"] = np.inf
    path = write_feather(frame, tmp_path / "f.feather")
    store = open_store(FeaturesConfig(path=str(path)), str(tmp_path / "st"), client)
    assert store.n_cells == len(frame) - 3 and store.n_dropped_nonfinite == 3
    assert [row for row, _, _ in store.dropped_examples] == [5, 51, 61]


def _bad_feather(tmp_path, change):
    frame = grid_features(LATS, LONS)
    change(frame)
    return write_feather(frame, tmp_path / "bad.feather")


@pytest.mark.parametrize("change, message", [
    (lambda f: f.__setitem__("image_id", f["image_id"].where(f.index != 41, "lat_8.4_lon_3")),
     "row 42: cannot parse image_id 'lat_8.4_lon_3'"),
    (lambda f: f.__setitem__("image_id", f["image_id"].where(f.index != 9, "lat_98--005__lon_-11--995")),
     "row 10: coordinates out of range"),
    (lambda f: f.__setitem__("image_id", f["image_id"].where(f.index != 30, f["image_id"][3])),
     "rows 4 and 31 describe the same cell"),
    (lambda f: f.__setitem__("feature_3", "x"), "feature column 'feature_3' is large_string, not numeric"),
    (lambda f: f.__setitem__("image_id", f["image_id"].str.upper()), "row 1: cannot parse image_id"),
])
@pytest.mark.parametrize("rows_per_partition", [None, 16])  # batches whole, or unpacked in slices
def test_bad_features_fail_cleanly(tmp_path, client, change, message, rows_per_partition):
    path = _bad_feather(tmp_path, change)
    root = tmp_path / "st"
    with pytest.raises(InputError) as error:
        open_store(FeaturesConfig(path=str(path), rows_per_partition=rows_per_partition), str(root), client)
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    assert not root.exists() or os.listdir(root) == []  # nothing half-written


def test_non_numeric_value_deep_in_a_csv(tmp_path, client):
    table = _api_table(grid_features(LATS, LONS))
    table["X_2"] = table["X_2"].astype(object)
    table.loc[77, "X_2"] = "n/a?"
    path = tmp_path / "f.csv"
    table.to_csv(path, index=False)
    with pytest.raises(InputError) as error:
        open_store(FeaturesConfig(path=str(path)), str(tmp_path / "st"), client)
    assert str(error.value) == f"{path}: row 78, column 'X_2': cannot read 'n/a?' as a number"


@pytest.mark.parametrize("change", ["one more", "one fewer"])
def test_a_csv_row_of_another_width_is_named_by_its_line(tmp_path, client, change):
    table = _api_table(grid_features(LATS, LONS))
    path = tmp_path / "f.csv"
    table.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[78] = lines[78] + ",0.5" if change == "one more" else lines[78].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as error:
        open_store(FeaturesConfig(path=str(path)), str(tmp_path / "st"), client)
    width = len(table.columns)
    assert str(error.value) == (f"{path}: line 79: {width + 1 if change == 'one more' else width - 1} fields, "
                                f"where the header has {width} columns")
    # Arrow numbers the line in some files only: elsewhere it is looked for by the text Arrow quotes
    from asm_dask.read.csv_chunks import iter_csv_chunks

    rows = ["lat,lon,feature_0,feature_1"] + [f"{8 + i * 0.01:.3f},-11.5,{i},{i}" for i in range(100)]
    rows[50] += ",9" if change == "one more" else ""
    rows[50] = rows[50] if change == "one more" else rows[50].rsplit(",", 1)[0]
    (tmp_path / "g.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"g\.csv: line 51: [35] fields, where the header has 4 columns$"):
        list(iter_csv_chunks(detect_layout(str(tmp_path / "g.csv"))))


def test_missing_and_ambiguous_files(tmp_path):
    with pytest.raises(InputError, match="features file not found"):
        detect_layout(str(tmp_path / "nope.feather"))
    pd.DataFrame({"lat": [1.0], "lon": [2.0], "a_0": [1.0], "b_0": [2.0]}).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(InputError, match="ambiguous between prefixes"):
        detect_layout(str(tmp_path / "f.csv"))
    assert detect_layout(str(tmp_path / "f.csv"), prefix="b_").feature_columns == ("b_0",)
    pd.DataFrame({"x": [1.0], "y": [2.0], "X_0": [1.0]}).to_csv(tmp_path / "g.csv", index=False)
    with pytest.raises(InputError, match="no coordinates"):
        detect_layout(str(tmp_path / "g.csv"))


def test_partial_store_of_a_killed_run_is_removed(tmp_path, client):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    root = tmp_path / "st"
    abandoned = root / f".0123456789abcdef.partial-{socket.gethostname()}-{dead}"
    abandoned.mkdir(parents=True)
    (abandoned / "part-00000-0000.arrow").write_bytes(b"half written")
    path = write_feather(grid_features(LATS, LONS), tmp_path / "f.feather")
    store = open_store(FeaturesConfig(path=str(path)), str(root), client)
    assert sorted(os.listdir(root)) == [os.path.basename(store.path)]
