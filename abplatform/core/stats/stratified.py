"""Post-stratification: one comparison pooled over strata (here: an experiment's phases).

After a weight change the phases of an experiment are separate randomised experiments
with different split weights. Summing their units per arm (a naive pool) compares arms
whose units come from the phases in different proportions, so any change over time
between phases biases the difference (Simpson's paradox). Instead each phase is a
stratum with its own per-arm means, and the comparison is the stratum-size-weighted
average of the per-stratum differences (Miratrix, Sekhon & Yu 2013, "Adjusting treatment
effect estimates by post-stratification in randomized experiments", JRSS-B 75:369-396):

* stratum weight ``w_s = (n_A,s + n_B,s) / Σ_t (n_A,t + n_B,t)`` over the strata in which
  both arms have data;
* per arm, the stratified mean ``M = Σ w_s m_s`` with squared standard error
  ``Σ w_s² v_s / n_s``;
* absolute effect ``M_B - M_A``; relative effect ``(M_B - M_A) / |M_A|`` by the delta
  method on the two (independent) stratified means, exactly as for one stratum.

:func:`stratify` returns the two arms as :class:`StratifiedStatistic`\\ s, which expose
``n`` (all units of the arm over the strata), ``mean`` = ``M`` and a ``variance`` such
that ``variance / n`` is the squared standard error above, so every test of
:mod:`abplatform.core.stats` runs on them unchanged. The Welch degrees of freedom then
use ``n - 1`` of the pooled arm (a large-sample approximation), and the sequential
test's ``n`` counts a unit once per stratum it appears in.

Strata are treated as independent. Phases of one experiment share units (a unit that a
sticky re-split kept in its variant is in both phases), which makes the reported
standard error slightly too small when a unit's outcomes are correlated across phases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from abplatform.core.stats.statistics import Statistic


@dataclass(frozen=True)
class StratifiedStatistic(Statistic):
    """One arm's stratum-weighted mean over strata (see the module docstring).

    Args:
        n: units of the arm, summed over the strata used.
        stratified_mean: ``Σ w_s m_s``.
        squared_se: ``Σ w_s² v_s / n_s``, the squared standard error of the mean.
        strata: how many strata contributed.
    """

    n: int
    stratified_mean: float
    squared_se: float
    strata: int

    @property
    def mean(self) -> float:
        return self.stratified_mean

    @property
    def variance(self) -> float:
        return self.squared_se * self.n

    @property
    def has_zero_variance(self) -> bool:
        return not self.squared_se > 0


def _usable(stat: Statistic) -> bool:
    if stat.n == 0 or stat.unusable_reason is not None:
        return False
    return math.isfinite(stat.mean) and math.isfinite(stat.variance)


def _arm_variance(stat: Statistic) -> float:
    return 0.0 if stat.has_zero_variance else stat.variance


def stratify(
    strata: Sequence[tuple[Statistic, Statistic]],
) -> tuple[Statistic, Statistic]:
    """Pool ``(control, treatment)`` pairs, one per stratum, into two stratified arms.

    Strata in which either arm has no units or an unusable statistic (a ratio with no
    denominator, a quantile with too few observations) carry no comparison and are left
    out; when none is left, the last stratum's pair is returned unchanged, so the test
    reports why it cannot run. A single usable stratum is returned unchanged too (the
    stratified estimator equals the plain one there).

    Raises:
        ValueError: ``strata`` is empty.
    """
    if not strata:
        raise ValueError("stratify() needs at least one stratum")
    usable = [(a, b) for a, b in strata if _usable(a) and _usable(b)]
    if not usable:
        return strata[-1]
    if len(usable) == 1:
        return usable[0]
    sizes = [a.n + b.n for a, b in usable]
    total = float(sum(sizes))
    weights = [size / total for size in sizes]

    def arm(side: int) -> StratifiedStatistic:
        stats = [pair[side] for pair in usable]
        return StratifiedStatistic(
            n=sum(s.n for s in stats),
            stratified_mean=math.fsum(w * s.mean for w, s in zip(weights, stats, strict=True)),
            squared_se=math.fsum(
                w * w * _arm_variance(s) / s.n for w, s in zip(weights, stats, strict=True)
            ),
            strata=len(stats),
        )

    return arm(0), arm(1)


__all__ = ["StratifiedStatistic", "stratify"]
