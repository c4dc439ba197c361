"""How much ASM, and how sure: the ASM area of the country from a probability sample of
labelled cells, with three estimators side by side, and the map's accuracy.

* **design-based**: the sample's labels alone, weighted by the design (simple random
  sampling, or the strata of :func:`asm_dask.estimation.sample_design.draw_sample`):
  unbiased whatever the map, the figure to defend;
* **prediction-powered**: the map's probability of every cell, corrected by its error on
  the sampled cells the model never saw (the held-out ones); valid as the first and
  usually narrower. Under simple random sampling it is PPI++
  (:func:`~asm_dask.estimation.prediction_powered.prediction_powered_mean`); under
  stratified sampling, the difference estimator (the map's total plus the stratified
  estimate of the total of its errors, Sarndal et al. 1992, section 6.3);
* **the map's own sum** of calibrated probabilities, flagged when it falls outside the
  design-based interval: calibration on labels that are not a probability sample
  (targeted ones) can make it far from the truth.

Accuracy (overall, user's, producer's at the hotspot threshold) is measured on the
held-out sampled cells, as the map was made without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .prediction_powered import prediction_powered_mean
from .stratified import Estimate, Strata, horvitz_thompson_total, map_accuracy, stratified_total

#: the intervals reported
LEVEL = 0.95
#: the prediction-powered interval is quoted only from this many held-out sampled cells,
#: of both classes: from a few, all alike, its standard error can be 0 (a map that is 0
#: where a handful of non-ASM cells were drawn) while the area is far from known
MIN_HELD_OUT_TO_QUOTE = 30


@dataclass(frozen=True)
class ProbabilitySample:
    """Labelled cells drawn with known probabilities, and what the map says of them."""

    reference: np.ndarray  #: 1 where the cell holds ASM, 0 where not (the field's word)
    probability: np.ndarray  #: the map's calibrated probability of each sampled cell
    area_km2: np.ndarray  #: each sampled cell's area
    held_out: np.ndarray  #: True where the model never trained on the cell's label
    strata: Strata  #: the design: one stratum of every cell under simple random sampling
    #: each cell's inclusion probability where they were drawn with unequal ones outside
    #: strata (``strata`` is then unused); None for a stratified or simple random sample
    inclusion: np.ndarray | None = None

    @property
    def simple_random(self) -> bool:
        return self.inclusion is None and len(self.strata.sizes) == 1

    @property
    def design(self) -> str:
        if self.inclusion is not None:
            return "unequal probabilities"
        return "simple random" if self.simple_random else f"stratified ({len(self.strata.sizes)} strata)"

    def total(self, values: np.ndarray, held_out: bool = False) -> Estimate:
        """The design's estimate of the population total of ``values`` (one per sampled
        cell) from every sampled cell, or from the held-out ones, a random part of the
        sample as the train/test split draws it."""
        units = self.held_out if held_out else np.ones(len(values), dtype=bool)
        if self.inclusion is not None:
            return horvitz_thompson_total(values[units], self.inclusion[units] * units.mean())
        return stratified_total(values[units], self.held_strata(units))

    def held_strata(self, units: np.ndarray) -> Strata:
        return Strata(self.strata.of_unit[units], self.strata.sizes, self.strata.finite_population)


@dataclass(frozen=True)
class AreaEstimates:
    """The ASM area (km2) and share of the cells, by each estimator, and the map's accuracy."""

    n_sample: int
    n_held_out: int
    design: str  #: ``simple random`` or ``stratified (K strata)``
    area_km2: dict[str, Estimate | None]  #: estimator -> estimate (None where it cannot be made)
    share: dict[str, Estimate | None]  #: the same, as shares of the cells' total area
    map_outside_design_interval: bool
    quote: str  #: the estimator whose interval to report
    accuracy: dict[str, Estimate] | None  #: overall, users, producers at ``threshold``
    threshold: float

    def as_dict(self) -> dict:
        """As ``metrics.json`` holds them: each estimate with its standard error and its 95%
        interval, cut to what the quantity can be (no negative area, no share above 1)."""
        def shown(estimate: Estimate | None, most: float) -> dict | None:
            if estimate is None:
                return None
            return {"estimate": estimate.value, "se": estimate.se, "ci95": list(bounded(estimate, most))}

        total = self.area_km2["map"].value / self.share["map"].value if self.share["map"].value else float("inf")
        return {"n_sample": self.n_sample, "n_held_out": self.n_held_out, "design": self.design,
                "quote": self.quote, "area_km2": {k: shown(v, total) for k, v in self.area_km2.items()},
                "share": {k: shown(v, 1.0) for k, v in self.share.items()},
                "map_outside_design_interval": self.map_outside_design_interval,
                "accuracy_threshold": self.threshold,
                "accuracy": None if self.accuracy is None else {k: shown(v, 1.0) for k, v in self.accuracy.items()}}


