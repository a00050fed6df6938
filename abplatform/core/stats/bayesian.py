"""Bayesian comparison: a Gaussian posterior on the lift (or difference) vs control.

Model (gbstats ``EffectBayesianABTest``; Deng 2015, "Objective Bayesian two sample
hypothesis testing for online controlled experiments", WWW): the estimated effect
``d`` (from :func:`~abplatform.core.stats.moments.effect_moments`) is ``N(effect, se**2)``.

* Flat (improper) prior, the default: posterior ``N(d, se**2)``.
* Proper prior ``N(mu0, sd0**2)``: conjugate normal update, posterior precision
  ``1/se**2 + 1/sd0**2`` and mean ``(d/se**2 + mu0/sd0**2) / precision``.

Outputs: ``chance_to_win = P(effect > 0) = Phi(mu/sigma)``; equal-tailed credible
interval ``mu ± z_{1-alpha/2} sigma``; risk (expected loss) from the means of the
truncated normal, ``E[max(X, 0)] = mu Phi(mu/sigma) + sigma phi(mu/sigma)`` and
``E[max(-X, 0)] = -mu Phi(-mu/sigma) + sigma phi(mu/sigma)``.

Every comparison is pairwise against the control arm (``comparator`` says which).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from abplatform.core.stats.moments import effect_moments
from abplatform.core.stats.results import (
    DEFAULT_COMPARATOR,
    NAN,
    BayesianResult,
    DifferenceType,
    check_alpha,
)
from abplatform.core.stats.statistics import Statistic

DEFAULT_PROPER_PRIOR_SD = 0.3
"""GrowthBook's app default prior sd for a *relative* lift (a fraction: 30%)."""

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class GaussianPrior:
    """Proper normal prior on the effect, on the scale of ``difference`` (fraction or units).

    Raises:
        ValueError: if ``sd <= 0``.
    """

    mean: float = 0.0
    sd: float = DEFAULT_PROPER_PRIOR_SD

    def __post_init__(self) -> None:
        if not self.sd > 0:
            raise ValueError(f"prior sd must be > 0, got {self.sd}")


def posterior(estimate: float, se: float, prior: GaussianPrior | None) -> tuple[float, float]:
    """Posterior (mean, sd) of the effect given its estimate and standard error."""
    if prior is None:
        return estimate, se
    precision = 1.0 / se**2 + 1.0 / prior.sd**2
    mean = (estimate / se**2 + prior.mean / prior.sd**2) / precision
    return mean, 1.0 / math.sqrt(precision)


def expected_positive_part(mu: float, sigma: float) -> float:
    """``E[max(X, 0)]`` for ``X ~ N(mu, sigma**2)``, ``sigma > 0``."""
    z = mu / sigma
    return mu * float(special.ndtr(z)) + sigma * _INV_SQRT_2PI * math.exp(-0.5 * z * z)


def bayesian_test(
    control: Statistic,
    treatment: Statistic,
    *,
    difference: DifferenceType = "relative",
    alpha: float = 0.05,
    prior: GaussianPrior | None = None,
    comparator: str = DEFAULT_COMPARATOR,
) -> BayesianResult:
    """Posterior of the effect of ``treatment`` over ``control``.

    Args:
        control, treatment: per-arm statistics of the same kind.
        difference: ``"relative"`` (fraction) or ``"absolute"`` (metric units); the prior
            and the risk are on this scale.
        alpha: the credible interval has level ``1 - alpha``.
        prior: ``None`` for the flat prior (gbstats library default) or a
            :class:`GaussianPrior`.
        comparator: label stored on the result.

    Returns:
        :class:`BayesianResult`; on degenerate data ``chance_to_win=0.5``, ``ci=None``,
        ``risk=None`` and ``error_message`` set. Never raises on data.

    Raises:
        ValueError: on ``alpha`` outside (0, 1) or an unknown ``difference``.
    """
    check_alpha(alpha)
    moments = effect_moments(control, treatment, difference)
    if moments.error_message is not None:
        return BayesianResult(
            estimate=NAN,
            ci=None,
            sd=NAN,
            chance_to_win=0.5,
            risk=None,
            error_message=moments.error_message,
            comparator=comparator,
            difference_type=difference,
            alpha=alpha,
        )
    mu, sigma = posterior(moments.estimate, moments.se, prior)
    half = float(special.ndtri(1.0 - alpha / 2.0)) * sigma
    return BayesianResult(
        estimate=mu,
        ci=(mu - half, mu + half),
        sd=sigma,
        chance_to_win=float(special.ndtr(mu / sigma)),
        risk=(expected_positive_part(mu, sigma), expected_positive_part(-mu, sigma)),
        error_message=None,
        comparator=comparator,
        difference_type=difference,
        alpha=alpha,
    )
