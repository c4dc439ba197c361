"""A synthetic country seen in several years while its mining spreads, appears and stops.

:func:`make_country_years` writes one land of :mod:`asm_dask.demo.country` seen through
one featurization every year, so that a model trained on any year applies to all, while
the mining changes: some clusters grow along a river, further each year, some appear
where there was none, some are abandoned. Knowing every cell's true probability in each
year, :func:`score_change` holds a predicted change map to the true one (:func:`true_change`).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from asm_dask.storage import writing

from .country import _Fields, _Grid, _labels, _land_grid, _true_probability, _write_features, write_districts

_N_STOP, _N_APPEAR, _N_RIVERS = 4, 4, 3  # clusters abandoned, newly opened, growing
_RIVER_STEP = 0.03  # spacing of a river's blobs, in the shape's normalised coordinates
_RIVER_WIDTH = 0.035  # sd across a river; about 2 cells at 5000 cells, 3.5 at 20,000
_RIVER_START, _RIVER_RATE = 0.12, 0.06  # a river's worked length in the first year, growth a year
_RESIDUAL = 0.05  # abandoned pits still show a little, without reading as mining
KINDS = ("new", "abandoned")


@dataclass(frozen=True)
class YearsFiles:
    """Paths and sizes of a country written by :func:`make_country_years`.

    Attributes
    ----------
    labels
        ``SLE_mines.csv``: every year's label points, in :func:`make_country`'s columns
        and an integer ``year``; ``unique_id`` reads ``SLE-<year>-<n>``.
    features
        Year -> ``SLE_features_<year>.feather``: the same cells, ``image_id`` order and
        ``feature_*`` columns every year.
    truth_cells
        Year -> ``truth_cells_<year>.parquet``: every cell's ``lat``, ``lon`` and
        ``true_probability`` that year.
    districts
        ``districts.gpkg``, as :func:`make_country` writes it.
    n_cells
        Number of cells (rows of each year's features).
    n_labels
        Number of label points over all years.
    truth_labels
        ``truth_labels.csv``: ``unique_id``, ``year`` and the ``true_probability`` each
        label was drawn with.
    """

    labels: pathlib.Path
    features: dict[int, pathlib.Path]
    truth_cells: dict[int, pathlib.Path]
    districts: pathlib.Path
    n_cells: int
    n_labels: int
    truth_labels: pathlib.Path


def _apart(u: np.ndarray, v: np.ndarray, order: np.ndarray, n: int) -> list[int]:
    """The first ``n`` places of ``order`` 0.3 apart, so that each change shows as a cluster
    of its own; if too few are, the first others."""
    picked: list[int] = []
    for c in order:
        if len(picked) < n and all(np.hypot(u[c] - u[p], v[c] - v[p]) >= 0.3 for p in picked):
            picked.append(c)
    return picked + [c for c in order if c not in picked][:n - len(picked)]


def _sites(grid: _Grid, fields: _Fields, n: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """``n`` inland places with no mining yet (any, in a country too small to have them)."""
    rows, cols = np.nonzero(grid.mask)
    u, v = grid.uv(cols + 0.5, grid.mask.shape[0] - rows - 0.5)
    quiet = np.flatnonzero((fields.mining(u, v) < 0.02) & (np.hypot(u, v) < 0.65))
    # 50 n tries are plenty, and spare shuffling a country of millions of cells.
    pick = _apart(u, v, np.concatenate([rng.permutation(quiet)[:50 * n], rng.integers(u.size, size=n)]), n)
    return list(zip(u[pick].tolist(), v[pick].tolist()))


def _course(grid: _Grid, fields: _Fields, u: float, v: float, n: int, taken: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A meandering river's ``n`` blob centres and directions from ``(u, v)``: of twelve
    headings, the one whose course stays most on land, off mining and away from the other
    new sites (``taken``), so that what it newly reaches each year is new."""
    meander = np.concatenate([[0], np.cumsum(rng.normal(0, 0.2, n - 1))])
    side, best = grid.mask.shape[0], None
    for heading in rng.uniform(0, 2 * np.pi) + np.arange(12) * np.pi / 6:
        angle = heading + meander
        pu = u + _RIVER_STEP * np.concatenate([[0], np.cumsum(np.cos(angle[1:]))])
        pv = v + _RIVER_STEP * np.concatenate([[0], np.cumsum(np.sin(angle[1:]))])
        col = np.floor(pu * grid.half + side / 2).astype(int)
        row = side - 1 - np.floor(pv * grid.half + side / 2).astype(int)
        land = (np.minimum(col, row) >= 0) & (np.maximum(col, row) < side) \
            & grid.mask[np.clip(row, 0, side - 1), np.clip(col, 0, side - 1)]
        near = np.hypot(pu[:, None] - taken[:, 0], pv[:, None] - taken[:, 1]).min(axis=1) < 0.15
        cost = (~land).sum() + fields.mining(pu, pv).sum() + near[1:].sum()  # the start is taken
        if best is None or cost < best[0]:
            best = cost, pu, pv, angle
    return best[1:]


def _plan(grid: _Grid, fields: _Fields, years: Sequence[int],
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every cluster ever mined (rows of ``_Fields.hot``) and its amplitude factor in each
    year, (clusters, years)."""
    k, floor = len(years), 1.5 / grid.half  # floor as _Fields.draw's: a few cells wide on tiny grids
    # The first year's clusters are make_country's; strong ones stop, so that their
    # abandonment crosses the threshold. Changes are spread over the years' steps.
    hot, factor = [fields.hot], [np.ones((len(fields.hot), k))]
    strong = np.argsort(-fields.hot[:, 5], kind="stable")[:len(fields.hot) // 2]
    for i, h in enumerate(_apart(fields.hot[:, 0], fields.hot[:, 1], rng.permutation(strong), _N_STOP)):
        factor[0][h, 1 + i % (k - 1):] = _RESIDUAL
    sites = _sites(grid, fields, _N_APPEAR + _N_RIVERS, rng)
    for u, v in sites[:_N_APPEAR]:  # make_country's shapes, a little stronger to cross the threshold
        along = max(rng.uniform(0.05, 0.15), floor)
        hot.append([[u, v, rng.uniform(0, np.pi), along, max(along / rng.uniform(1, 3), floor), rng.uniform(0.75, 1)]])
    factor.append(np.array([[float(j >= 1 + i % (k - 1)) for j in range(k)] for i in range(_N_APPEAR)]))
    # A river is a chain of blobs whose sum is a ribbon of even intensity; each year
    # the worked stretch reaches further from its start.
    length = _RIVER_START + _RIVER_RATE * (np.asarray(years, float) - years[0])
    n_blobs = int(np.ceil(length[-1] / _RIVER_STEP)) + 1
    along, across = max(_RIVER_STEP, floor), max(_RIVER_WIDTH, floor)
    reached = (np.arange(n_blobs)[:, None] * _RIVER_STEP <= length[None, :] + 1e-9).astype(float)
    taken = np.array(sites)
    for u, v in sites[_N_APPEAR:]:
        pu, pv, angle = _course(grid, fields, u, v, n_blobs, taken, rng)
        taken = np.vstack([taken, np.column_stack([pu, pv])])
        amp = rng.uniform(0.75, 0.95) * _RIVER_STEP / (np.sqrt(2 * np.pi) * along)
        hot.append(np.column_stack([pu, pv, angle, np.full(n_blobs, along), np.full(n_blobs, across),
                                    np.full(n_blobs, amp)]))
        factor.append(reached)
    return np.vstack(hot), np.vstack(factor)


def _revisit(labels: pd.DataFrame, truth: pd.DataFrame, earlier: pd.DataFrame, grid: _Grid,
             fields: _Fields, share: float, rng: np.random.Generator) -> None:
    """Move ``share`` of a year's labels (plain ones inside a land cell, so that each year
    keeps its labels on edges and at sea) onto earlier years' label points, labelled from
    this year's truth: a re-inspection."""
    side = grid.mask.shape[0]
    x, y = labels["lon"].to_numpy() / grid.size - grid.x0, labels["lat"].to_numpy() / grid.size - grid.y0
    on_edge = (np.abs(x - np.round(x)) < 1e-6) | (np.abs(y - np.round(y)) < 1e-6)
    col, row = np.clip(np.floor(x).astype(int), 0, side - 1), np.clip(side - 1 - np.floor(y).astype(int), 0, side - 1)
    plain = np.flatnonzero(~on_edge & grid.mask[row, col])
    n = min(round(share * len(labels)), plain.size, len(earlier))
    rows, source = rng.choice(plain, n, replace=False), rng.choice(len(earlier), n, replace=False)
    lon, lat = earlier["lon"].to_numpy()[source], earlier["lat"].to_numpy()[source]
    p = _true_probability(fields.mining(*grid.uv(lon / grid.size - grid.x0, lat / grid.size - grid.y0)))
    label = (rng.random(n) < p).astype(int)
    commercial = labels["mine_type"].to_numpy()[rows] == "commercial"  # _labels' tag, kept
    labels.loc[rows, "lon"], labels.loc[rows, "lat"], labels.loc[rows, "label"] = lon, lat, label
    labels.loc[rows, "mine_type"] = np.where(commercial, "commercial", np.where(label == 1, "artisanal", "none"))
    truth.loc[rows, "true_probability"] = p


def make_country_years(out_dir: str | os.PathLike, years: Sequence[int] = (2019, 2021, 2023),
                       n_cells: int = 5000, n_features: int = 200, n_labels: int | None = None,
                       seed: int = 0, cell_size: float = 0.01, rows_per_batch: int | None = None,
                       feature_scale: float = 1.0, featurization_seed: int | None = None,
                       year_noise: float = 0.15, revisit_share: float = 0.1) -> YearsFiles:
    """Write a synthetic country whose mining changes over ``years``.

    Parameters
    ----------
    out_dir
        Directory for the files; created if missing.
    years
        Two or more distinct years, in any order; rivers grow with the years elapsed.
    n_cells, n_features, seed, cell_size, rows_per_batch, feature_scale, featurization_seed
        As :func:`make_country`: for the same ``seed`` the land, the featurization and the
        first year's clusters are those ``make_country`` draws, with the rivers' first
        stretches added.
    n_labels
        Label points per year; defaults to ``max(200, n_cells // 10)``.
    year_noise
        Half-width of each year's own feature noise, next to the noise of the land that
        every year shares (half-width 0.6): what tells the years' images of an unchanged
        cell apart. 0 gives such a cell identical features every year.
    revisit_share
        Share of each later year's labels placed on an earlier year's label point.

    Returns
    -------
    YearsFiles
        The paths, the number of cells and the number of labels over all years.
    """
    years = sorted(int(y) for y in years)
    n_labels = max(200, n_cells // 10) if n_labels is None else n_labels
    if len(set(years)) != len(years) or len(years) < 2 or n_cells < 100 or n_features < 1 or n_labels < 10 \
            or cell_size <= 0 or feature_scale <= 0 or year_noise < 0 or not 0 <= revisit_share <= 1:
        raise ValueError(f"need two or more distinct years (got {years}), n_cells >= 100, n_features >= 1, "
                         "n_labels >= 10, cell_size > 0, feature_scale > 0, year_noise >= 0, 0 <= revisit_share <= 1")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # make_country's four streams first (spawned children do not depend on how many are
    # spawned), then the changes' and the years' own noise.
    shape_seq, field_seq, label_seq, feature_seq, plan_seq, jitter_seq = np.random.SeedSequence(seed).spawn(6)
    if featurization_seed is not None:
        feature_seq = np.random.SeedSequence(featurization_seed)
    grid = _land_grid(n_cells, cell_size, np.random.default_rng(shape_seq))
    fields = _Fields.draw(grid, np.random.default_rng(field_seq))
    hot, factor = _plan(grid, fields, years, np.random.default_rng(plan_seq))
    files = YearsFiles(out / "SLE_mines.csv", {y: out / f"SLE_features_{y}.feather" for y in years},
                       {y: out / f"truth_cells_{y}.parquet" for y in years}, out / "districts.gpkg",
                       int(grid.mask.sum()), n_labels * len(years), out / "truth_labels.csv")
    all_labels, all_truth = [], []
    for k, (year, label_seq_k, jitter_seq_k) in enumerate(zip(years, label_seq.spawn(len(years)),
                                                             jitter_seq.spawn(len(years)))):
        on = factor[:, k] > 0  # clusters not mined that year cost nothing in _Fields.mining's loop
        fields_k = _Fields(fields.freq, fields.phase, np.column_stack([hot[on, :5], hot[on, 5] * factor[on, k]]))
        rng = np.random.default_rng(label_seq_k)
        labels, truth = _labels(grid, fields_k, n_labels, rng)
        if k and revisit_share:
            _revisit(labels, truth, pd.concat(all_labels), grid, fields_k, revisit_share, rng)
        ids = [f"SLE-{year}-{i:06d}" for i in range(n_labels)]
        all_labels.append(labels.assign(unique_id=ids, year=year))
        all_truth.append(truth.assign(unique_id=ids, year=year)[["unique_id", "year", "true_probability"]])
        with writing(files.features[year]) as tmp, writing(files.truth_cells[year]) as truth_tmp:
            # The same featurization stream every year: the same weights and land noise.
            _write_features(tmp, truth_tmp, grid, fields_k, n_features, rows_per_batch, feature_scale,
                            np.random.default_rng(feature_seq), jitter=year_noise,
                            jitter_rng=np.random.default_rng(jitter_seq_k))
    for path, frames in ((files.labels, all_labels), (files.truth_labels, all_truth)):
        with writing(path) as tmp:
            pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
    write_districts(files.districts, files.truth_cells[years[0]])
    return files


def true_change(files: YearsFiles, earlier: int, later: int, threshold: float = 0.5) -> pd.DataFrame:
    """Every cell's true probability in two years and its true change.

    Returns
    -------
    pandas.DataFrame
        ``lat``, ``lon``, ``true_from``, ``true_to`` and ``kind``: ``"new"`` where the
        true probability rose to ``threshold`` or above, ``"abandoned"`` where it fell
        below it, else ``""``.
    """
    before = pd.read_parquet(files.truth_cells[earlier]).rename(columns={"true_probability": "true_from"})
    after = pd.read_parquet(files.truth_cells[later]).rename(columns={"true_probability": "true_to"})
    both = before.merge(after, on=["lat", "lon"], how="inner", validate="1:1")
    p, q = both["true_from"].to_numpy(), both["true_to"].to_numpy()
    both["kind"] = np.select([(p < threshold) & (q >= threshold), (p >= threshold) & (q < threshold)],
                             list(KINDS), "")
    return both


def score_change(predicted_cells: pd.DataFrame, files: YearsFiles, earlier: int, later: int,
                 threshold: float = 0.5, cell_size: float = 0.01) -> dict[str, dict[str, Any]]:
    """How a predicted change map from ``earlier`` to ``later`` matches the true one.

    Parameters
    ----------
    predicted_cells
        ``lat``, ``lon`` (cell centroids) and ``kind`` (``"new"``, ``"abandoned"`` or
        ``""``) per cell; cells left out count as unchanged.
    files, earlier, later
        The country and two of its years.
    threshold
        The probability whose crossing is a change, as for :func:`true_change`.
    cell_size
        The grid's spacing, to match the predicted cells to the country's.

    Returns
    -------
    dict
        Per kind: ``precision`` (NaN if no cell was predicted so), ``recall`` (NaN if
        none truly changed so), ``n_true`` and ``n_predicted``.
    """
    from asm_dask.read.grid import cell_ids

    truth = true_change(files, earlier, later, threshold)
    truth_id = cell_ids(truth["lat"].to_numpy(), truth["lon"].to_numpy(), cell_size)
    predicted_id = cell_ids(predicted_cells["lat"].to_numpy(), predicted_cells["lon"].to_numpy(), cell_size)
    kind = predicted_cells["kind"].fillna("").astype(str).to_numpy()
    if not set(kind) <= {"", *KINDS}:
        raise ValueError(f"kind must be one of {KINDS} or '', got {sorted(set(kind) - {'', *KINDS})}")
    if len(np.unique(predicted_id)) != len(predicted_id):
        raise ValueError("predicted_cells holds a cell more than once")
    at = pd.Index(truth_id).get_indexer(predicted_id)
    if (at < 0).any():  # most likely another grid: say so rather than score it as unchanged
        raise ValueError(f"{(at < 0).sum()} predicted cells are not in the country at cell_size={cell_size}")
    predicted = np.full(len(truth), "", dtype=object)
    predicted[at] = kind
    scores = {}
    for name in KINDS:
        is_true, is_predicted = truth["kind"].to_numpy() == name, predicted == name
        hits, n_true, n_predicted = int((is_true & is_predicted).sum()), int(is_true.sum()), int(is_predicted.sum())
        scores[name] = {"precision": hits / n_predicted if n_predicted else np.nan,
                        "recall": hits / n_true if n_true else np.nan, "n_true": n_true, "n_predicted": n_predicted}
    return scores
