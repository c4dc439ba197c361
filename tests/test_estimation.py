"""Estimates of area and accuracy from a probability sample: the published worked
examples to the digits printed, ppi-python's interval, and coverage of a planted truth."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import ppi_py
import pyarrow as pa
import pytest

from asm_dask.estimation.area import ProbabilitySample, estimate_area
from asm_dask.estimation.prediction_powered import prediction_powered_mean
from asm_dask.estimation.stratified import Strata, map_accuracy

#: the papers' intervals are the estimate plus or minus 1.96 standard errors
Z = 1.96


def _olofsson_2014():
    """Olofsson et al. (2014), section 5 (Table 8): four map classes, the sample's error
    matrix and the mapped pixels of 30 m, as the R package mapaccuracy (hagc/mapaccuracy,
    R/olofsson.R, "Example of table 8") and nrt-validate's docs write them."""
    reference = [1] * 69 + [2] * 56 + [3] * 175 + [4] * 340
    mapped = [1] * 66 + [3] + [4] * 2 + [2] * 55 + [4] + [1] * 5 + [2] * 8 + [3] * 153 + [4] * 9 + [1] * 4 \
        + [2] * 12 + [3] * 11 + [4] * 313
    pixels = {1: 200_000, 2: 150_000, 3: 3_200_000, 4: 6_450_000}
    return np.array(mapped), np.array(reference), pixels


def test_olofsson_2014_worked_example_to_the_printed_digits():
    mapped, reference, pixels = _olofsson_2014()
    found = map_accuracy(mapped, reference, Strata(mapped, pixels, finite_population=False), classes=[1, 2, 3, 4])
    # p. 54: user's and producer's accuracy with their 95% intervals, overall accuracy
    assert [round(found.users[k].value, 2) for k in (1, 2, 3, 4)] == [0.88, 0.73, 0.93, 0.96]
    assert [round(Z * found.users[k].se, 2) for k in (1, 2, 3, 4)] == [0.07, 0.10, 0.04, 0.02]
    assert [round(found.producers[k].value, 2) for k in (1, 2, 3, 4)] == [0.75, 0.85, 0.93, 0.96]
    assert (round(found.overall.value, 2), round(Z * found.overall.se, 2)) == (0.95, 0.02)
    # p. 54: the areas in hectares (a pixel is 0.09 ha) with their 95% intervals
    hectares = sum(pixels.values()) * 0.09
    assert [round(found.share[k].value * hectares) for k in (1, 2, 3, 4)] == [21_158, 11_686, 285_770, 581_386]
    assert [round(Z * found.share[k].se * hectares) for k in (1, 2, 3, 4)] == [6_158, 3_756, 15_510, 16_282]


def test_stehman_2014_numerical_example_where_strata_are_not_the_map_classes():
    """Stehman (2014), section 4: 40 units in four strata of 40,000, 30,000, 20,000 and
    10,000 pixels, as mapaccuracy's stehman2014 example writes them."""
    strata = ["A"] * 10 + ["B"] * 10 + ["C"] * 10 + ["D"] * 10
    mapped = ["A"] * 7 + ["B"] * 3 + ["A"] + ["B"] * 11 + ["C"] * 6 + ["B", "B"] + ["D"] * 10
    reference = ["A"] * 5 + ["C", "B", "A", "B", "C", "A"] + ["B"] * 5 + ["A", "A", "B", "B"] + ["C"] * 5 \
        + ["D", "D", "B", "B", "A"] + ["D"] * 7 + ["C", "C", "B"]
    found = map_accuracy(mapped, reference, Strata(np.array(strata), {"A": 40_000, "B": 30_000, "C": 20_000,
                                                                      "D": 10_000}))
    assert (round(found.share["A"].value, 2), round(found.share["C"].value, 2)) == (0.35, 0.20)  # p. 4932
    assert round(found.overall.value, 2) == 0.63
    assert (round(found.users["B"].value, 3), round(found.producers["B"].value, 3)) == (0.574, 0.794)  # p. 4934
    assert round(found.matrix[1, 2], 2) == 0.08  # p. 4935
    assert (round(found.share["A"].se, 3), round(found.share["C"].se, 3)) == (0.082, 0.064)
    assert (round(found.overall.se, 3), round(found.users["B"].se, 3)) == (0.085, 0.125)  # p. 4936


