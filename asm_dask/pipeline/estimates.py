"""The run's estimate of how much ASM there is: its probability sample on the cells of
the map, and :func:`asm_dask.estimation.area.estimate_area` applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, warn
from ..estimation.area import AreaEstimates, ProbabilitySample, bounded, estimate_area, estimate_domains
from ..estimation.stratified import Estimate, Strata
from ..read.grid import cell_area_km2
from ..read.labels import Labels
from ..read.table import FeatureTable
from ..report.build import Maps
from ..report.districts import district_of


@dataclass(frozen=True)
class Estimated:
    """What the run's probability sample says: the country's estimates, each district's
    (the districts' table with the estimates' columns added), and the notes a reader needs."""

    country: AreaEstimates | None
    districts: Any  #: a GeoDataFrame, or None without districts or without an estimate
    notes: list[str]
    #: the sampled cells estimated from: ``lat``, ``lon`` (centroids), ``label``; or None
    cells: pd.DataFrame | None = None


def estimate_from_sample(labels: Labels, joined: pd.DataFrame, table: FeatureTable, grid: pd.DataFrame,
                         trained_cells: np.ndarray, sample_types: tuple[str, ...], threshold: float, maps: Maps,
                         where: str = "") -> Estimated:
    """The estimates from ``labels.sample`` over the map's ``grid`` (``cell_id``, ``lat``,
    ``lon``, ``probability`` of every cell), for the country and for each of the ``maps``'
    districts, if any; the notes say why there is no estimate, or which sampled labels
    fell on no mapped cell; ``where`` (a year) opens each note.

    ``joined`` are the labels joined to their cells (:class:`~asm_dask.spatial.join.JoinedLabels`'
    rows): the sample is among them, since every sampled label is kept for training.
    """
    prefix = f"{where}: " if where else ""
    if labels.sample is None:
        note = (f"{prefix}no estimate of the ASM area: no label has a sample_type of {', '.join(sample_types)} "
                "(estimate.sample_types), so the labels hold no probability sample to estimate from; "
                "asm-dask sample draws one")
        warn(note)
        return Estimated(None, None, [note])
    joined = joined[joined["label_row"].isin(labels.sample["label_row"])]
    sampled_probability = _probability_of(joined["cell_id"].to_numpy(), grid)
    on_map = ~np.isnan(sampled_probability)
    joined, sampled_probability = joined[on_map].reset_index(drop=True), sampled_probability[on_map]
    notes = []
    missed = len(labels.sample) - len(joined)
    if missed:
        notes.append(f"{prefix}{missed} of the {len(labels.sample)} labels of the probability sample fall on no mapped "
                     "cell and are left out of the estimate")
    if len(joined) < 2:
        notes.append(f"{prefix}no estimate of the ASM area: {len(joined)} label(s) of the probability sample "
                     f"({', '.join(sample_types)}) on mapped cells; at least 2 are needed")
    for note in notes:
        warn(note)
    if len(joined) < 2:
        return Estimated(None, None, notes)
    probability, area = grid["probability"].to_numpy(), cell_area_km2(grid["lat"].to_numpy(), table.cell_size)
    sample = ProbabilitySample(
        reference=joined["label"].to_numpy(dtype=float),
        probability=sampled_probability,
        area_km2=cell_area_km2(joined["cell_lat"].to_numpy(), table.cell_size),
        held_out=~np.isin(joined["cell_id"].to_numpy(), trained_cells),
        strata=_design(joined, len(grid)),
        inclusion=joined["inclusion_probability"].to_numpy(dtype=float)
        if "inclusion_probability" in joined and "stratum" not in joined else None)
    country = estimate_area(sample, probability, area, threshold)
    cells = pd.DataFrame({"lat": joined["cell_lat"], "lon": joined["cell_lon"], "label": joined["label"]})
    districts = maps.districts
    if districts is None:
        return Estimated(country, None, notes, cells)
    found = estimate_domains(sample, district_of(districts, joined["cell_lon"].to_numpy(),
                                                 joined["cell_lat"].to_numpy()),
                             probability, area, maps.cell_district, len(districts))
    return Estimated(country, _with_estimates(districts, found), notes, cells)


def _probability_of(cell_ids: np.ndarray, grid: pd.DataFrame) -> np.ndarray:
    """The map's probability at each of ``cell_ids``, NaN where the map has no such cell.

    The few sampled cells are looked up in the map, not the map's millions of cells
    indexed (0.5 s at DR Congo's size)."""
    sampled = pd.Index(pd.unique(cell_ids))
    position = sampled.get_indexer(grid["cell_id"].to_numpy())
    found = position >= 0
    probability = np.full(len(sampled), np.nan)
    probability[position[found]] = grid["probability"].to_numpy()[found]
    return probability[sampled.get_indexer(cell_ids)]


def _with_estimates(districts: Any, found: list[dict[str, Estimate | None]]) -> Any:
    """The districts' table with, per estimator, the ASM area and its 95% interval."""
    table = districts.copy()
    for name, short in (("design_based", "design"), ("prediction_powered", "ppi"), ("map", "map")):
        estimates = [row[name] for row in found]
        table[f"asm_km2_{short}"] = [np.nan if e is None else e.value for e in estimates]
        if short != "map":
            bounds = [(np.nan, np.nan) if e is None else bounded(e) for e in estimates]
            table[f"asm_km2_{short}_low"] = [low for low, _ in bounds]
            table[f"asm_km2_{short}_high"] = [high for _, high in bounds]
    return table


def check_sample(labels: Labels, table: FeatureTable, sample_types: tuple[str, ...], default: tuple[str, ...],
                 path: str) -> None:
    """Before any fit: sample types named in the job file that no label has, and a sample
    drawn from another map (its strata do not hold this table's cells), are one line."""
    if labels.sample is None:
        if sample_types != default:
            raise InputError(f"{path}: no label has a sample_type of {', '.join(sample_types)} "
                             "(estimate.sample_types)")
        return
    if "stratum_cells" not in labels.sample:
        return
    sizes = labels.sample.groupby("stratum")["stratum_cells"].nunique()
    if (sizes > 1).any():
        raise InputError(f"{path}: stratum {sizes.index[sizes > 1][0]} of the sample has more than one "
                         "stratum_cells value")
    total = int(labels.sample.groupby("stratum")["stratum_cells"].first().sum())
    # cells with a missing feature are left off a map: a few may differ, not a country
    if abs(total - table.n_rows) > 0.01 * table.n_rows:
        raise InputError(f"{path}: the sample's strata hold {total:,} cells and these features {table.n_rows:,}: "
                         "the sample was drawn from another map; draw it with asm-dask sample from a run of "
                         "these features")


def _design(sample: pd.DataFrame, n_cells: int) -> Strata:
    """The sample's strata as ``asm-dask sample`` wrote them, or one stratum of every
    mapped cell: simple random sampling."""
    if "stratum" not in sample:
        return Strata(np.zeros(len(sample), dtype=int), {0: n_cells})
    sizes = sample.groupby("stratum")["stratum_cells"].first().to_dict()
    return Strata(sample["stratum"].to_numpy(), sizes)
