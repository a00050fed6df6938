"""Fixed-horizon Welch t-test on the absolute or relative (delta-method) difference.

Source: Welch (1947); relative-lift variance by the delta method as in gbstats
``TwoSidedTTest`` / ``OneSidedTreatmentGreaterTTest`` (implemented here from the
formulas in ``/work/shared/reference/stats_cases.md``, not from their code). The
t distribution uses the Welch-Satterthwaite dof of the *raw* per-arm variances, also
for relative lifts.

Valid only when the data are analysed once, at a horizon fixed in advance; a dashboard
that refreshes is peeking, so use :func:`abplatform.core.stats.sequential.sequential_test`.
"""

from __future__ import annotations

import math

from scipy import special

from abplatform.core.stats.moments import effect_moments
from abplatform.core.stats.results import (
    DEFAULT_COMPARATOR,
    NAN,
    Alternative,
    DifferenceType,
    FrequentistResult,
    Interval,
    check_alpha,
)
from abplatform.core.stats.statistics import Statistic


def check_alternative(alternative: str) -> None:
    """Raise ``ValueError`` unless ``alternative`` is two-sided, greater or less."""
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")


def uninformative_frequentist(
    error_message: str,
    *,
    comparator: str,
    difference: DifferenceType,
    alternative: Alternative,
    alpha: float,
    method: str,
) -> FrequentistResult:
    """The default result for degenerate data: p = 1, no interval, ``nan`` estimate."""
    return FrequentistResult(
        estimate=NAN,
        ci=None,
        se=NAN,
        p_value=1.0,
        dof=NAN,
        error_message=error_message,
        comparator=comparator,
        difference_type=difference,
        alternative=alternative,
        alpha=alpha,
        method="sequential" if method == "sequential" else "welch-t",
    )


def t_p_value(t: float, dof: float, alternative: Alternative) -> float:
    """p-value of a t statistic with ``dof`` degrees of freedom (``inf`` = normal)."""
    if alternative == "greater":
        return float(special.stdtr(dof, -t))
    if alternative == "less":
        return float(special.stdtr(dof, t))
    return float(min(1.0, 2.0 * special.stdtr(dof, -abs(t))))


def t_interval(
    estimate: float, se: float, dof: float, alpha: float, alternative: Alternative
) -> Interval:
    """Wald-type interval ``estimate ± t_{dof} * se``; one-sided ones are open at one end."""
    if alternative == "two-sided":
        half = float(special.stdtrit(dof, 1.0 - alpha / 2.0)) * se
        return (estimate - half, estimate + half)
    q = float(special.stdtrit(dof, 1.0 - alpha)) * se
    if alternative == "greater":
        return (estimate - q, math.inf)
    return (-math.inf, estimate + q)


def welch_ttest(
    control: Statistic,
    treatment: Statistic,
    *,
    difference: DifferenceType = "relative",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    comparator: str = DEFAULT_COMPARATOR,
) -> FrequentistResult:
    """Welch t-test of treatment minus control.

    Args:
        control, treatment: per-arm statistics of the same kind.
        difference: ``"relative"`` (fraction of ``|control mean|``) or ``"absolute"``.
        alpha: 1 - confidence level of ``ci`` (a fraction, e.g. 0.05).
        alternative: ``"two-sided"``; ``"greater"`` tests treatment > control
            (CI ``(lower, inf)``); ``"less"`` tests treatment < control (CI ``(-inf, upper)``).
        comparator: label stored on the result, e.g. ``"v2 vs v1"``.

    Returns:
        :class:`FrequentistResult` with ``method="welch-t"``; uninformative (p = 1,
        ``ci=None``) with an ``error_message`` on degenerate data. Never raises on data.

    Raises:
        ValueError: on an unknown ``difference``/``alternative`` or ``alpha`` outside (0, 1).
        TypeError: if the statistics are of different kinds.
    """
    check_alpha(alpha)
    check_alternative(alternative)
    moments = effect_moments(control, treatment, difference)
    if moments.error_message is not None:
        return uninformative_frequentist(
            moments.error_message,
            comparator=comparator,
            difference=difference,
            alternative=alternative,
            alpha=alpha,
            method="welch-t",
        )
    t = moments.estimate / moments.se
    return FrequentistResult(
        estimate=moments.estimate,
        ci=t_interval(moments.estimate, moments.se, moments.dof, alpha, alternative),
        se=moments.se,
        p_value=t_p_value(t, moments.dof, alternative),
        dof=moments.dof,
        error_message=None,
        comparator=comparator,
        difference_type=difference,
        alternative=alternative,
        alpha=alpha,
        method="welch-t",
    )
