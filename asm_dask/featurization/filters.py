"""MOSAIKS random convolutional filters: drawn once, saved with the features they make.

Two ways to draw them, as in the MOSAIKS paper (Rolf et al. 2021, and its code,
``mosaiks-paper/code/mosaiks/featurization.py``):

* ``empirical``: square patches of the imagery itself, drawn at random (seeded), each
  centred on its own mean and scaled to unit norm, then ZCA-whitened with a small bias
  added to the covariance's eigenvalues. The filters are whitened patches; the imagery they
  are convolved with is not whitened.
* ``gaussian``: weights drawn from a standard normal distribution.

A :class:`FilterBank` of ``n`` filters makes ``2 n`` features (:mod:`.convolve`). Its
fingerprint names the filters, bit for bit: features made with other filters are other
features, whatever their column names.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..records.fingerprint import digest

MODES = ("empirical", "gaussian")
#: patches drawn from the imagery to whiten, as the paper (1e5 patches of 10 images)
PATCHES_TO_WHITEN = 100_000
#: added to the eigenvalues of the patches' covariance before whitening, as the paper
ZCA_BIAS = 1e-3
#: a patch whose norm is below this after centring is left unscaled (a flat patch)
MIN_PATCH_NORM = 1e-8


@dataclass(frozen=True, eq=False)
class FilterBank:
    """Random convolutional filters and the bias of their ReLU.

    Attributes
    ----------
    weights : ndarray of shape (n_filters, n_bands, kernel_size, kernel_size), float32
    bias : float
        The threshold of both ReLUs: features are ``mean(ReLU(conv - bias))`` and
        ``mean(ReLU(-conv - bias))``, as the paper (torchgeo's ``RCF`` puts the bias
        inside the negation instead, a different feature whenever ``bias != 0``).
    mode : str
        ``empirical`` or ``gaussian``: how the weights were drawn.
    seed : int
        The seed they were drawn with.
    """

    weights: np.ndarray
    bias: float
    mode: str
    seed: int

    @property
    def n_filters(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_bands(self) -> int:
        return int(self.weights.shape[1])

    @property
    def kernel_size(self) -> int:
        return int(self.weights.shape[2])

    @property
    def n_features(self) -> int:
        return 2 * self.n_filters

    @property
    def fingerprint(self) -> str:
        """A short SHA-256 of the weights' bits, their shape and the bias."""
        return digest(np.ascontiguousarray(self.weights, dtype="<f4").tobytes(),
                      json.dumps([list(self.weights.shape), float(self.bias)]).encode())

    def as_metadata(self) -> dict[str, Any]:
        """The bank as JSON-ready data (the weights as little-endian float32, base64)."""
        return {"mode": self.mode, "seed": self.seed, "bias": float(self.bias),
                "shape": list(self.weights.shape), "fingerprint": self.fingerprint,
                "weights": base64.b64encode(np.ascontiguousarray(self.weights, dtype="<f4").tobytes()).decode()}

    @classmethod
    def from_metadata(cls, data: Any, source: str) -> FilterBank:
        """A bank from :meth:`as_metadata`'s data; :class:`InputError` naming ``source``
        if it is not one, or if its weights no longer match its fingerprint."""
        try:
            shape = tuple(int(n) for n in data["shape"])
            weights = np.frombuffer(base64.b64decode(data["weights"]), dtype="<f4").reshape(shape)
            bank = cls(weights.astype(np.float32), float(data["bias"]), str(data["mode"]), int(data["seed"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: not a filter bank of asm-dask featurize ({exc})") from None
        if len(shape) != 4 or shape[2] != shape[3] or bank.mode not in MODES:
            raise InputError(f"{source}: not a filter bank of asm-dask featurize (filters of shape {shape}, "
                             f"mode {bank.mode!r})")
        if bank.fingerprint != data.get("fingerprint"):
            raise InputError(f"{source}: the filters' weights do not match their fingerprint "
                             f"{data.get('fingerprint')!r}: the file was changed after featurize wrote it")
        return bank


def gaussian_filters(n_filters: int, n_bands: int, kernel_size: int, bias: float, seed: int) -> FilterBank:
    """Filters of standard normal weights."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((n_filters, n_bands, kernel_size, kernel_size)).astype(np.float32)
    return FilterBank(weights, float(bias), "gaussian", seed)


def empirical_filters(images: list[np.ndarray], n_filters: int, kernel_size: int, bias: float,
                      seed: int, n_patches: int = PATCHES_TO_WHITEN) -> FilterBank:
    """Filters drawn from ``images`` (each ``(n_bands, height, width)``, NaN where there is
    no data): ``n_patches`` patches without a missing pixel are drawn at random, whitened
    together (:func:`zca_whitened`), and ``n_filters`` of them become the filters."""
    rng = np.random.default_rng(seed)
    patches = sample_patches(images, kernel_size, n_patches, rng)
    if len(patches) < n_filters:
        raise InputError(f"the imagery sampled holds {len(patches)} patches of {kernel_size} x {kernel_size} "
                         f"pixels without missing values; {n_filters} filters need at least as many")
    whitened = zca_whitened(patches)
    chosen = rng.choice(len(whitened), n_filters, replace=False)
    n_bands = images[0].shape[0]
    weights = whitened[np.sort(chosen)].reshape(n_filters, n_bands, kernel_size, kernel_size)
    return FilterBank(weights.astype(np.float32), float(bias), "empirical", seed)


def sample_patches(images: list[np.ndarray], kernel_size: int, n_patches: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Up to ``n_patches`` patches of ``images`` without a missing pixel, drawn without
    replacement across all images: ``(n, n_bands * kernel_size**2)`` float64, each row a
    patch in (band, row, column) order."""
    per_image = []
    for image in images:
        windows = np.lib.stride_tricks.sliding_window_view(image, (kernel_size, kernel_size), axis=(1, 2))
        # (bands, rows, cols, k, k) -> (rows * cols, bands * k * k)
        flat = windows.transpose(1, 2, 0, 3, 4).reshape(-1, image.shape[0] * kernel_size ** 2)
        per_image.append(flat[np.isfinite(flat).all(axis=1)])
    patches = np.concatenate(per_image) if per_image else np.empty((0, 0))
    if len(patches) > n_patches:
        patches = patches[np.sort(rng.choice(len(patches), n_patches, replace=False))]
    return patches.astype(np.float64)


def zca_whitened(patches: np.ndarray, zca_bias: float = ZCA_BIAS) -> np.ndarray:
    """The paper's whitening: each patch centred on its mean and scaled to unit norm, then
    multiplied by ``W W^T``, where ``W = V diag(1 / sqrt(e + zca_bias)) V^T`` whitens the
    patches' (uncentred) covariance ``V diag(e) V^T``."""
    centred = patches - patches.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    norms[norms < MIN_PATCH_NORM] = 1.0
    unit = centred / norms[:, None]
    covariance = unit.T @ unit / len(unit)
    eigenvalues, vectors = np.linalg.eigh(covariance)
    whitening = (vectors / np.sqrt(eigenvalues + zca_bias)) @ vectors.T
    return unit @ whitening @ whitening.T
