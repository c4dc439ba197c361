"""Where to label next, for the model: cells ranked for a field team or an image
interpreter, apart from the estimation sample (:mod:`.sample_design`) and never mixed
into it (their ``sample_type`` is ``next``, which no estimate reads).

Two kinds of cell take turns on the list: the cells the map is least sure of (the
calibrated probability ``p`` nearest the hotspot threshold ``t``: uncertainty
``1 - |p - t| / max(t, 1 - t)``), whose labels teach the model most, and the hotspot
cells (``p >= t``) with no label near, most likely first: mines nobody has looked at.
Cells within ``spacing`` cells of a label already made are passed over, and so is any
cell within ``spacing`` cells of one already taken, so that the list spreads over the
country instead of ten cells in one valley.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

#: cells, in each direction, within which a label or a cell taken keeps others off the list
SPACING = 5
#: cells whose distance to the labels is looked up at once
LABEL_CHECK_BLOCK = 4096


def next_labels(cells: pd.DataFrame, labelled: pd.DataFrame, n: int, threshold: float,
                cell_size: float) -> pd.DataFrame:
    """The ``n`` cells (of ``cells``: ``lat``, ``lon``, ``probability``) to label next,
    ranked, with the map's ``uncertainty`` there and the ``reason`` it is on the list;
    ``labelled`` (``lat``, ``lon``) are the labels already made.

    The spacing is :data:`SPACING` cells where the country has room for ``n`` such cells,
    else the widest that has (down to 1: any cell without a label); ``attrs["spacing"]``
    says which.
    """
    for spacing in range(SPACING, 0, -1):
        chosen = _spread(cells, labelled, n, threshold, cell_size, spacing)
        if len(chosen) == n:
            break
    chosen.attrs["spacing"] = spacing
    return chosen


def _spread(cells: pd.DataFrame, labelled: pd.DataFrame, n: int, threshold: float, cell_size: float,
            spacing: int) -> pd.DataFrame:
    """Up to ``n`` cells, unsure ones and unlabelled hotspots in turn, ``spacing`` cells
    apart and from every label."""
    p = cells["probability"].to_numpy()
    position = _grid_position(cells, cell_size)
    labels = cKDTree(_grid_position(labelled, cell_size)) if len(labelled) else None
    uncertainty = 1 - np.abs(p - threshold) / max(threshold, 1 - threshold)
    hotspot = np.flatnonzero(p >= threshold)
    unsure = np.argsort(-uncertainty, kind="stable")
    likely = hotspot[np.argsort(-p[hotspot], kind="stable")]
    taken: list[int] = []
    reasons: list[str] = []
    buckets: dict[tuple[int, int], list[np.ndarray]] = {}
    queues = {"the map is unsure": _away_from(labels, unsure, position, spacing),
              "hotspot without a label near": _away_from(labels, likely, position, spacing)}
    while len(taken) < n and queues:
        for reason in list(queues):
            index = _next_apart(queues[reason], position, buckets, spacing)
            if index is None:
                del queues[reason]
            elif len(taken) < n:
                taken.append(index)
                reasons.append(reason)
    chosen = cells.iloc[taken][["lat", "lon", "probability"]].reset_index(drop=True)
    chosen.insert(0, "rank", np.arange(1, len(taken) + 1))
    chosen["uncertainty"] = uncertainty[taken]
    chosen["reason"] = reasons
    return chosen


def _away_from(labels: cKDTree | None, ordered: np.ndarray, position: np.ndarray,
               spacing: int) -> Iterator[int]:
    """The cells of ``ordered``, in order, at least ``spacing`` cells from every label.

    A list of a hundred cells looks at the first few thousand of a country's millions,
    so the distance to the labels is asked for a block of cells at a time, as they come
    (the whole of a DR Congo-size map took 0.6 s).
    """
    for start in range(0, len(ordered), LABEL_CHECK_BLOCK):
        block = ordered[start:start + LABEL_CHECK_BLOCK]
        if labels is not None:
            gap, _ = labels.query(position[block], p=np.inf)
            block = block[gap >= spacing]
        yield from block


def _next_apart(queue, position: np.ndarray, buckets: dict[tuple[int, int], list[np.ndarray]],
                spacing: int) -> int | None:
    """The queue's next cell at least ``spacing`` cells from every cell taken (recorded
    in ``buckets`` of ``spacing`` cells), or ``None`` when the queue runs out."""
    for index in queue:
        here = position[index]
        key = (int(here[0] // spacing), int(here[1] // spacing))
        around = (q for a in (-1, 0, 1) for b in (-1, 0, 1) for q in buckets.get((key[0] + a, key[1] + b), ()))
        if all(np.abs(q - here).max() >= spacing for q in around):
            buckets.setdefault(key, []).append(here)
            return int(index)
    return None


def _grid_position(points: pd.DataFrame, cell_size: float) -> np.ndarray:
    """Points as (row, column) of the grid's cells: distances counted in cells."""
    return np.column_stack([np.floor(points["lat"].to_numpy() / cell_size),
                            np.floor(points["lon"].to_numpy() / cell_size)])
