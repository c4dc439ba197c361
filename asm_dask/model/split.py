"""Split stage: train/test rows and cross-validation folds that never share a cell.

Rows that share a cell share a feature vector; if they landed on both sides of a split,
the model would be tested on what it was trained on. Groups are cells by default, or
square blocks of cells for spatially blocked validation (MOSAIKS features are strongly
spatially autocorrelated, so random splits flatter a model).
"""

from __future__ import annotations

import numpy as np

from ..config import SplitConfig
from ..errors import InputError
from ..spatial.blocks import block_groups


def split_groups(cell_id: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                 config: SplitConfig) -> np.ndarray:
    """The group of every row: its cell, or its block of ``block_size`` degrees."""
    if config.group_by == "cell":
        return np.asarray(cell_id)
    return block_groups(lat, lon, config.block_size)


def train_test_split_groups(y: np.ndarray, groups: np.ndarray, config: SplitConfig,
                            source: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and test rows: a seeded split of the groups."""
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=config.test_size, random_state=config.seed)
    try:
        train, test = next(splitter.split(np.zeros(len(y)), y, groups))
    except ValueError:  # scikit-learn's message speaks of n_samples, not of what to change
        n_groups = len(np.unique(groups))
        raise InputError(f"{source}: holding out split.test_size={config.test_size} of "
                         f"{n_groups} labelled {config.group_by}(s) leaves no training or no test "
                         f"set; change split.test_size{' or split.block_size' if config.group_by == 'block' else ''}"
                         ) from None
    for name, part in (("training", train), ("test", test)):
        if len(np.unique(y[part])) < 2:
            raise InputError(f"{source}: the {name} set holds one class only "
                             f"({len(part)} rows); more labels of each class are needed")
    return train, test


def cv_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, source: str,
             seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds of whole groups, stratified by each group's majority class, seeded.

    ``StratifiedKFold(shuffle=True, random_state=seed)`` over the groups, each labelled by
    the class most of its rows hold (1 on a tie), then expanded to their rows. Shuffled:
    group ids follow the grid from south to north, so unshuffled folds would be bands of
    latitude, a spatial split in disguise whose out-of-fold scores, shifted from band to
    band, would mislead the calibrator. scikit-learn's
    ``StratifiedGroupKFold`` balances classes more finely but loops in Python over the
    groups: a second for three thousand labelled cells. Large blocks often hold both
    classes, so that fewer than ``n_folds`` of them have a positive majority; they are then
    stratified by whether their share of ASM labels is above the training set's. Either
    way every validation fold holds groups of both kinds, hence labels of both classes.
    """
    y = np.asarray(y)
    unique, group_of_row = np.unique(groups, return_inverse=True)
    group_of_row = group_of_row.ravel()
    if len(unique) < n_folds:
        raise InputError(f"{source}: only {len(unique)} labelled cells/blocks in the training set, "
                         f"fewer than model.cv_folds={n_folds}")
    share = np.bincount(group_of_row, weights=y, minlength=len(unique)) / np.bincount(group_of_row)
    for threshold in (0.5, y.mean()):
        group_class = (share >= threshold).astype(int)
        if np.bincount(group_class, minlength=2).min() >= n_folds:
            break
    else:
        counts = np.bincount(group_class, minlength=2)
        raise InputError(f"{source}: fewer than model.cv_folds={n_folds} labelled cells/blocks of one "
                         f"class in the training set ({len(unique)} in all, by their share of ASM "
                         f"labels {counts[1]} high and {counts[0]} low); with blocks, a smaller "
                         "split.block_size makes more of them; otherwise more labels of each class "
                         "are needed (or fewer model.cv_folds)")
    from sklearn.model_selection import StratifiedKFold

    folds = []
    for _, valid_groups in StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(
            np.zeros(len(unique)), group_class):
        valid = np.isin(group_of_row, valid_groups)
        folds.append((np.flatnonzero(~valid), np.flatnonzero(valid)))
    return folds
