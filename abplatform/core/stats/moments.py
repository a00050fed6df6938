"""Effect size and standard error of treatment vs control, shared by every engine.

Formulas (gbstats ``frequentist_diff`` / ``frequentist_variance``, Eppo docs; see
``/work/shared/reference/stats_cases.md``):

* absolute: ``d = m_B - m_A``, ``se**2 = v_B/n_B + v_A/n_A``;
* relative (delta method): ``d = (m_B - m_A)/|m_A|``,
  ``se**2 = v_B/(m_A**2 n_B) + v_A m_B**2/(m_A**4 n_A)``;
* Welch-Satterthwaite degrees of freedom from the raw per-arm variances (for both):
  ``(v_A/n_A + v_B/n_B)**2 / ((v_A/n_A)**2/(n_A-1) + (v_B/n_B)**2/(n_B-1))``
  (Welch 1947, Biometrika 34:28-35).

CUPED pairs (:class:`~abplatform.core.stats.cuped.RegressionAdjustedStatistic`) use the
adjusted formulas of :mod:`abplatform.core.stats.cuped`, with dof from adjusted variances.
"""

from __future__ import annotations

import math

from abplatform.core.stats import messages
from abplatform.core.stats.cuped import RegressionAdjustedStatistic, cuped_effect
from abplatform.core.stats.results import NAN, DifferenceType, EffectMoments, check_difference_type
from abplatform.core.stats.statistics import Statistic


def uninformative_reason(
    control: Statistic, treatment: Statistic, difference: DifferenceType
) -> str | None:
    """Why the pair cannot be compared (a :mod:`messages` constant), or ``None``.

    Checked in order: an empty arm, a statistic-specific problem (ratio denominator 0,
    quantile outside the histogram), a non-finite mean or variance, zero variance in
    *both* arms, and, for relative lifts only, a control mean of 0.

    Unlike gbstats, zero variance in *one* arm does not make the pair uninformative: the
    absolute difference has a positive standard error from the other arm, and that is
    the usual case for a guardrail (a control with no errors, a conversion metric with
    0 conversions in control, PostHog #35237). Only the relative lift needs a non-zero
    control mean.
    """
    if control.n == 0 or treatment.n == 0:
        return messages.NO_UNITS_IN_VARIATION
    for stat in (control, treatment):
        reason = stat.unusable_reason
        if reason is not None:
            return reason
    if not all(math.isfinite(x) for s in (control, treatment) for x in (s.mean, s.variance)):
        return messages.NON_FINITE_DATA
    if control.has_zero_variance and treatment.has_zero_variance:
        return messages.ZERO_NEGATIVE_VARIANCE
    if difference == "relative" and control.mean == 0:
        return messages.BASELINE_VARIATION_ZERO
    return None


def welch_dof(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom; ``inf`` when an arm with variance has a
    single unit. An arm with zero variance adds nothing (the dof are the other arm's
    ``n - 1``)."""
    ua = var_a / n_a if n_a else 0.0
    ub = var_b / n_b if n_b else 0.0
    terms = [(u, m) for u, m in ((ua, n_a), (ub, n_b)) if u > 0]
    if not terms or any(m < 2 for _, m in terms):
        return math.inf
    return (ua + ub) ** 2 / sum(u**2 / (m - 1) for u, m in terms)


def effect_moments(
    control: Statistic, treatment: Statistic, difference: DifferenceType = "relative"
) -> EffectMoments:
    """Point estimate, standard error and Welch dof of treatment minus control.

    Args:
        control, treatment: statistics of the same kind (e.g. both
            :class:`~abplatform.core.stats.statistics.SampleMeanStatistic`).
        difference: ``"relative"`` (lift as a fraction of ``|m_A|``) or ``"absolute"``.

    Returns:
        :class:`EffectMoments`; uninformative (``nan`` estimate, ``error_message`` set) for
        degenerate data. Never raises on data.

    Raises:
        TypeError: if the two statistics are of different kinds.
        ValueError: if ``difference`` is not a known difference type.
    """
    check_difference_type(difference)
    if type(control) is not type(treatment):
        raise TypeError(f"cannot compare {type(control).__name__} with {type(treatment).__name__}")
    n = control.n + treatment.n
    reason = uninformative_reason(control, treatment, difference)
    if reason is not None:
        return EffectMoments(NAN, NAN, NAN, n, reason)
    if isinstance(control, RegressionAdjustedStatistic):
        assert isinstance(treatment, RegressionAdjustedStatistic)
        estimate, var, control, treatment = cuped_effect(control, treatment, difference)
    else:
        estimate, var = _plain_effect(control, treatment, difference)
    v_a, n_a, v_b, n_b = _variance(control), control.n, _variance(treatment), treatment.n
    if not (math.isfinite(estimate) and math.isfinite(var)):
        return EffectMoments(NAN, NAN, NAN, n, messages.NON_FINITE_DATA)
    if not var > 0:
        return EffectMoments(NAN, NAN, NAN, n, messages.ZERO_NEGATIVE_VARIANCE)
    return EffectMoments(estimate, math.sqrt(var), welch_dof(v_a, n_a, v_b, n_b), n)


def _variance(stat: Statistic) -> float:
    """The arm's variance, exactly 0.0 when it counts as zero (rounding noise removed)."""
    return 0.0 if stat.has_zero_variance else stat.variance


def _plain_effect(
    control: Statistic, treatment: Statistic, difference: DifferenceType
) -> tuple[float, float]:
    """``(estimate, se**2)`` from per-arm means and variances (module docstring)."""
    m_a, v_a, n_a = control.mean, _variance(control), control.n
    m_b, v_b, n_b = treatment.mean, _variance(treatment), treatment.n
    if difference == "relative":
        estimate = (m_b - m_a) / abs(m_a)
        var = v_b / (m_a**2 * n_b) + v_a * m_b**2 / (m_a**4 * n_a)
    else:
        estimate = m_b - m_a
        var = v_b / n_b + v_a / n_a
    return estimate, var
