"""The run's estimate of how much ASM there is: its probability sample joined to the
cells of the map, and :func:`asm_dask.estimation.area.estimate_area` applied."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, warn
from ..estimation.area import AreaEstimates, ProbabilitySample, estimate_area
from ..estimation.stratified import Strata
from ..read.grid import cell_area_km2, cell_ids
from ..read.labels import Labels
from ..read.table import FeatureTable
from ..spatial.join import join_labels


def estimate_from_sample(labels: Labels, table: FeatureTable, grid: pd.DataFrame, trained_cells: np.ndarray,
                         sample_types: tuple[str, ...], threshold: float,
                         client: Any) -> tuple[AreaEstimates | None, list[str]]:
    """The estimates from ``labels.sample`` over the map's ``grid`` (``lat``, ``lon``,
    ``probability`` of every cell), and the notes a reader needs: why there is no
    estimate, or which sampled labels fell on no mapped cell."""
    if labels.sample is None:
        note = (f"no estimate of the ASM area: no label has a sample_type of {', '.join(sample_types)} "
                "(estimate.sample_types), so the labels hold no probability sample to estimate from; "
                "asm-dask sample draws one")
        warn(note)
        return None, [note]
    joined = join_labels(Labels(points=labels.sample, n_read=len(labels.sample), removed={}), table, client).rows
    # A point on a shared edge joins every cell it touches: it counts once.
    joined = joined.drop_duplicates("label_row").reset_index(drop=True)
    mapped = pd.Series(grid["probability"].to_numpy(),
                       index=cell_ids(grid["lat"].to_numpy(), grid["lon"].to_numpy(), table.cell_size))
    joined = joined[joined["cell_id"].isin(mapped.index)]
    notes = []
    missed = len(labels.sample) - len(joined)
    if missed:
        notes.append(f"{missed} of the {len(labels.sample)} labels of the probability sample fall on no mapped "
                     "cell and are left out of the estimate")
    if len(joined) < 2:
        note = (f"no estimate of the ASM area: {len(joined)} label(s) of the probability sample "
                f"({', '.join(sample_types)}) on mapped cells; at least 2 are needed")
        warn(note)
        return None, notes + [note]
    area_all = cell_area_km2(grid["lat"].to_numpy(), table.cell_size)
    sample = ProbabilitySample(
        reference=joined["label"].to_numpy(dtype=float),
        probability=mapped.loc[joined["cell_id"]].to_numpy(),
        area_km2=cell_area_km2(joined["cell_lat"].to_numpy(), table.cell_size),
        held_out=~np.isin(joined["cell_id"].to_numpy(), trained_cells),
        strata=_design(joined, len(grid)))
    for note in notes:
        warn(note)
    return estimate_area(sample, grid["probability"].to_numpy(), area_all, threshold), notes


def check_sample(labels: Labels, table: FeatureTable, sample_types: tuple[str, ...], default: tuple[str, ...],
                 path: str) -> None:
    """Before any fit: sample types named in the job file that no label has, and a sample
    drawn from another map (its strata do not hold this table's cells), are one line."""
    if labels.sample is None:
        if sample_types != default:
            raise InputError(f"{path}: no label has a sample_type of {', '.join(sample_types)} "
                             "(estimate.sample_types)")
        return
    if "stratum" not in labels.sample:
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