@pytest.mark.parametrize("seed", range(4))
def test_the_prediction_powered_interval_is_ppi_pythons(seed):
    rng = np.random.default_rng(seed)
    truth = rng.beta(1, 5, 20_000)
    asm = (rng.random(truth.size) < truth).astype(float)
    predicted_all = np.clip(truth + rng.normal(0, 0.05 * (seed + 1), truth.size), 0, 1)
    sampled = rng.choice(truth.size, 150 + 100 * seed, replace=False)
    ours = prediction_powered_mean(asm[sampled], predicted_all[sampled], predicted_all)
    theirs = ppi_py.ppi_mean_ci(asm[sampled], predicted_all[sampled], predicted_all, alpha=0.05)
    np.testing.assert_allclose(ours.interval(0.95), np.ravel(theirs), rtol=1e-12)
    assert ours.value == pytest.approx(np.ravel(ppi_py.ppi_mean_pointestimate(
        asm[sampled], predicted_all[sampled], predicted_all))[0], rel=1e-12)


def _country(rng: np.random.Generator, n_cells: int = 20_000):
    """Cells with a planted probability of ASM, whether each is ASM (drawn once: the
    truth a survey would find), and a map: the probability, blurred."""
    probability = rng.beta(0.6, 4, n_cells)
    asm = (rng.random(n_cells) < probability).astype(float)
    mapped = np.clip(probability * 1.3 + rng.normal(0, 0.08, n_cells), 0, 1)  # over-estimates, as calibration can
    area = rng.uniform(1.20, 1.23, n_cells)  # km2: cells shrink away from the equator
    return probability, asm, mapped, area


def test_intervals_cover_the_true_asm_area_95_times_in_100():
    """1,000 random samples of 200 cells from one country: the design-based and the
    prediction-powered 95% intervals each hold the true ASM area in 92.5-97.5% of them
    (about the binomial 99.9% range around 95% for 1,000 draws; an 80% interval is far
    outside it), and the map's own sum, 30% too high, is flagged."""
    rng = np.random.default_rng(7)
    _, asm, mapped, area = _country(rng)
    truth = float((asm * area).sum())
    held = {"design_based": 0, "prediction_powered": 0}
    flagged = 0
    for _ in range(1_000):
        cells = rng.choice(asm.size, 200, replace=False)
        sample = ProbabilitySample(asm[cells], mapped[cells], area[cells], held_out=np.ones(200, dtype=bool),
                                   strata=Strata(np.zeros(200, dtype=int), {0: asm.size}))
        found = estimate_area(sample, mapped, area, threshold=0.5)
        for name in held:
            low, high = found.area_km2[name].interval(0.95)
            held[name] += low <= truth <= high
        flagged += found.map_outside_design_interval
    assert all(925 <= count <= 975 for count in held.values()), held
    assert flagged > 500


def test_a_prediction_powered_interval_of_a_few_alike_held_out_cells_is_not_the_one_to_quote():
    """Eight held-out sampled cells, none ASM, where the map says 0: the prediction-powered
    interval has no width, and says nothing; the design-based one is quoted."""
    rng = np.random.default_rng(3)
    _, asm, mapped, area = _country(rng)
    cells = np.concatenate([rng.choice(np.flatnonzero(asm == 1), 20), rng.choice(np.flatnonzero(asm == 0), 60)])
    probability = mapped[cells].copy()
    held = np.zeros(len(cells), dtype=bool)
    held[-8:] = True
    probability[held] = 0.0
    sample = ProbabilitySample(asm[cells], probability, area[cells], held_out=held,
                               strata=Strata(np.zeros(len(cells), dtype=int), {0: asm.size}))
    found = estimate_area(sample, mapped, area, threshold=0.5)
    assert found.area_km2["prediction_powered"].se < found.area_km2["design_based"].se
    assert found.quote == "design_based"


