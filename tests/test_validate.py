"""Validation metrics: ROC AUC, the group bootstrap interval, Brier, reliability, subsets."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from asm_dask.model.evaluation import (
    auc_by_subset,
    auc_interval,
    bootstrap_auc,
    brier_score,
    reliability_table,
    roc_auc,
)


def test_roc_auc_equals_sklearn_with_ties_and_many_score_sets():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(size=(6, 500)) + y, 1)  # rounded: many ties
    expected = [roc_auc_score(y, s) for s in scores]
    np.testing.assert_allclose(roc_auc(y, scores), expected, atol=1e-12)
    assert roc_auc(y, scores[0]) == pytest.approx(expected[0], abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.zeros(5), np.arange(5))


def test_bootstrap_with_unit_weights_is_the_plain_auc():
    rng = np.random.default_rng(1)
    y, scores = rng.integers(0, 2, 200), np.round(rng.normal(size=200), 1)
    samples = bootstrap_auc(y, scores, np.arange(200), seed=0, resamples=300)
    assert len(samples) == 300
    # Each sample is a weighted AUC; its mean sits near the full-sample AUC.
    assert samples.mean() == pytest.approx(roc_auc_score(y, scores), abs=0.01)


def _clustered_sample(rng, n_groups, per_group=6):
    """Scores and labels that move together within a group: a shared group effect."""
    effect = np.repeat(rng.normal(size=n_groups), per_group)
    scores = effect + 0.3 * rng.normal(size=n_groups * per_group)
    y = (rng.random(n_groups * per_group) < 1 / (1 + np.exp(-2 * effect))).astype(int)
    return y, scores, np.repeat(np.arange(n_groups), per_group)


def test_group_bootstrap_interval_covers_the_true_auc():
    rng = np.random.default_rng(2)
    y, scores, _ = _clustered_sample(rng, 200_000)
    true_auc = roc_auc(y, scores)  # population value, from a very large sample
    group_hits = row_hits = 0
    trials = 150
    for _ in range(trials):
        y, scores, groups = _clustered_sample(rng, 60)
        (low, high), _ = auc_interval(y, scores, groups, seed=int(rng.integers(1 << 30)))
        group_hits += low <= true_auc <= high
        (low, high), _ = auc_interval(y, scores, np.arange(len(y)), seed=int(rng.integers(1 << 30)))
        row_hits += low <= true_auc <= high
    assert 0.88 <= group_hits / trials <= 0.99
    # Resampling rows ignores that a group's labels move together: its interval is too
    # narrow and misses the truth more often. That is why asm_dask resamples groups.
    assert row_hits < group_hits - 0.05 * trials


def test_brier_and_reliability_table():
    rng = np.random.default_rng(3)
    probability = rng.random(4000)
    y = (rng.random(4000) < probability).astype(int)  # perfectly calibrated
    assert brier_score(y, probability) == pytest.approx(brier_score_loss(y, probability))
    table = reliability_table(y, probability)
    assert list(table["bin_low"]) == pytest.approx(np.arange(10) / 10)
    assert table["n"].sum() == 4000
    np.testing.assert_allclose(table["observed_frequency"], table["mean_predicted"], atol=0.06)
    edges = reliability_table(np.array([0, 1, 1]), np.array([0.0, 1.0, 0.95]))
    assert list(edges["n"]) == [1] + [0] * 8 + [2]  # 1.0 falls in the last bin
    assert np.isnan(edges["observed_frequency"][4])


def test_auc_by_subset():
    y = np.array([0, 1, 0, 1, 0, 0])
    scores = np.array([0.1, 0.9, 0.8, 0.2, 0.3, 0.4])
    subset = np.array(["random", "random", "targeted", "targeted", "random", "targeted"])
    result = auc_by_subset(y, {"auc": scores}, subset)
    assert result["random"] == {"n": 3, "n_asm": 1, "auc": 1.0}
    assert result["targeted"]["auc"] == pytest.approx(roc_auc_score([0, 1, 0], [0.8, 0.2, 0.4]))
    one_class = auc_by_subset(np.array([0, 0, 1]), {"auc": scores[:3]}, np.array(["a", "a", "b"]))
    assert one_class["a"]["auc"] is None and one_class["b"]["n_asm"] == 1


def test_resamples_with_one_class_are_left_out_and_counted():
    y = np.array([1] + [0] * 30)  # one positive: most resamples of 31 cells miss it
    scores = np.linspace(0, 1, 31)
    (low, high), used = auc_interval(y, scores, np.arange(31), seed=0)
    assert 0 < used < 2000 and abs(used / 2000 - (1 - (30 / 31) ** 31)) < 0.05
    assert low <= roc_auc_score(y, scores) <= high


@pytest.mark.parametrize("n, asm", [(6, 6), (21, 21), (11, 0)])
def test_reliability_diagram_draws_bins_of_one_class(tmp_path, n, asm):
    """Wilson bounds of an all-ASM (or no-ASM) bin can round past the observed rate."""
    from asm_dask.report.figures import plot_reliability

    probability = np.full(n, 0.95)
    y = np.r_[np.ones(asm), np.zeros(n - asm)].astype(int)
    plot_reliability(str(tmp_path / "r.png"), reliability_table(y, probability), brier_score(y, probability))
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
