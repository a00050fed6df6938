"""Result dataclasses returned by the tests in :mod:`abplatform.core.stats`.

All effect sizes are on the scale named by ``difference_type``: ``"relative"`` means a
*fraction* of the control mean (0.05 = +5%), ``"absolute"`` means metric units
(milliseconds, conversions per user...). Probabilities are fractions in [0, 1].

A result whose ``error_message`` is not ``None`` is *uninformative*: ``p_value`` is 1,
``chance_to_win`` is 0.5, ``ci`` and ``risk`` are ``None`` and the point estimate and
standard error are ``nan``. Check :attr:`informative` before reading numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

DifferenceType = Literal["relative", "absolute"]
"""``"relative"``: ``(m_B - m_A)/|m_A|`` as a fraction; ``"absolute"``: ``m_B - m_A``."""

Alternative = Literal["two-sided", "greater", "less"]
"""Alternative hypothesis about treatment minus control."""

DEFAULT_COMPARATOR = "treatment vs control"

Interval = tuple[float, float]
"""A (lower, upper) interval; one-sided intervals use ``-inf`` / ``inf``."""

NAN = math.nan


def check_difference_type(value: str) -> None:
    """Raise ``ValueError`` unless ``value`` is ``"relative"`` or ``"absolute"``."""
    if value not in ("relative", "absolute"):
        raise ValueError(f"difference must be 'relative' or 'absolute', got {value!r}")


def check_alpha(alpha: float) -> None:
    """Raise ``ValueError`` unless ``0 < alpha < 1``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


@dataclass(frozen=True)
class EffectMoments:
    """Point estimate and standard error of the treatment-vs-control effect.

    Attributes:
        estimate: lift (fraction) or difference (metric units); ``nan`` if uninformative.
        se: its standard error (delta method for relative lifts); ``nan`` if uninformative.
        dof: Welch-Satterthwaite degrees of freedom from the raw per-arm variances.
        n: total units in both arms.
        error_message: ``None`` or a :mod:`~abplatform.core.stats.messages` constant.
    """

    estimate: float
    se: float
    dof: float
    n: int
    error_message: str | None = None

    @property
    def informative(self) -> bool:
        return self.error_message is None


@dataclass(frozen=True)
class FrequentistResult:
    """Outcome of a fixed-horizon Welch t-test or of an always-valid sequential test.

    Attributes:
        estimate: lift (fraction, ``difference_type="relative"``) or difference.
        ci: confidence interval (or confidence sequence) at level ``1 - alpha``;
            ``None`` if uninformative.
        se: standard error of ``estimate``.
        p_value: p-value in [0, 1] (always-valid for ``method="sequential"``).
        dof: degrees of freedom used (``inf`` for the sequential/normal test).
        error_message: ``None`` when informative, otherwise why not.
        comparator: what was compared, e.g. ``"v2 vs v1"``.
        difference_type, alternative, alpha: the settings used.
        method: ``"welch-t"`` or ``"sequential"``.
        adjusted_p_value, adjusted_ci: set by
            :func:`abplatform.core.stats.multiple.correct_family`, else ``None``.
    """

    estimate: float
    ci: Interval | None
    se: float
    p_value: float
    dof: float
    error_message: str | None
    comparator: str
    difference_type: DifferenceType
    alternative: Alternative
    alpha: float
    method: Literal["welch-t", "sequential"]
    adjusted_p_value: float | None = None
    adjusted_ci: Interval | None = None

    @property
    def informative(self) -> bool:
        return self.error_message is None

    @property
    def significant(self) -> bool:
        """``p < alpha``, using the multiple-testing adjusted p-value when present."""
        p = self.p_value if self.adjusted_p_value is None else self.adjusted_p_value
        return self.informative and p < self.alpha


@dataclass(frozen=True)
class BayesianResult:
    """Gaussian posterior on the effect, compared against the control arm.

    Attributes:
        estimate: posterior mean of the lift (fraction) or difference.
        ci: equal-tailed credible interval at level ``1 - alpha``; ``None`` if uninformative.
        sd: posterior standard deviation.
        chance_to_win: ``P(effect > 0)``; 0.5 if uninformative.
        risk: ``(E[max(effect, 0)], E[max(-effect, 0)])``: expected loss of keeping control,
            expected loss of shipping treatment, on the ``difference_type`` scale.
        error_message, comparator, difference_type, alpha: as in :class:`FrequentistResult`.
    """

    estimate: float
    ci: Interval | None
    sd: float
    chance_to_win: float
    risk: Interval | None
    error_message: str | None
    comparator: str
    difference_type: DifferenceType
    alpha: float

    @property
    def informative(self) -> bool:
        return self.error_message is None


@dataclass(frozen=True)
class SrmResult:
    """Sample-ratio-mismatch check (Pearson chi-square goodness of fit).

    Attributes:
        chi2: the statistic, summed over arms with positive weight.
        dof: number of positively weighted arms minus one.
        p_value: upper-tail chi-square probability; 1.0 when nothing can be tested.
        observed: units per arm, in input order (zero-weight arms included).
        expected: expected units per arm (0.0 for zero-weight arms).
        flagged: ``p_value < p_threshold`` and every weighted arm has ``>= min_count`` units
            (and the largest relative deviation is ``>= min_deviation``).
        error_message: ``None`` or why the check could not run.
    """

    chi2: float
    dof: int
    p_value: float
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    flagged: bool
    error_message: str | None = None
