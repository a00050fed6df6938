"""Pre-experiment power for the test the report runs: fixed horizon or sequential.

Conventions are GrowthBook's (``packages/shared/src/power/power.ts``: ``powerEstFrequentist``,
``findMdeFrequentist``, ``sequentialPowerSequentialVariance``; re-derived here from its
formulas, and checked against the values of its own tests, ``power.test.ts``), so a plan
made here reads the same as one made there:

* the effect's standard error uses the analysis' variance
  (:mod:`abplatform.core.stats.moments`) with the *baseline* variance in both arms
  (``v = sd**2`` for a mean metric, ``v = p(1-p)`` for a proportion):
  absolute ``se**2 = 2v / n``; relative (delta method)
  ``se**2 = (v + v (m_B/m_A)**2) / (m_A**2 n)`` with ``m_B = m_A + delta``, ``n`` units per arm;
* **fixed horizon** (normal approximation, Chow, Shao & Wang, "Sample Size Calculations
  in Clinical Research", ch. 3): two-sided power
  ``1 - Φ(z_{1-a/2} - effect/se) + Φ(-z_{1-a/2} - effect/se)`` (both rejection tails,
  as statsmodels ``NormalIndPower``);
* **sequential** (the always-valid test of :mod:`abplatform.core.stats.sequential`,
  Waudby-Smith et al. 2021): the test rejects when the confidence sequence excludes 0,
  i.e. when ``|estimate| > half-width``; the half-width after ``N = 2n`` units is
  ``z_seq(N) · se`` with ``z_seq(N) = sqrt(N) · sqrt(2 (Nρ² + 1) ln(sqrt(Nρ² + 1)/a) / (Nρ)²)``,
  so the power is the fixed-horizon formula with ``se`` inflated to
  ``se · z_seq(N) / z_{1-a/2}``;
* the MDE is the smallest *increase* ``effect`` with ``effect = (z_{1-a/2} + z_power) se``
  (the far tail ignored, as GrowthBook's closed form), solved numerically because ``se``
  depends on the effect for relative lifts;
* ``a`` is ``alpha``: like GrowthBook, the level is **not** split across the treatments
  by default; ``split_alpha=True`` uses ``alpha / (n_variants - 1)`` per comparison (a
  Bonferroni split, conservative for the Holm correction the report applies across
  treatments × metrics).

Effects are fractions of the baseline mean for ``difference="relative"`` (0.05 = +5%),
metric units (percentage *points* as a fraction, for proportions) for ``"absolute"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import optimize, special

from abplatform.core.stats.results import DifferenceType, check_alpha, check_difference_type
from abplatform.core.stats.sequential import DEFAULT_TUNING, sequential_halfwidth

Sides = Literal["two-sided", "one-sided"]
PowerMethod = Literal["fixed", "sequential"]


@dataclass(frozen=True)
class Baseline:
    """The control arm's expected mean and sd per unit; build with the class methods."""

    mean: float
    sd: float
    is_proportion: bool = False

    @classmethod
    def for_mean(cls, mean: float, sd: float) -> Baseline:
        """Mean metric with per-unit standard deviation ``sd`` (same units as ``mean``).

        Raises:
            ValueError: if ``sd <= 0`` or a value is not finite.
        """
        if not (math.isfinite(mean) and math.isfinite(sd)):
            raise ValueError(f"mean and sd must be finite, got {mean} and {sd}")
        if not sd > 0:
            raise ValueError(f"sd must be > 0, got {sd}")
        return cls(mean, sd)

    @classmethod
    def for_proportion(cls, p: float) -> Baseline:
        """Binary metric with baseline rate ``p`` (a fraction in (0, 1)).

        Raises:
            ValueError: unless ``0 < p < 1``.
        """
        if not 0 < p < 1:
            raise ValueError(f"baseline proportion must be in (0, 1), got {p}")
        return cls(p, math.sqrt(p * (1 - p)), is_proportion=True)

    def unit_variance(self, delta: float, difference: DifferenceType) -> float:
        """``n * se**2`` of the estimated effect when the true absolute change is
        ``delta`` (the baseline variance in both arms)."""
        v = self.sd**2
        m_a, m_b = self.mean, self.mean + delta
        if difference == "absolute":
            return 2.0 * v
        return (v + v * (m_b / m_a) ** 2) / m_a**2


