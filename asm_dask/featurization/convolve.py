"""Random convolutional features of a cell: its pixels convolved with a :class:`FilterBank`,
both ReLUs, average-pooled over the cell.

For each cell, every ``k x k`` window of its pixels (a "valid" convolution: the cell's own
pixels only, no padding) is a row of an im2col matrix, and one matrix product with the
filters gives every response. A window that touches a missing pixel is left out, and the
cell's features are means over the windows left. The product is taken a block of rows at
a time, and each block's ReLUs summed into the means at once: the full response of a
0.01 degree cell of 10 m imagery (12,321 windows x 2000 filters) is never held.
"""

from __future__ import annotations

import numpy as np

from .filters import FilterBank

#: windows multiplied by the filters at once: 512 x 2000 float32 responses are 4 MB
ROWS_PER_PRODUCT = 512


def windows(pixels: np.ndarray, kernel_size: int) -> np.ndarray:
    """Every ``kernel_size`` square window of ``pixels`` (``(n_bands, height, width)``),
    as rows in (band, row, column) order: ``(n_windows, n_bands * kernel_size**2)``."""
    view = np.lib.stride_tricks.sliding_window_view(pixels, (kernel_size, kernel_size), axis=(1, 2))
    return view.transpose(1, 2, 0, 3, 4).reshape(-1, pixels.shape[0] * kernel_size ** 2)


def rcf_features(pixels: np.ndarray, bank: FilterBank) -> np.ndarray:
    """The ``2 * n_filters`` features of one cell's ``pixels`` (``(n_bands, height,
    width)``, float32, NaN where missing): first ``mean(ReLU(conv - bias))`` of each
    filter, then ``mean(ReLU(-conv - bias))``; NaN where no window is complete."""
    rows = windows(pixels, bank.kernel_size)
    rows = rows[np.isfinite(rows).all(axis=1)]
    if len(rows) == 0:
        return np.full(bank.n_features, np.nan, dtype=np.float32)
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    filters = np.ascontiguousarray(bank.weights.reshape(bank.n_filters, -1).T, dtype=np.float32)
    positive = np.zeros(bank.n_filters)
    negative = np.zeros(bank.n_filters)
    # Two buffers for every block of rows: a Dask worker's allocator (MALLOC_TRIM_THRESHOLD_
    # set) maps and unmaps a fresh 4 MB array each time, and the page faults cost more than
    # the products (measured: 168 ms a cell against 66 ms).
    response = np.empty((min(ROWS_PER_PRODUCT, len(rows)), bank.n_filters), dtype=np.float32)
    flipped = np.empty_like(response)
    for start in range(0, len(rows), ROWS_PER_PRODUCT):
        block = rows[start:start + ROWS_PER_PRODUCT]
        product, negated = response[:len(block)], flipped[:len(block)]
        np.matmul(block, filters, out=product)
        np.negative(product, out=negated)
        product -= bank.bias
        negated -= bank.bias
        positive += np.maximum(product, 0, out=product).sum(axis=0, dtype=np.float64)
        negative += np.maximum(negated, 0, out=negated).sum(axis=0, dtype=np.float64)
    return (np.concatenate([positive, negative]) / len(rows)).astype(np.float32)
