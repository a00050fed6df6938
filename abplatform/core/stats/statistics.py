"""Per-arm sufficient statistics: what one SQL ``GROUP BY variant`` row returns.

Each statistic is a frozen dataclass that adds with ``+`` (pooling dimension slices,
days or strata of the *same* arm) and exposes the three numbers every test needs:

* ``n`` - number of randomisation units (users), an ``int``;
* ``mean`` - the per-unit estimate (a fraction for proportions, metric units otherwise);
* ``variance`` - the per-unit variance, so that the squared standard error of
  ``mean`` is ``variance / n``.

Conventions follow gbstats (``gbstats/models/statistics.py``, see
``/work/shared/reference/stats_cases.md``): the sample variance is
``(ss - s**2/n) / (n-1)``; a proportion's variance is ``p(1-p)`` without the
``n/(n-1)`` correction; ratio metrics use the delta method *with* the covariance
term (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics",
KDD; the same formula as gbstats ``variance_of_ratios``).
"""

from __future__ import annotations

import functools
import operator
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from abplatform.core.stats import messages

ZERO_VARIANCE_RTOL = 1e-12
"""A variance at or below ``ZERO_VARIANCE_RTOL * mean**2`` (coefficient of variation
below 1e-6) counts as zero: sums of squares of constant data rarely cancel exactly
in floating point."""


class Statistic(ABC):
    """Interface shared by all per-arm statistics (see the module docstring).

    Subclasses provide ``n`` (number of units, a field or a property) plus the
    properties below.
    """

    n: int

    @property
    @abstractmethod
    def mean(self) -> float:
        """Per-unit point estimate; 0.0 when undefined (``n == 0``)."""

    @property
    @abstractmethod
    def variance(self) -> float:
        """Per-unit variance; ``variance / n`` is the squared standard error of ``mean``."""

    @property
    def has_zero_variance(self) -> bool:
        """True when the variance is zero, negative or negligible next to ``mean**2``."""
        v = self.variance
        return v <= 0.0 or v <= ZERO_VARIANCE_RTOL * self.mean**2

    @property
    def unusable_reason(self) -> str | None:
        """A :mod:`~abplatform.core.stats.messages` constant when the statistic cannot be tested
        for a reason other than ``n == 0`` or zero variance; ``None`` otherwise."""
        return None