def test_a_stratified_sample_estimates_the_area_without_bias_and_tighter():
    """Strata of the map's probability with the rare high strata oversampled: both
    estimators hold the truth about 95 times in 100 (600 samples: 92-98%), and the
    design-based interval is narrower than simple random sampling's of as many cells."""
    rng = np.random.default_rng(11)
    _, asm, mapped, area = _country(rng)
    truth = float((asm * area).sum())
    stratum = np.digitize(mapped, [0.1, 0.3, 0.6])
    per_stratum = {0: 50, 1: 50, 2: 50, 3: 50}
    sizes = {h: int((stratum == h).sum()) for h in per_stratum}
    held, widths = {"design_based": 0, "prediction_powered": 0}, []
    for _ in range(600):
        cells = np.concatenate([rng.choice(np.flatnonzero(stratum == h), n, replace=False)
                                for h, n in per_stratum.items()])
        sample = ProbabilitySample(asm[cells], mapped[cells], area[cells], held_out=np.ones(cells.size, dtype=bool),
                                   strata=Strata(stratum[cells], sizes))
        found = estimate_area(sample, mapped, area, threshold=0.5)
        for name in held:
            low, high = found.area_km2[name].interval(0.95)
            held[name] += low <= truth <= high
        widths.append(found.area_km2["design_based"].se)
    assert all(552 <= count <= 588 for count in held.values()), held
    simple = np.sqrt(asm.size ** 2 * np.var(asm * area, ddof=1) / 200)
    assert np.mean(widths) < 0.97 * simple


def test_a_run_estimates_the_asm_area_from_its_random_labels(local_run, country):
    """The demo country's random labels (45% of them; the rest targeted near mines) are
    its probability sample: each interval holds the country's true ASM area."""
    import json

    import pandas as pd

    from asm_dask.read.grid import cell_area_km2

    out, _ = local_run
    metrics = json.loads((out / "metrics.json").read_text())
    estimates = metrics["estimates"]
    labels = pd.read_csv(country.labels)
    assert estimates["design"] == "simple random"
    assert 0.9 * (labels.sample_type == "random").sum() < estimates["n_sample"] <= (labels.sample_type == "random").sum()
    assert 0 < estimates["n_held_out"] < estimates["n_sample"]
    truth = pd.read_parquet(country.truth_cells)
    true_area = float((truth.true_probability * cell_area_km2(truth.lat.to_numpy(), 0.01)).sum())
    for name in ("design_based", "prediction_powered"):
        low, high = estimates["area_km2"][name]["ci95"]
        assert low <= true_area <= high, (name, low, true_area, high)
    assert estimates["quote"] in ("design_based", "prediction_powered")
    assert estimates["area_km2"]["map"]["estimate"] == pytest.approx(
        metrics["mean_probability"] * sum(cell_area_km2(truth.lat.to_numpy(), 0.01)), rel=0.02)
    assert set(estimates["accuracy"]) == {"overall", "users_asm", "producers_asm"}


