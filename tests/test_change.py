"""Two maps of one model compared: a planted spread of mining found cell for cell, no
change between the same features, and maps of other models refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from builders import cli

import asm_dask
from asm_dask.errors import InputError
from asm_dask.read.grid import parse_image_ids


def _block(cells: pd.DataFrame, chosen: pd.Series, size: int = 3) -> pd.Index:
    """The cells of a ``size`` x ``size`` block whose every cell is ``chosen``."""
    key = dict(zip(zip(cells.lat.round(3), cells.lon.round(3)), cells.index))
    for index in cells.index[chosen]:
        lat, lon = cells.lat[index], cells.lon[index]
        block = [key.get((round(lat - 0.01 * i, 3), round(lon + 0.01 * j, 3))) for i in range(size) for j in range(size)]
        if all(b is not None and chosen[b] for b in block):
            return pd.Index(block)
    raise AssertionError("no such block")


@pytest.fixture(scope="module")
def later_year(local_run, country, tmp_path_factory, client):
    """The country a year later: a block of cells far from any mine now looks like the
    likeliest mine, and a block of likely mines like the least likely cell; the run's
    model applied to it."""
    out, _ = local_run
    folder = tmp_path_factory.mktemp("later")
    features = pd.read_feather(country.features)
    lat, lon = parse_image_ids(pa.array(features.image_id), "features", 0)
    grid = pd.read_parquet(out / "predictions", columns=["lat", "lon", "probability"])
    probability = pd.Series(grid.probability.to_numpy(), index=list(zip(grid.lat.round(3), grid.lon.round(3))))
    cells = pd.DataFrame({"lat": lat, "lon": lon})
    cells["probability"] = probability.reindex(list(zip(cells.lat.round(3), cells.lon.round(3)))).to_numpy()
    columns = [c for c in features.columns if c.startswith("feature_")]
    likeliest, unlikeliest = cells.probability.idxmax(), cells.probability.idxmin()
    new = _block(cells, cells.probability < 0.05)
    gone = _block(cells, cells.probability >= 0.6)
    features.loc[new, columns] = features.loc[[likeliest] * len(new), columns].to_numpy()
    features.loc[gone, columns] = features.loc[[unlikeliest] * len(gone), columns].to_numpy()
    features.to_feather(folder / "later.feather")
    later = asm_dask.predict(out, folder / "later.feather", out=folder / "later", client=client)
    return later, cells.loc[new], cells.loc[gone], folder


def test_a_planted_spread_and_retreat_are_found_cell_for_cell(local_run, later_year, tmp_path):
    out, _ = local_run
    later, new, gone, _ = later_year
    result = asm_dask.change(out, later, out=tmp_path / "change")
    counts = json.loads((tmp_path / "change" / "change.json").read_text())
    assert counts == result.change.counts and counts["n_new_cells"] == len(new) == 9
    assert counts["n_abandoned_cells"] == len(gone) == 9
    assert counts["n_new_clusters"] == counts["n_abandoned_clusters"] == 1
    hotspots = result.change.hotspots
    for kind, planted in (("new", new), ("abandoned", gone)):
        cluster = hotspots[hotspots.kind == kind].iloc[0]
        assert cluster.n_cells == 9
        assert cluster.lat == pytest.approx(planted.lat.mean()) and cluster.lon == pytest.approx(planted.lon.mean())
        assert cluster.geometry.area == pytest.approx(9 * 0.01 ** 2)  # exactly the planted squares
    assert (hotspots[hotspots.kind == "new"].mean_probability_change > 0.5).all()
    import rasterio

    with rasterio.open(tmp_path / "change" / "change.tif") as tif:
        assert tif.descriptions == ("change of the calibrated ASM probability",)
        values = tif.read(1)
    assert np.nanmax(values) > 0.5 and np.nanmin(values) < -0.5
    assert (np.abs(values[np.isfinite(values)]) > 1e-9).sum() == 18  # nothing else moved


def test_the_same_features_again_make_no_change(local_run, country, tmp_path, client):
    out, _ = local_run
    again = asm_dask.predict(out, country.features, out=tmp_path / "again", client=client)
    counts = asm_dask.change(out, again, out=tmp_path / "change").change.counts
    assert counts["n_new_cells"] == counts["n_abandoned_cells"] == 0 and counts["mean_probability_change"] == 0
    assert counts["n_cells_compared"] == country.n_cells


def test_maps_of_other_models_are_one_line(local_run, later_year, country, tmp_path, client):
    out, _ = local_run
    _, _, _, folder = later_year
    other = asm_dask.run({"labels": str(country.labels), "features": str(country.features),
                          "output": str(tmp_path / "other"), "model": {"alphas": [1000.0]}}, client)
    with pytest.raises(InputError, match="made by another model than"):
        asm_dask.change(out, other, out=tmp_path / "change")
    assert not (tmp_path / "change").exists()
    done = cli("change", out, folder / "later", "--out", out)
    assert done.returncode == 2 and done.stderr.strip().endswith("the change goes to a folder of its own (--out)")
    done = cli("change", out, folder / "later", "--out", tmp_path / "cli")
    assert done.returncode == 0, done.stderr
    assert "9 newly likely ASM" in done.stdout and (tmp_path / "cli" / "change_hotspots.geojson").exists()
