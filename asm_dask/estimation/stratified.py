"""Design-based estimation from a stratified random sample (Stehman 2014).

A sample of cells drawn at random within strata (bins of the map's probability, or the
map's classes, or one stratum: simple random sampling), each labelled on the ground
(the reference). From it, unbiased estimates of totals and ratios over the whole
population of cells, with their standard errors:

* a total (the ASM area: each sampled cell's area where it is ASM, 0 elsewhere) by the
  stratified estimator, equations 2 and 25 of Stehman (2014), or, for units drawn with
  unequal probabilities outside strata, by the Horvitz-Thompson estimator;
* a ratio of two totals (user's and producer's accuracy) by the combined ratio
  estimator, equations 27 and 28;
* the map's overall, user's and producer's accuracy, and each class's share of the
  cells, by :func:`map_accuracy`.

Where the strata are the map's classes these are the estimators of Olofsson et al.
(2013, 2014), and ``finite_population=False`` gives their standard errors digit for digit
(they leave out the finite population correction ``1 - n_h / N_h``); the tests
reproduce the worked examples of both papers, as the R package ``mapaccuracy``
(hagc/mapaccuracy) states them.

References: Stehman, S. V. (2014), Estimating area and map accuracy for stratified
random sampling when the strata are different from the map classes, Int. J. Remote
Sens. 35, 4923-4939. Olofsson, P. et al. (2014), Good practices for estimating area and
assessing accuracy of land change, Remote Sens. Environ. 148, 42-57.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """An estimate and its standard error."""

    value: float
    se: float

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The normal-approximation confidence interval at ``level``."""
        # The standard library's quantile: scipy.stats costs half a second to import.
        half = NormalDist().inv_cdf(0.5 + level / 2) * self.se
        return self.value - half, self.value + half

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.se * abs(factor))


@dataclass(frozen=True)
class Strata:
    """The sampled units' strata and each stratum's size (units in the population)."""

    of_unit: np.ndarray  #: each sampled unit's stratum
    sizes: Mapping[Any, float]  #: stratum -> number of units in the population (N_h)
    finite_population: bool = True  #: apply ``1 - n_h / N_h`` to the variances

    def __post_init__(self) -> None:
        unknown = set(np.unique(self.of_unit).tolist()) - set(self.sizes)
        if unknown:
            raise ValueError(f"sampled units in strata of unknown size: {sorted(unknown)}")

    @property
    def population(self) -> float:
        return float(sum(self.sizes.values()))

    def sampled(self) -> list[tuple[np.ndarray, float, int]]:
        """Per stratum with sampled units: which units, the stratum's size, its sample size."""
        return [(self.of_unit == h, float(size), int((self.of_unit == h).sum()))
                for h, size in self.sizes.items() if (self.of_unit == h).any()]

    def correction(self, size: float, n: int) -> float:
        return 1 - n / size if self.finite_population else 1.0


def stratified_total(y: np.ndarray, strata: Strata) -> Estimate:
    """The population total of ``y`` (Stehman 2014, eq. 2 times N, and eq. 25)."""
    y = np.asarray(y, dtype=float)
    total, variance = 0.0, 0.0
    for units, size, n in strata.sampled():
        total += size * y[units].mean()
        if n > 1:
            variance += size ** 2 * strata.correction(size, n) * y[units].var(ddof=1) / n
    return Estimate(total, float(np.sqrt(variance)))


def horvitz_thompson_total(y: np.ndarray, inclusion: np.ndarray) -> Estimate:
    """The population total of ``y`` from units drawn with unequal ``inclusion``
    probabilities: the Horvitz-Thompson estimator, with the variance estimator of Poisson
    sampling, ``sum((1 - pi) (y / pi)^2)``: exact in expectation where each unit was
    drawn on its own, and on the wide side for draws of a fixed size, whose joint
    inclusion probabilities a labels file does not record."""
    y, inclusion = np.asarray(y, dtype=float), np.asarray(inclusion, dtype=float)
    weighted = y / inclusion
    return Estimate(float(weighted.sum()), float(np.sqrt(((1 - inclusion) * weighted ** 2).sum())))


def stratified_ratio(y: np.ndarray, x: np.ndarray, strata: Strata) -> Estimate:
    """The ratio of the population totals of ``y`` and ``x`` (Stehman 2014, eq. 27 and 28);
    NaN where ``x`` totals 0."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    Y, X = stratified_total(y, strata).value, stratified_total(x, strata).value
    if X == 0:
        return Estimate(float("nan"), float("nan"))
    R = Y / X
    variance = 0.0
    for units, size, n in strata.sampled():
        if n > 1:
            sy, sx = y[units], x[units]
            covariance = np.cov(sy, sx, ddof=1)[0, 1]
            spread = sy.var(ddof=1) + R ** 2 * sx.var(ddof=1) - 2 * R * covariance
            variance += size ** 2 * strata.correction(size, n) * spread / n
    # the spreads of a stratum whose cells are all alike can sum to a rounding error below 0
    return Estimate(R, float(np.sqrt(max(variance, 0.0) / X ** 2)))


@dataclass(frozen=True)
class MapAccuracy:
    """A map's accuracy and its classes' shares of the population, estimated from a sample."""

    classes: tuple[Any, ...]
    overall: Estimate
    users: dict[Any, Estimate]  #: class -> share of the units mapped as it that are it
    producers: dict[Any, Estimate]  #: class -> share of the units that are it mapped as it
    share: dict[Any, Estimate]  #: class -> share of the population that is it (the reference)
    matrix: np.ndarray  #: estimated share of units in (map class, reference class)


def map_accuracy(mapped: Sequence[Any], reference: Sequence[Any], strata: Strata,
                 classes: Sequence[Any] | None = None) -> MapAccuracy:
    """Overall, user's and producer's accuracy of the map, each class's share of the
    population and the error matrix, from sampled units' map and reference classes."""
    mapped, reference = np.asarray(mapped), np.asarray(reference)
    if classes is None:
        classes = sorted(set(mapped.tolist()) | set(reference.tolist()))
    N = strata.population
    agree = (mapped == reference).astype(float)
    users, producers, share = {}, {}, {}
    for k in classes:
        is_map, is_reference = (mapped == k).astype(float), (reference == k).astype(float)
        users[k] = stratified_ratio(agree * is_map, is_map, strata)
        producers[k] = stratified_ratio(agree * is_reference, is_reference, strata)
        share[k] = stratified_total(is_reference, strata).scaled(1 / N)
    matrix = np.array([[stratified_total((mapped == i) & (reference == j), strata).value / N for j in classes]
                       for i in classes])
    return MapAccuracy(tuple(classes), stratified_total(agree, strata).scaled(1 / N), users, producers, share, matrix)
