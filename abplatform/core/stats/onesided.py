"""One-sided always-valid tests against a threshold: regressions and non-inferiority.

A safe rollout asks two one-sided questions of each guardrail at every look: *is the
treatment worse than the control by more than the margin?* (then roll back) and *is it
worse by less than the margin?* (non-inferiority shown: safe to go on). Both are tested
with the one-sided normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon (2021),
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.
49(2):1055-1080, Section 3 and Proposition 3, applied, as the two-sided test of
:mod:`abplatform.core.stats.sequential` is, to the standardised sum of the effect
(the asymptotic confidence sequences of Waudby-Smith et al. 2021):

* intrinsic time ``v = n`` (units of both arms; requests for a latency quantile) and the
  standardised sum ``s = sqrt(n) (estimate - threshold) / se``;
* the one-sided mixture (a half-normal mixture over the tilt ``λ ≥ 0``)
  ``log M(s, v) = ½ ln(4ρ / (v + ρ)) + s² / (2(v + ρ)) + ln Φ(s / sqrt(v + ρ))``,
  a nonnegative supermartingale under ``effect ≤ threshold``, so by Ville's inequality
  ``P(∃ n: M ≥ 1/α) ≤ α``: the anytime p-value is ``min(1, 1/M)``;
* ``ρ`` tuned for the width at ``v = tuning`` (their Proposition 3(a), as the ``confseq``
  library's ``OneSidedNormalMixture::best_rho``):
  ``ρ = tuning / (2 ln(1/(2α)) + ln(1 + 2 ln(1/(2α))))``;
* the boundary ``u(v)`` solves ``log M(u, v) = ln(1/α)``; the one-sided confidence
  bound on the effect is ``estimate ∓ u(n) se / sqrt(n)``.

Checked against the R reference values in the ``confseq`` library's tests
(``gostevehoward/confseq``, ``test/uniform_boundaries_unittest.cpp``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

from scipy import optimize, special

from abplatform.core.stats.moments import effect_moments
from abplatform.core.stats.results import DifferenceType, check_alpha
from abplatform.core.stats.sequential import DEFAULT_TUNING
from abplatform.core.stats.statistics import Statistic

Direction = Literal["greater", "less"]
"""``greater``: the alternative is ``effect > threshold``; ``less``: ``effect < threshold``."""


def one_sided_rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Mixture variance ``ρ`` of the one-sided normal mixture tuned for ``v = tuning``."""
    log_term = 2.0 * math.log(1.0 / (2.0 * alpha))
    return tuning / (log_term + math.log(1.0 + log_term))


def one_sided_log_mixture(s: float, v: float, rho: float) -> float:
    """``log M(s, v)`` of the one-sided normal mixture (module docstring)."""
    vr = v + rho
    return (
        0.5 * math.log(4.0 * rho / vr)
        + s * s / (2.0 * vr)
        + float(special.log_ndtr(s / math.sqrt(vr)))
    )


@functools.lru_cache(maxsize=4096)
def one_sided_boundary(v: float, alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """The boundary ``u(v)``: ``P(∃ v: S_v ≥ u(v)) ≤ alpha`` for a standardised sum
    ``S`` with intrinsic time ``v`` (module docstring).

    Raises:
        ValueError: ``alpha`` outside (0, 1) or ``v``/``tuning`` not positive.
    """
    check_alpha(alpha)
    if not (v > 0 and tuning > 0):
        raise ValueError(f"v and tuning must be > 0, got v={v}, tuning={tuning}")
    rho = one_sided_rho(alpha, tuning)
    target = math.log(1.0 / alpha)
    upper = max(v, 1.0)
    while one_sided_log_mixture(upper, v, rho) < target:
        upper *= 2.0
    return float(optimize.brentq(lambda s: one_sided_log_mixture(s, v, rho) - target, 0.0, upper))


@dataclass(frozen=True)
class OneSidedResult:
    """An always-valid one-sided test of ``effect`` (treatment minus control, absolute
    or relative) against ``threshold``.

    ``direction`` ``"greater"`` tests ``H1: effect > threshold`` and ``bound`` is the
    always-valid lower confidence bound of the effect; ``"less"`` tests
    ``H1: effect < threshold`` with the upper bound. ``p_value`` is the anytime p-value
    (``rejected`` when below ``alpha``, exactly when the bound is beyond ``threshold``).
    Uninformative data (``error_message`` set, a
    :mod:`~abplatform.core.stats.messages` code) give ``p_value`` 1 and ``None`` figures.
    """

    direction: Direction
    threshold: float
    alpha: float
    tuning: float
    difference_type: DifferenceType
    estimate: float | None
    se: float | None
    n: int
    p_value: float
    error_message: str | None = None

    @property
    def informative(self) -> bool:
        return self.error_message is None

    @property
    def rejected(self) -> bool:
        """The data show ``effect > threshold`` (``greater``) or ``< threshold`` (``less``)."""
        return self.informative and self.p_value < self.alpha

    @property
    def bound(self) -> float | None:
        """The always-valid one-sided confidence bound of the effect at ``1 - alpha``."""
        if self.estimate is None or self.se is None or self.n < 1:
            return None
        width = one_sided_boundary(float(self.n), self.alpha, self.tuning) * self.se
        width /= math.sqrt(self.n)
        return self.estimate - width if self.direction == "greater" else self.estimate + width


def one_sided_p_value(z: float, n: int, alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Anytime p-value ``min(1, 1/M)`` for the z statistic ``z`` (in the direction of the
    alternative) after ``n`` observations; ``alpha`` enters through ``ρ``."""
    if n < 1:
        return 1.0
    log_m = one_sided_log_mixture(math.sqrt(n) * z, float(n), one_sided_rho(alpha, tuning))
    return 1.0 if log_m <= 0 else math.exp(-log_m)


def one_sided_test(
    control: Statistic,
    treatment: Statistic,
    *,
    threshold: float = 0.0,
    direction: Direction = "greater",
    difference: DifferenceType = "absolute",
    alpha: float = 0.05,
    tuning: float = DEFAULT_TUNING,
) -> OneSidedResult:
    """Test ``treatment - control`` (absolute, metric units, or relative, a fraction of
    the control) against ``threshold`` with the one-sided always-valid test above.

    Raises:
        ValueError: ``alpha`` outside (0, 1), ``tuning <= 0``, unknown ``direction`` or
            ``difference``; TypeError: statistics of different kinds.
    """
    check_alpha(alpha)
    if not tuning > 0:
        raise ValueError(f"tuning must be > 0, got {tuning}")
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    m = effect_moments(control, treatment, difference)
    if not m.informative:
        return OneSidedResult(
            direction, threshold, alpha, tuning, difference, None, None, m.n, 1.0,
            m.error_message,
        )  # fmt: skip
    sign = 1.0 if direction == "greater" else -1.0
    z = sign * (m.estimate - threshold) / m.se
    p = one_sided_p_value(z, m.n, alpha, tuning)
    return OneSidedResult(direction, threshold, alpha, tuning, difference, m.estimate, m.se, m.n, p)


__all__ = [
    "Direction",
    "OneSidedResult",
    "one_sided_boundary",
    "one_sided_log_mixture",
    "one_sided_p_value",
    "one_sided_rho",
    "one_sided_test",
]