def test_labels_without_a_probability_sample_give_no_estimate_and_say_so(country, tmp_path, client):
    import pandas as pd

    import asm_dask

    labels = pd.read_csv(country.labels)
    labels.assign(sample_type="targeted").to_csv(tmp_path / "targeted.csv", index=False)
    with pytest.warns(UserWarning, match="no estimate of the ASM area: no label has a sample_type of random"):
        run = asm_dask.run({"labels": str(tmp_path / "targeted.csv"), "features": str(country.features),
                            "output": str(tmp_path / "out"), "model": {"alphas": [10.0]}}, client)
    assert run.metrics.estimates is None
    assert any(w.startswith("no estimate of the ASM area") for w in run.metrics.warnings)
    assert "No estimate: the labels hold no probability sample" in (tmp_path / "out" / "report.html").read_text()
    labels.assign(stratum=1).to_csv(tmp_path / "half_design.csv", index=False)
    from asm_dask.errors import InputError

    with pytest.raises(InputError, match="half_design.csv: the sample's design needs the columns stratum, "
                                         "stratum_cells, inclusion_probability together"):
        asm_dask.run({"labels": str(tmp_path / "half_design.csv"), "features": str(country.features),
                      "output": str(tmp_path / "never")}, client)
    assert not (tmp_path / "never").exists()


def test_the_sample_counts_each_label_on_a_mapped_cell_once_and_says_how_many_are_off_the_map(
        country, tmp_path, client):
    """The estimate takes the sample's labels from the training join: a label off the
    features, one on a cell with a missing feature and one on the edge two cells share
    are counted as an independent geopandas join of the sample to the mapped squares
    counts them (the last once), and the first two are named in the caveat."""
    import geopandas as gpd
    import pyarrow.feather as feather
    import shapely
    from builders import write_feather

    import asm_dask
    from asm_dask.read.grid import parse_image_ids

    features = feather.read_table(country.features).to_pandas()
    lat, lon = parse_image_ids(pa.array(features["image_id"]), "")
    features.loc[7, "feature_3"] = np.nan
    write_feather(features, tmp_path / "features.feather")
    cells = set(zip(np.round(lat, 3), np.round(lon, 3)))
    corner = next(i for i in range(8, len(lat)) if (round(lat[i] + 0.01, 3), round(lon[i], 3)) in cells
                  and (round(lat[i], 3), round(lon[i] + 0.01, 3)) in cells)
    labels = pd.read_csv(country.labels)
    extra = labels[labels.sample_type == "random"].head(3).copy()
    extra[["lat", "lon"]] = [[lat[7], lon[7]],                              # a cell with a missing feature
                             [-30.0, 100.0],                                 # no cell there
                             [lat[corner] + 0.005, lon[corner] + 0.005]]     # a corner cells share
    labels = pd.concat([labels, extra], ignore_index=True)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.warns(UserWarning, match="of the probability sample fall on no mapped cell"):
        run = asm_dask.run({"labels": str(tmp_path / "labels.csv"), "features": str(tmp_path / "features.feather"),
                            "output": str(tmp_path / "out"), "model": {"alphas": [10.0]}}, client)

    mapped = np.isfinite(features.filter(like="feature_").to_numpy()).all(axis=1)
    squares = gpd.GeoDataFrame(geometry=shapely.box(lon[mapped] - 0.005, lat[mapped] - 0.005,
                                                    lon[mapped] + 0.005, lat[mapped] + 0.005), crs="EPSG:4326")
    sample = labels[labels.sample_type == "random"]
    points = gpd.GeoDataFrame(sample, geometry=gpd.points_from_xy(sample.lon, sample.lat), crs="EPSG:4326")
    hits = gpd.sjoin(points, squares, predicate="intersects").index.value_counts()
    last = labels.index[-3:]
    assert last[0] not in hits and last[1] not in hits and hits[last[2]] >= 2
    assert run.metrics.estimates["n_sample"] == len(hits)
    missed = len(sample) - len(hits)
    assert missed >= 2
    assert any(w.startswith(f"{missed} of the {len(sample)} labels of the probability sample fall on no mapped cell")
               for w in run.metrics.warnings)


