"""A stratified random sample of cells for field teams to label: the probability sample
the next run estimates the ASM area from (:mod:`asm_dask.estimation.area`).

**Strata** are bins of the map's calibrated probability, with edges where each holds an
equal share of the map's expected ASM (its sum of probabilities): the few cells of high
probability make small strata of their own, the many of low probability a large one.

**Allocation** follows Olofsson et al. (2014, section 5.1.2) for rare classes: equal
allocation would spend the sample on small strata and make the area's estimate poor,
proportional allocation would leave the rare ASM strata with a handful of cells and make
the map's accuracy there unknowable; so each stratum first gets a floor (50 cells, or an
equal share of half the sample if that is smaller), and the rest goes to the strata in
proportion to their sizes. Within a stratum, cells are drawn at random without
replacement, seeded; each drawn cell carries its stratum, the stratum's size in cells and
its inclusion probability ``n_h / N_h``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: the cells each stratum gets before the rest is shared in proportion to size
FLOOR = 50


@dataclass(frozen=True)
class SampleDesign:
    """The strata and how many cells each gives."""

    edges: list[float]  #: probability bins: stratum h holds edges[h] <= p < edges[h + 1]
    sizes: list[int]  #: cells in each stratum (N_h)
    allocation: list[int]  #: cells drawn from each (n_h)
    seed: int

    def as_dict(self) -> dict:
        return {"strata": [{"stratum": h, "probability_from": self.edges[h], "probability_to": self.edges[h + 1],
                            "cells": self.sizes[h], "sampled": self.allocation[h],
                            "inclusion_probability": self.allocation[h] / self.sizes[h]}
                           for h in range(len(self.sizes))],
                "n": int(sum(self.allocation)), "seed": self.seed,
                "allocation": f"a floor of min({FLOOR}, n / (2 K)) per stratum, the rest in proportion to size "
                              "(Olofsson et al. 2014, 5.1.2)"}


def strata_edges(probability: np.ndarray, n_strata: int) -> list[float]:
    """Probability edges of ``n_strata`` bins each holding an equal share of the
    expected ASM; bins that would be empty merge with their neighbour."""
    ordered = np.sort(probability)
    cumulative = np.cumsum(ordered)
    targets = cumulative[-1] * np.arange(1, n_strata) / n_strata
    inner = ordered[np.searchsorted(cumulative, targets)] if cumulative[-1] > 0 else []
    return [0.0] + sorted({float(e) for e in inner if 0 < e <= 1}) + [np.nextafter(1.0, 2.0)]


def allocate(sizes: list[int], n: int) -> list[int]:
    """Cells to draw from strata of ``sizes``: a floor each, the rest in proportion to
    size, never more than a stratum holds; the total is ``n`` (largest remainders)."""
    floor = min(FLOOR, n // (2 * len(sizes)))
    base = np.minimum(np.array(sizes), floor)
    rest = n - int(base.sum())
    share = np.array(sizes) / sum(sizes) * rest
    extra = np.floor(share).astype(int)
    for h in np.argsort(-(share - extra))[: rest - int(extra.sum())]:
        extra[h] += 1
    counts = np.minimum(base + extra, sizes)
    # what a full stratum could not take goes to the others with room, largest first
    while counts.sum() < n:
        room = np.array(sizes) - counts
        counts[int(np.argmax(room))] += 1
    return [int(c) for c in counts]


def draw_sample(cells: pd.DataFrame, n: int, n_strata: int, seed: int) -> tuple[pd.DataFrame, SampleDesign]:
    """``n`` of ``cells`` (``lat``, ``lon``, ``probability``) by stratified random sampling,
    each with ``stratum``, ``stratum_cells`` and ``inclusion_probability``."""
    probability = cells["probability"].to_numpy()
    edges = strata_edges(probability, n_strata)
    stratum = np.searchsorted(edges, probability, side="right") - 1
    sizes = [int((stratum == h).sum()) for h in range(len(edges) - 1)]
    allocation = allocate(sizes, n)
    rng = np.random.default_rng(seed)
    drawn = [rng.choice(np.flatnonzero(stratum == h), k, replace=False) for h, k in enumerate(allocation)]
    rows = np.concatenate(drawn)
    sample = cells.iloc[rows][["lat", "lon", "probability"]].reset_index(drop=True)
    sample["stratum"] = stratum[rows]
    sample["stratum_cells"] = [sizes[h] for h in stratum[rows]]
    sample["inclusion_probability"] = [allocation[h] / sizes[h] for h in stratum[rows]]
    return sample, SampleDesign(edges, sizes, allocation, seed)