def _check_n(n: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")


def _sample_variance(n: int, total: float, sum_squares: float) -> float:
    """Unbiased sample variance ``(ss - s**2/n)/(n-1)``; 0.0 when ``n < 2``."""
    if n < 2:
        return 0.0
    return (sum_squares - total**2 / n) / (n - 1)


@dataclass(frozen=True)
class SampleMeanStatistic(Statistic):
    """Mean metric per unit (latency per user, images per user, revenue...).

    Args:
        n: units in the arm.
        sum: sum over units of the per-unit value.
        sum_squares: sum over units of the squared per-unit value.
    """

    n: int
    sum: float
    sum_squares: float

    def __post_init__(self) -> None:
        _check_n(self.n)

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n > 0 else 0.0

    @property
    def variance(self) -> float:
        return _sample_variance(self.n, self.sum, self.sum_squares)

    def __add__(self, other: object) -> SampleMeanStatistic:
        if not isinstance(other, SampleMeanStatistic):
            return NotImplemented
        return SampleMeanStatistic(
            self.n + other.n, self.sum + other.sum, self.sum_squares + other.sum_squares
        )


@dataclass(frozen=True)
class ProportionStatistic(Statistic):
    """Binary metric per unit (converted, saw an error...).

    Args:
        n: units in the arm.
        sum: units with outcome 1 (``0 <= sum <= n``).

    The variance is ``p(1-p)`` with ``p = sum/n`` (no ``n/(n-1)`` correction; gbstats).
    """

    n: int
    sum: float

    def __post_init__(self) -> None:
        _check_n(self.n)
        if self.sum < 0 or self.sum > self.n:
            raise ValueError(f"need 0 <= sum <= n, got sum={self.sum}, n={self.n}")

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n > 0 else 0.0

    @property
    def variance(self) -> float:
        p = self.mean
        return p * (1.0 - p)

    def __add__(self, other: object) -> ProportionStatistic:
        if not isinstance(other, ProportionStatistic):
            return NotImplemented
        return ProportionStatistic(self.n + other.n, self.sum + other.sum)


@dataclass(frozen=True)
class RatioStatistic(Statistic):
    """Ratio of two per-unit sums, ``sum(m) / sum(d)``, with users as the unit.

    Use for per-request metrics when the randomisation unit is a user: mean latency per
    request (``m`` = total latency of the user, ``d`` = requests of the user), error
    rate (``m`` = failed requests, ``d`` = requests).

    Args:
        n: users in the arm.
        m_sum, m_sum_squares: sum and sum of squares over users of the numerator.
        d_sum, d_sum_squares: the same for the denominator.
        m_d_sum_of_products: sum over users of ``m * d``.

    ``variance`` is the delta-method per-user variance of the ratio,
    ``var_m/mu_d**2 - 2*cov_md*mu_m/mu_d**3 + var_d*mu_m**2/mu_d**4`` (Deng et al. 2018,
    eq. for the ratio of means; gbstats ``variance_of_ratios``), so ``variance / n`` is
    the squared standard error of the ratio.
    """

    n: int
    m_sum: float
    m_sum_squares: float
    d_sum: float
    d_sum_squares: float
    m_d_sum_of_products: float

    def __post_init__(self) -> None:
        _check_n(self.n)

    @property
    def m_statistic(self) -> SampleMeanStatistic:
        """The numerator as a per-user mean statistic."""
        return SampleMeanStatistic(self.n, self.m_sum, self.m_sum_squares)

    @property
    def d_statistic(self) -> SampleMeanStatistic:
        """The denominator as a per-user mean statistic."""
        return SampleMeanStatistic(self.n, self.d_sum, self.d_sum_squares)

    @property
    def covariance(self) -> float:
        """Sample covariance of numerator and denominator across users."""
        if self.n < 2:
            return 0.0
        return (self.m_d_sum_of_products - self.m_sum * self.d_sum / self.n) / (self.n - 1)

    @property
    def mean(self) -> float:
        return self.m_sum / self.d_sum if self.d_sum != 0 else 0.0

    @property
    def variance(self) -> float:
        if self.n < 2 or self.d_sum == 0:
            return 0.0
        mu_m = self.m_sum / self.n
        mu_d = self.d_sum / self.n
        return (
            self.m_statistic.variance / mu_d**2
            - 2.0 * self.covariance * mu_m / mu_d**3
            + self.d_statistic.variance * mu_m**2 / mu_d**4
        )

    @property
    def unusable_reason(self) -> str | None:
        if self.n > 0 and self.d_sum == 0:
            return messages.RATIO_DENOMINATOR_ZERO
        return None

    def __add__(self, other: object) -> RatioStatistic:
        if not isinstance(other, RatioStatistic):
            return NotImplemented
        return RatioStatistic(
            self.n + other.n,
            self.m_sum + other.m_sum,
            self.m_sum_squares + other.m_sum_squares,
            self.d_sum + other.d_sum,
            self.d_sum_squares + other.d_sum_squares,
            self.m_d_sum_of_products + other.m_d_sum_of_products,
        )


S = TypeVar("S", bound=Statistic)


def pool(stats: Iterable[S]) -> S:
    """Sum statistics of one arm over slices (days, dimensions, strata).

    Raises:
        ValueError: if ``stats`` is empty.
        TypeError: if the statistics are of different kinds.
    """
    items = list(stats)
    if not items:
        raise ValueError("pool() needs at least one statistic")
    return functools.reduce(operator.add, items)