def test_a_sample_drawn_labelled_and_added_gives_a_stratified_estimate(local_run, country, tmp_path, client):
    """asm-dask sample on the run's map; the field's labels drawn from each cell's true
    probability; the next run estimates from them, by their strata, and holds the truth."""
    import json

    import pandas as pd
    from builders import cli

    import asm_dask
    from asm_dask.read.grid import cell_area_km2

    out, _ = local_run
    done = cli("sample", out, "--n", "240", "--strata", "4", "--seed", "5", "--sample-type", "survey",
               "--out", tmp_path / "sample")
    assert done.returncode == 0, done.stderr
    drawn = pd.read_csv(tmp_path / "sample" / "sample.csv")
    design = json.loads((tmp_path / "sample" / "design.json").read_text())
    assert len(drawn) == 240 and drawn.stratum.nunique() == len(design["strata"]) >= 3
    assert all(s["sampled"] >= 30 for s in design["strata"])  # the floor: rare strata are not starved
    assert sum(s["cells"] for s in design["strata"]) == country.n_cells
    gpx = (tmp_path / "sample" / "sample.gpx").read_text()
    assert gpx.count("<wpt ") == 240
    import geopandas as gpd
    assert len(gpd.read_file(tmp_path / "sample" / "sample.geojson")) == 240

    truth = pd.read_parquet(country.truth_cells)
    key = lambda f: list(zip(f.lat.round(4), f.lon.round(4)))  # noqa: E731
    probability = pd.Series(truth.true_probability.to_numpy(), index=key(truth)).loc[key(drawn)].to_numpy()
    rng = np.random.default_rng(0)
    filled = drawn.assign(label=(rng.random(len(drawn)) < probability).astype(int), confidence=5,
                          mine_type="artisanal", proportion_inspected=1.0, country="SLE")
    labels = pd.concat([pd.read_csv(country.labels), filled], ignore_index=True)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    run = asm_dask.run({"labels": str(tmp_path / "labels.csv"), "features": str(country.features),
                        "output": str(tmp_path / "next"), "estimate": {"sample_types": ["survey"]}}, client)
    estimates = run.metrics.estimates
    assert estimates["design"] == f"stratified ({len(design['strata'])} strata)" and estimates["n_sample"] == 240
    true_area = float((truth.true_probability * cell_area_km2(truth.lat.to_numpy(), 0.01)).sum())
    for name in ("design_based", "prediction_powered"):
        low, high = estimates["area_km2"][name]["ci95"]
        assert low <= true_area <= high, (name, low, true_area, high)

    # the strata of another map, and a sample type no label has: one line each, before any fit
    from asm_dask.errors import InputError

    labels.assign(stratum_cells=labels.stratum_cells * 3).to_csv(tmp_path / "other_map.csv", index=False)
    with pytest.raises(InputError, match=f"the sample's strata hold {3 * country.n_cells:,} cells and these "
                                         f"features {country.n_cells:,}: the sample was drawn from another map"):
        asm_dask.run({"labels": str(tmp_path / "other_map.csv"), "features": str(country.features),
                      "output": str(tmp_path / "never"), "estimate": {"sample_types": "survey"}}, client)
    with pytest.raises(InputError, match="no label has a sample_type of census \\(estimate.sample_types\\)"):
        asm_dask.run({"labels": str(tmp_path / "labels.csv"), "features": str(country.features),
                      "output": str(tmp_path / "never"), "estimate": {"sample_types": ["census"]}}, client)
    assert not (tmp_path / "never").exists()