@dataclass(frozen=True)
class _Plan:
    """Validated settings: the per-comparison level and the critical z."""

    alpha: float
    z_alpha: float
    sides: Sides
    method: PowerMethod
    tuning: float


def _setup(
    baseline: Baseline,
    difference: DifferenceType,
    alpha: float,
    n_variants: int,
    sides: Sides,
    method: PowerMethod,
    split_alpha: bool,
    tuning: float,
) -> _Plan:
    """Validate the arguments; the level per comparison and its critical z."""
    check_alpha(alpha)
    check_difference_type(difference)
    if n_variants < 2:
        raise ValueError(f"n_variants counts all arms including control; got {n_variants}")
    if sides not in ("two-sided", "one-sided"):
        raise ValueError(f"sides must be 'two-sided' or 'one-sided', got {sides!r}")
    if method not in ("fixed", "sequential"):
        raise ValueError(f"method must be 'fixed' or 'sequential', got {method!r}")
    if method == "sequential" and sides != "two-sided":
        raise ValueError("the sequential test is two-sided only")
    if not tuning > 0:
        raise ValueError(f"tuning must be > 0, got {tuning}")
    if difference == "relative" and baseline.mean == 0:
        raise ValueError("a relative MDE needs a non-zero baseline mean")
    a = alpha / (n_variants - 1) if split_alpha else alpha
    z = float(special.ndtri(1 - (a / 2 if sides == "two-sided" else a)))
    return _Plan(a, z, sides, method, tuning)


