"""Pre-experiment power: sample size per variant, achieved power, and the reverse (MDE).

Normal approximation to the fixed-horizon test (Chow, Shao & Wang, "Sample Size
Calculations in Clinical Research", ch. 3; statsmodels ``NormalIndPower``), with the
*same* variance the analysis uses (:mod:`abplatform.core.stats.moments`):

* absolute: ``se**2 = (v_A + v_B) / n``;
* relative (delta method): ``se**2 = (v_B + v_A (m_B/m_A)**2) / (m_A**2 n)``;

where ``n`` is units per arm, ``m_B = m_A + delta``, ``v = sd**2`` for mean metrics
(assumed equal in both arms) and ``v = p(1-p)`` per arm for proportions. Then
``n = (z_{1-a} + z_{power})**2 * n se**2 / effect**2`` with ``a = alpha'/2`` two-sided
or ``alpha'`` one-sided, and ``alpha' = alpha / (n_variants - 1)``: a Bonferroni split
across the treatment-vs-control comparisons (conservative for Holm, which the report
may use). Power counts both rejection tails, as ``NormalIndPower`` does, so the sample
size is refined from the closed form by root finding; the Welch t-test needs about one
or two more units per arm than this normal answer (``TTestIndPower``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import optimize, special

from abplatform.core.stats.results import DifferenceType, check_alpha, check_difference_type

Sides = Literal["two-sided", "one-sided"]


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
            ValueError: if ``sd <= 0``.
        """
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
        """``n * se**2`` of the estimated effect when the true absolute change is ``delta``."""
        m_a, m_b = self.mean, self.mean + delta
        v_a = self.sd**2
        v_b = m_b * (1 - m_b) if self.is_proportion else v_a
        if difference == "absolute":
            return v_a + v_b
        return (v_b + v_a * (m_b / m_a) ** 2) / m_a**2


def _setup(
    baseline: Baseline, difference: DifferenceType, alpha: float, n_variants: int, sides: Sides
) -> float:
    """Validate arguments and return the critical z for the Bonferroni-split alpha."""
    check_alpha(alpha)
    check_difference_type(difference)
    if n_variants < 2:
        raise ValueError(f"n_variants counts all arms including control; got {n_variants}")
    if sides not in ("two-sided", "one-sided"):
        raise ValueError(f"sides must be 'two-sided' or 'one-sided', got {sides!r}")
    if difference == "relative" and baseline.mean == 0:
        raise ValueError("a relative MDE needs a non-zero baseline mean")
    a = alpha / (n_variants - 1)
    return float(special.ndtri(1 - (a / 2 if sides == "two-sided" else a)))


def _absolute_delta(baseline: Baseline, mde: float, difference: DifferenceType) -> float:
    delta = mde * abs(baseline.mean) if difference == "relative" else mde
    if delta == 0:
        raise ValueError("mde must be non-zero")
    if baseline.is_proportion and not 0 < baseline.mean + delta < 1:
        raise ValueError("the treatment proportion must stay inside (0, 1)")
    return delta


def sample_size_per_variant(
    baseline: Baseline,
    mde: float,
    *,
    difference: DifferenceType = "relative",
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    sides: Sides = "two-sided",
) -> int:
    """Units needed in *each* arm to detect ``mde`` with the given power.

    Args:
        baseline: :meth:`Baseline.for_mean` or :meth:`Baseline.for_proportion`.
        mde: minimum detectable effect; a fraction of the baseline mean when
            ``difference="relative"`` (0.05 = +5%), metric units (or percentage *points*
            as a fraction, for proportions) when ``"absolute"``. Negative = a decrease.
        alpha: family-wise type-I error, split by Bonferroni over ``n_variants - 1``.
        power: target power (fraction).
        n_variants: number of arms including control.
        sides: ``"two-sided"`` (default, as the analysis) or ``"one-sided"``.

    Returns:
        The sample size per arm, rounded up.

    Raises:
        ValueError: on invalid arguments (see :class:`Baseline` and above).
    """
    z_alpha = _setup(baseline, difference, alpha, n_variants, sides)
    check_alpha(power)
    delta = _absolute_delta(baseline, mde, difference)
    effect = delta / abs(baseline.mean) if difference == "relative" else delta
    variance = baseline.unit_variance(delta, difference)
    closed_form = (z_alpha + float(special.ndtri(power))) ** 2 * variance / effect**2
    # The closed form ignores the far tail, so it is an upper bound; refine it so that
    # the returned size is exactly the smallest n with achieved_power(n) >= power.
    n = optimize.brentq(
        lambda m: _power(abs(effect), variance, m, z_alpha, sides) - power,
        closed_form / 2,
        closed_form,
        xtol=1e-9,
    )
    return math.ceil(n - 1e-6)


def _power(effect: float, variance: float, n: float, z_alpha: float, sides: Sides) -> float:
    shift = effect / math.sqrt(variance / n)
    result = float(special.ndtr(shift - z_alpha))
    if sides == "two-sided":
        result += float(special.ndtr(-shift - z_alpha))
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
) -> float:
    """Power (fraction) of the normal test with ``n_per_variant`` units per arm.

    Two-sided power counts both rejection tails, like statsmodels ``NormalIndPower``.

    Raises:
        ValueError: on invalid arguments or ``n_per_variant <= 0``.
    """
    z_alpha = _setup(baseline, difference, alpha, n_variants, sides)
    if not n_per_variant > 0:
        raise ValueError(f"n_per_variant must be > 0, got {n_per_variant}")
    delta = _absolute_delta(baseline, mde, difference)
    effect = delta / abs(baseline.mean) if difference == "relative" else delta
    variance = baseline.unit_variance(delta, difference)
    return _power(abs(effect), variance, n_per_variant, z_alpha, sides)


def minimum_detectable_effect(
    baseline: Baseline,
    n_per_variant: float,
    *,
    difference: DifferenceType = "relative",
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    sides: Sides = "two-sided",
) -> float:
    """Smallest *increase* detectable with ``n_per_variant`` units per arm.

    Inverse of :func:`sample_size_per_variant` (same conventions for ``difference``).
    Solved with Brent's method because the treatment variance depends on the effect for
    proportions and relative lifts.

    Returns:
        The MDE (fraction of the baseline for relative, metric units for absolute), or
        ``inf`` when no admissible effect reaches the power (proportion would exceed 1).

    Raises:
        ValueError: on invalid arguments.
    """
    z_alpha = _setup(baseline, difference, alpha, n_variants, sides)
    check_alpha(power)
    if not n_per_variant > 0:
        raise ValueError(f"n_per_variant must be > 0, got {n_per_variant}")
    z_total = z_alpha + float(special.ndtri(power))
    scale = abs(baseline.mean) if difference == "relative" else 1.0

    def gap(delta: float) -> float:
        se = math.sqrt(baseline.unit_variance(delta, difference) / n_per_variant)
        return delta / scale - z_total * se

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