def test_each_district_gets_its_asm_area_with_intervals(country, tmp_path, client):
    """admin_summary.csv: the districts' design-based ASM areas add up to the country's
    (every cell lies in a district), no interval reaches below 0, and the districts'
    intervals hold their true ASM area about as often as they should."""
    import pandas as pd

    import asm_dask
    from asm_dask.read.grid import cell_area_km2
    from asm_dask.report.districts import district_of

    run = asm_dask.run({"labels": str(country.labels), "features": str(country.features),
                        "output": str(tmp_path / "out"), "model": {"alphas": [10.0]},
                        "report": {"boundaries": {"path": str(country.districts), "name_column": "name"}}}, client)
    table = pd.read_csv(tmp_path / "out" / "admin_summary.csv")
    assert run.metrics.n_cells_outside_districts == 0
    assert table["asm_km2_design"].sum() == pytest.approx(run.metrics.estimates["area_km2"]["design_based"]["estimate"])
    first = table.iloc[0]
    assert (f"<td>{first['name']}</td>" in (tmp_path / "out" / "report.html").read_text()
            and f"{first.asm_km2_design:,.0f} ({first.asm_km2_design_low:,.0f} to {first.asm_km2_design_high:,.0f})"
            in (tmp_path / "out" / "report.html").read_text())
    assert table["asm_km2_map"].sum() == pytest.approx(run.metrics.estimates["area_km2"]["map"]["estimate"])
    assert (table[[c for c in table if c.endswith("_low")]] >= 0).all().all()
    truth = pd.read_parquet(country.truth_cells)
    import geopandas as gpd

    polygons = gpd.read_file(tmp_path / "out" / "admin_summary.geojson")
    inside = district_of(polygons, truth.lon.to_numpy(), truth.lat.to_numpy())
    true_area = pd.Series(truth.true_probability * cell_area_km2(truth.lat.to_numpy(), 0.01)).groupby(inside).sum()
    held = ((table.asm_km2_design_low <= true_area.reindex(table.index).to_numpy())
            & (true_area.reindex(table.index).to_numpy() <= table.asm_km2_design_high))
    assert held.sum() >= len(table) - 2, table.assign(truth=true_area.reindex(table.index).to_numpy())


def test_the_cells_to_label_next_are_unsure_or_unlabelled_hotspots_and_spread_out():
    """On a country of 40,000 cells with 300 labels: 100 cells, half the most unsure,
    half the likeliest hotspots, 5 cells apart and from every label."""
    from asm_dask.estimation.next_labels import next_labels

    rng = np.random.default_rng(0)
    lat, lon = np.meshgrid((np.arange(200) + 0.5) * 0.01, (np.arange(200) + 0.5) * 0.01, indexing="ij")
    cells = pd.DataFrame({"lat": lat.ravel(), "lon": lon.ravel(), "probability": rng.beta(0.6, 4, lat.size)})
    labels = cells.sample(300, random_state=1)[["lat", "lon"]]
    listed = next_labels(cells, labels, 100, 0.5, 0.01)
    assert len(listed) == 100 and listed["rank"].tolist() == list(range(1, 101)) and listed.attrs["spacing"] == 5
    assert (listed.reason == "the map is unsure").sum() == 50
    hot = listed[listed.reason == "hotspot without a label near"]
    assert (hot.probability >= 0.5).all() and hot.probability.min() > np.quantile(cells.probability, 0.95)
    unsure = listed[listed.reason == "the map is unsure"]
    assert (np.abs(unsure.probability - 0.5) < 0.05).all()
    row, col = np.floor(listed.lat / 0.01).to_numpy(), np.floor(listed.lon / 0.01).to_numpy()
    apart = np.maximum(np.abs(row[:, None] - row[None]), np.abs(col[:, None] - col[None]))
    assert apart[~np.eye(len(listed), dtype=bool)].min() >= 5
    to_labels = np.maximum(np.abs(row[:, None] - np.floor(labels.lat.to_numpy() / 0.01)[None]),
                           np.abs(col[:, None] - np.floor(labels.lon.to_numpy() / 0.01)[None]))
    assert to_labels.min() >= 5


def test_a_run_writes_the_cells_to_label_next_apart_from_the_estimation_sample(local_run):
    """The demo-sized country is densely labelled: the list spreads as far as it can."""
    out, _ = local_run
    listed = pd.read_csv(out / "next_labels.csv")
    assert len(listed) == 100 and set(listed.sample_type) == {"next"}  # never read as the probability sample
    assert (out / "next_labels.gpx").read_text().count("<wpt ") == 100
    assert len(gpd.read_file(out / "next_labels.geojson")) == 100