def bounded(estimate: Estimate, most: float = float("inf")) -> tuple[float, float]:
    """The 95% interval cut to ``[0, most]``: the normal approximation can reach below
    0 where the sample holds few ASM cells, which no area can."""
    low, high = estimate.interval(LEVEL)
    return max(low, 0.0), min(high, most)


def estimate_area(sample: ProbabilitySample, probability: np.ndarray, area_km2: np.ndarray,
                  threshold: float) -> AreaEstimates:
    """Estimates of the ASM area over every cell (the map's ``probability`` and the
    ``area_km2`` of each) from ``sample``; accuracy of the map at ``threshold``."""
    total_area = float(area_km2.sum())
    design = sample.total(sample.reference * sample.area_km2)
    mapped = float((probability * area_km2).sum())
    powered = _prediction_powered(sample, probability, area_km2)
    area = {"design_based": design, "prediction_powered": powered, "map": Estimate(mapped, 0.0)}
    low, high = design.interval(LEVEL)
    held = sample.held_out
    quotable = held.sum() >= MIN_HELD_OUT_TO_QUOTE and len(np.unique(sample.reference[held])) == 2
    quote = "prediction_powered" if powered is not None and quotable and powered.se < design.se else "design_based"
    accuracy = None
    if held.sum() >= 2 and sample.inclusion is None:
        found = map_accuracy((sample.probability[held] >= threshold).astype(int), sample.reference[held],
                             sample.held_strata(held), classes=[0, 1])
        accuracy = {"overall": found.overall, "users_asm": found.users[1], "producers_asm": found.producers[1]}
    return AreaEstimates(
        n_sample=len(sample.reference), n_held_out=int(held.sum()),
        design=sample.design,
        area_km2=area, share={k: None if v is None else v.scaled(1 / total_area) for k, v in area.items()},
        map_outside_design_interval=not low <= mapped <= high, quote=quote, accuracy=accuracy,
        threshold=threshold)


def _prediction_powered(sample: ProbabilitySample, probability: np.ndarray, area_km2: np.ndarray) -> Estimate | None:
    """The map's expected ASM area corrected by its error on the held-out sampled cells:
    PPI++ under simple random sampling; under stratified sampling the difference
    estimator, the map's total plus the design-weighted total of its errors."""
    held = sample.held_out
    if held.sum() < 2:
        return None
    y = sample.reference[held] * sample.area_km2[held]
    predicted = sample.probability[held] * sample.area_km2[held]
    if sample.simple_random:
        return prediction_powered_mean(y, predicted, probability * area_km2).scaled(len(probability))
    correction = sample.total((sample.reference - sample.probability) * sample.area_km2, held_out=True)
    return Estimate(float((probability * area_km2).sum()) + correction.value, correction.se)


def estimate_domains(sample: ProbabilitySample, sample_domain: np.ndarray, probability: np.ndarray,
                     area_km2: np.ndarray, domain: np.ndarray, n_domains: int) -> list[dict[str, Estimate | None]]:
    """The ASM area of each domain (a district: ``domain`` of every cell and
    ``sample_domain`` of every sampled cell, -1 for none) by each estimator: the
    design-based total of the sampled ASM area inside it, and the map's area inside it
    corrected by the design-weighted total of its errors there (the difference estimator,
    whatever the design)."""
    error = (sample.reference - sample.probability) * sample.area_km2
    mapped = np.bincount(domain[domain >= 0], weights=(probability * area_km2)[domain >= 0], minlength=n_domains)
    found = []
    for d in range(n_domains):
        inside = (sample_domain == d).astype(float)
        design = sample.total(sample.reference * sample.area_km2 * inside)
        powered = None
        if sample.held_out.sum() >= 2:
            correction = sample.total(error * inside, held_out=True)
            powered = Estimate(float(mapped[d]) + correction.value, correction.se)
        found.append({"design_based": design, "prediction_powered": powered, "map": Estimate(float(mapped[d]), 0.0)})
    return found