def sequential_inflation(n_pair: float, alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """``z_seq(N) / z_{1-alpha/2}``: how much wider the always-valid confidence sequence
    is than the fixed-horizon interval after ``N = n_pair`` units (both arms), for the
    same standard error (GrowthBook's ``sequentialPowerSequentialVariance``)."""
    z_seq = math.sqrt(n_pair) * sequential_halfwidth(1.0, n_pair, alpha, tuning)  # type: ignore[arg-type]
    return z_seq / float(special.ndtri(1 - alpha / 2))


def _se(
    baseline: Baseline, delta: float, difference: DifferenceType, n: float, plan: _Plan
) -> float:
    se = math.sqrt(baseline.unit_variance(delta, difference) / n)
    if plan.method == "sequential":
        se *= sequential_inflation(2.0 * n, plan.alpha, plan.tuning)
    return se


def _absolute_delta(baseline: Baseline, mde: float, difference: DifferenceType) -> float:
    if not math.isfinite(mde):
        raise ValueError(f"mde must be finite, got {mde}")
    delta = mde * abs(baseline.mean) if difference == "relative" else mde
    if delta == 0:
        raise ValueError("mde must be non-zero")
    if baseline.is_proportion and not 0 < baseline.mean + delta < 1:
        raise ValueError("the treatment proportion must stay inside (0, 1)")
    return delta


def _power_at(shift: float, plan: _Plan) -> float:
    result = float(special.ndtr(shift - plan.z_alpha))
    if plan.sides == "two-sided":
        result += float(special.ndtr(-shift - plan.z_alpha))
    return result


def achieved_power(
    baseline: Baseline,
    mde: float,
    n_per_variant: float,
    *,
    difference: DifferenceType = "relative",
    alpha: float = 0.05,
    n_variants: int = 2,
    sides: Sides = "two-sided",
    method: PowerMethod = "fixed",
    split_alpha: bool = False,
    tuning: float = DEFAULT_TUNING,
) -> float:
    """Power (fraction) to detect ``mde`` with ``n_per_variant`` units per arm, for the
    fixed-horizon or the sequential test (module docstring; GrowthBook's
    ``powerEstFrequentist`` with ``n = n_per_variant × n_variants``).

    Raises:
        ValueError: on invalid arguments or ``n_per_variant <= 0``.
    """
    plan = _setup(baseline, difference, alpha, n_variants, sides, method, split_alpha, tuning)
    if not n_per_variant > 0:
        raise ValueError(f"n_per_variant must be > 0, got {n_per_variant}")
    delta = _absolute_delta(baseline, mde, difference)
    effect = delta / abs(baseline.mean) if difference == "relative" else delta
    return _power_at(abs(effect) / _se(baseline, delta, difference, n_per_variant, plan), plan)


def sample_size_per_variant(
    baseline: Baseline,
    mde: float,
    *,
    difference: DifferenceType = "relative",
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    sides: Sides = "two-sided",
    method: PowerMethod = "fixed",
    split_alpha: bool = False,
    tuning: float = DEFAULT_TUNING,
) -> int:
    """Units needed in *each* arm to detect ``mde`` with the given power: the smallest
    ``n`` with :func:`achieved_power` ``>= power``.

    Args:
        baseline: :meth:`Baseline.for_mean` or :meth:`Baseline.for_proportion`.
        mde: minimum detectable effect (module docstring); negative = a decrease.
        alpha: type-I error; per comparison unless ``split_alpha``.
        power: target power (fraction).
        n_variants: number of arms including control.
        sides: ``"two-sided"`` (default, as the analysis) or ``"one-sided"`` (fixed only).
        method: ``"fixed"`` (Welch/normal, one look) or ``"sequential"`` (always valid).
        split_alpha: Bonferroni-split ``alpha`` over the ``n_variants - 1`` treatments.
        tuning: the sequential test's ``N*``.

    Returns:
        The sample size per arm, rounded up.

    Raises:
        ValueError: on invalid arguments (see :class:`Baseline` and above).
    """
    plan = _setup(baseline, difference, alpha, n_variants, sides, method, split_alpha, tuning)
    check_alpha(power)
    delta = _absolute_delta(baseline, mde, difference)
    effect = abs(delta / abs(baseline.mean) if difference == "relative" else delta)

    def gap(n: float) -> float:
        return _power_at(effect / _se(baseline, delta, difference, n, plan), plan) - power

    variance = baseline.unit_variance(delta, difference)
    closed_form = (plan.z_alpha + float(special.ndtri(power))) ** 2 * variance / effect**2
    low, high = closed_form / 2, closed_form
    while gap(high) < 0:  # the sequential test needs more units than the closed form
        low, high = high, high * 2
    n = optimize.brentq(gap, low, high, xtol=1e-9)
    return math.ceil(n - 1e-6)


def minimum_detectable_effect(
    baseline: Baseline,
    n_per_variant: float,
    *,
    difference: DifferenceType = "relative",
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    sides: Sides = "two-sided",
    method: PowerMethod = "fixed",
    split_alpha: bool = False,
    tuning: float = DEFAULT_TUNING,
) -> float:
    """Smallest *increase* detectable with ``n_per_variant`` units per arm (GrowthBook's
    ``findMdeFrequentist``; same arguments as :func:`sample_size_per_variant`).

    Returns:
        The MDE (fraction of the baseline for relative, metric units for absolute), or
        ``inf`` when no admissible effect reaches the power (GrowthBook: "need to
        increase number of users or reduce number of variations").

    Raises:
        ValueError: on invalid arguments.
    """
    plan = _setup(baseline, difference, alpha, n_variants, sides, method, split_alpha, tuning)
    check_alpha(power)
    if not n_per_variant > 0:
        raise ValueError(f"n_per_variant must be > 0, got {n_per_variant}")
    z_total = plan.z_alpha + float(special.ndtri(power))
    scale = abs(baseline.mean) if difference == "relative" else 1.0

    def gap(delta: float) -> float:
        return delta / scale - z_total * _se(baseline, delta, difference, n_per_variant, plan)

    if baseline.is_proportion:
        upper = (1.0 - baseline.mean) * (1 - 1e-12)
    else:
        upper = max(abs(baseline.mean), baseline.sd)
        for _ in range(200):  # relative lifts may never reach the power: then inf
            if gap(upper) >= 0:
                break
            upper *= 2.0
    if gap(upper) < 0:
        return math.inf
    delta = optimize.brentq(gap, 1e-15 * max(upper, 1.0), upper, xtol=1e-14, rtol=1e-12)
    return float(delta / scale)


__all__ = [
    "Baseline",
    "PowerMethod",
    "Sides",
    "achieved_power",
    "minimum_detectable_effect",
    "sample_size_per_variant",
    "sequential_inflation",
]
