"""Always-valid inference: asymptotic confidence sequences you may peek at any time.

Source: Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2021), "Time-uniform central
limit theory and asymptotic confidence sequences", arXiv:2103.06476. With the total
sample size ``n`` (both arms), ``s**2 = n * se**2`` and tuning parameter ``rho``:

* half-width (their eq. 9, the Gaussian-mixture asymptotic CS):
  ``s * sqrt( 2 (n rho**2 + 1) / (n**2 rho**2) * ln( sqrt(n rho**2 + 1) / alpha ) )``;
* ``rho`` chosen to make the CS (approximately) tightest at ``n = N*`` (the tuning
  rule in the same paper, as used by gbstats ``sequential_rho``):
  ``rho = sqrt( (-2 ln alpha + ln(-2 ln alpha + 1)) / N* )``;
* p-value (their eq. 155, as gbstats does): the reciprocal of the Gaussian-mixture
  e-value whose ``1/alpha`` level set is the CS above,
  ``p = min(1, sqrt(n rho**2 + 1) * exp(-n rho**2 z**2 / (2 (n rho**2 + 1))))``
  with ``z = estimate / se``. So ``p < alpha`` exactly when the CS excludes 0.

This is what gbstats' ``SequentialTwoSidedTTest`` computes (default ``N* = 5000``);
Eppo uses the same family with ``N* = 10000``. Only the two-sided test is provided.
"""

from __future__ import annotations

import math

from abplatform.core.stats.frequentist import uninformative_frequentist
from abplatform.core.stats.moments import effect_moments
from abplatform.core.stats.results import (
    DEFAULT_COMPARATOR,
    DifferenceType,
    FrequentistResult,
    check_alpha,
)
from abplatform.core.stats.statistics import Statistic

DEFAULT_TUNING = 5000
"""gbstats' ``DEFAULT_SEQUENTIAL_TESTING_TUNING_PARAMETER`` (N*, total units)."""


def sequential_rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Mixture parameter ``rho`` that optimises the CS width at ``n = tuning``."""
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / tuning)


def sequential_halfwidth(s2: float, n: int, alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Half-width of the asymptotic CS (eq. 9) for per-unit variance ``s2`` after ``n`` units."""
    rho2 = sequential_rho(alpha, tuning) ** 2
    nr2 = n * rho2
    return math.sqrt(s2) * math.sqrt(
        2.0 * (nr2 + 1.0) / (n * n * rho2) * math.log(math.sqrt(nr2 + 1.0) / alpha)
    )


def sequential_p_value(z: float, n: int, alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Always-valid p-value ``min(1, 1/E_n)`` for the z statistic after ``n`` units.

    ``alpha`` only enters through ``rho`` (the mixture is tuned for that level).
    """
    nr2 = n * sequential_rho(alpha, tuning) ** 2
    log_e = nr2 * z * z / (2.0 * (nr2 + 1.0)) - 0.5 * math.log(nr2 + 1.0)
    return 1.0 if log_e <= 0 else math.exp(-log_e)


def sequential_test(
    control: Statistic,
    treatment: Statistic,
    *,
    difference: DifferenceType = "relative",
    alpha: float = 0.05,
    tuning: float = DEFAULT_TUNING,
    comparator: str = DEFAULT_COMPARATOR,
) -> FrequentistResult:
    """Two-sided always-valid test: a confidence sequence and its anytime p-value.

    Args:
        control, treatment: per-arm statistics of the same kind.
        difference: ``"relative"`` (fraction) or ``"absolute"`` (metric units).
        alpha: type-I error over *all* looks (a fraction).
        tuning: ``N*``, the total sample size (both arms) at which the CS is tightest.
        comparator: label stored on the result.

    Returns:
        :class:`FrequentistResult` with ``method="sequential"`` and ``dof=inf``.
        Uninformative on degenerate data; never raises on data.

    Raises:
        ValueError: if ``alpha`` is outside (0, 1), ``tuning <= 0`` or ``difference`` unknown.
    """
    check_alpha(alpha)
    if not tuning > 0:
        raise ValueError(f"tuning must be > 0, got {tuning}")
    moments = effect_moments(control, treatment, difference)
    if moments.error_message is not None:
        return uninformative_frequentist(
            moments.error_message,
            comparator=comparator,
            difference=difference,
            alternative="two-sided",
            alpha=alpha,
            method="sequential",
        )
    n = moments.n
    half = sequential_halfwidth(moments.se**2 * n, n, alpha, tuning)
    return FrequentistResult(
        estimate=moments.estimate,
        ci=(moments.estimate - half, moments.estimate + half),
        se=moments.se,
        p_value=sequential_p_value(moments.estimate / moments.se, n, alpha, tuning),
        dof=math.inf,
        error_message=None,
        comparator=comparator,
        difference_type=difference,
        alternative="two-sided",
        alpha=alpha,
        method="sequential",
    )