def test_cells_drawn_with_unequal_probabilities_are_weighted_by_them():
    """Each cell drawn on its own with a probability that grows with the map's (Poisson
    sampling, about 190 cells): the Horvitz-Thompson and the difference estimators hold
    the true area about 95 times in 100 (600 samples: 92-98%), where the unweighted mean
    of the sample, which over-represents the likely cells, is seldom within 5% of it."""
    rng = np.random.default_rng(3)
    _, asm, mapped, area = _country(rng)
    truth = float((asm * area).sum())
    inclusion = np.clip(0.004 + 0.03 * mapped, 0, 1)
    held, naive = {"design_based": 0, "prediction_powered": 0}, 0
    for _ in range(600):
        cells = np.flatnonzero(rng.random(asm.size) < inclusion)
        sample = ProbabilitySample(asm[cells], mapped[cells], area[cells], held_out=np.ones(cells.size, dtype=bool),
                                   strata=Strata(np.zeros(cells.size, dtype=int), {0: asm.size}),
                                   inclusion=inclusion[cells])
        found = estimate_area(sample, mapped, area, threshold=0.5)
        assert found.design == "unequal probabilities" and found.accuracy is None
        for name in held:
            low, high = found.area_km2[name].interval(0.95)
            held[name] += low <= truth <= high
        naive += abs((asm[cells] * area[cells]).mean() * asm.size - truth) < 0.05 * truth
    assert all(552 <= count <= 588 for count in held.values()), held
    assert naive < 6


def test_mostly_targeted_labels_the_design_based_interval_holds_the_truth_and_the_report_says_what_to_quote(
        country, tmp_path, client):
    """Most labels targeted near known mines, a few random: the map, calibrated mostly on
    targeted labels, overstates the ASM area; the estimate from the random ones holds the
    truth, and the report names the figure to quote."""
    import asm_dask
    from asm_dask.read.grid import cell_area_km2

    labels = pd.read_csv(country.labels)
    random_rows = labels.index[labels.sample_type == "random"]
    kept = labels.drop(random_rows[::3])  # a third of the random ones fewer: three in four labels are targeted
    kept.to_csv(tmp_path / "labels.csv", index=False)
    run = asm_dask.run({"labels": str(tmp_path / "labels.csv"), "features": str(country.features),
                        "output": str(tmp_path / "out")}, client)
    estimates = run.metrics.estimates
    assert (kept.sample_type == "targeted").mean() > 0.6
    truth = pd.read_parquet(country.truth_cells)
    true_area = float((truth.true_probability * cell_area_km2(truth.lat.to_numpy(), 0.01)).sum())
    low, high = estimates["area_km2"]["design_based"]["ci95"]
    assert low <= true_area <= high
    assert estimates["area_km2"]["map"]["estimate"] > true_area  # targeted labels inflate the map's sum
    quoted = estimates["area_km2"][estimates["quote"]]
    page = (tmp_path / "out" / "report.html").read_text()
    assert f"<b>Quote the {estimates['quote'].replace('_', '-')} estimate</b>: {quoted['estimate']:,.0f} km² of ASM" \
        in page


def test_the_command_line_refuses_a_sample_smaller_than_its_strata_in_one_line(local_run, tmp_path):
    from builders import cli

    out, _ = local_run
    done = cli("sample", out, "--n", "5", "--strata", "4", "--out", tmp_path / "sample")
    assert done.returncode == 2
    assert done.stderr.strip() == ("asm-dask: error: --n 5: a sample smaller than its strata: at least 2 cells in "
                                   "each of the 4 strata, so --n 8 or more")
    assert not (tmp_path / "sample").exists()
