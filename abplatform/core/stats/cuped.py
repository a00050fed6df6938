"""CUPED / regression adjustment with a pre-experiment covariate.

Source: Deng, Xu, Kohavi & Walker (2013), "Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data", WSDM. The adjusted per-unit value is
``post - theta * pre``; ``theta = cov(post, pre) / var(pre)`` is pooled over *both* arms
(one sample), and ``theta = 0`` falls back to the unadjusted analysis, as gbstats
``RegressionAdjustedStatistic`` / ``compute_theta`` do.

* absolute: ``d = adj_B - adj_A``, ``se**2 = Var_adj_B/n_B + Var_adj_A/n_A`` with
  ``Var_adj = var_post + theta**2 var_pre - 2 theta cov``;
* relative: ``d = (adj_B - adj_A) / |post_A|`` (the *unadjusted* control mean), with the
  delta-method variance of gbstats ``frequentist_variance_relative_cuped``:
  ``Var_adj_B / (n_B post_A**2) +
  (var_post_A post_B**2/post_A**2 - 2 theta cov_A post_B/post_A + theta**2 var_pre_A)
  / (n_A post_A**2)``.

Pre-period metrics (default lookback in GrowthBook: 14 days) must not be affected by the
treatment; units without pre-period data enter with ``pre = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from abplatform.core.stats.results import DifferenceType
from abplatform.core.stats.statistics import SampleMeanStatistic, Statistic


@dataclass(frozen=True)
class RegressionAdjustedStatistic(Statistic):
    """Per-arm post-period metric with its pre-period covariate.

    Args:
        n: units in the arm.
        post: the experiment-period metric (sum and sum of squares per unit).
        pre: the pre-period covariate for the same units.
        post_pre_sum_of_products: sum over units of ``post * pre``.
        theta: adjustment coefficient; ``None`` (default) lets
            :func:`cuped_effect` pool it over both arms.

    ``mean``/``variance`` are the adjusted ones (with ``theta = 0`` while unset).

    Raises:
        ValueError: if ``post.n`` or ``pre.n`` differ from ``n``.
    """

    n: int
    post: SampleMeanStatistic
    pre: SampleMeanStatistic
    post_pre_sum_of_products: float
    theta: float | None = None

    def __post_init__(self) -> None:
        if self.post.n != self.n or self.pre.n != self.n:
            raise ValueError("post and pre statistics must have the arm's n")

    @property
    def covariance(self) -> float:
        """Sample covariance of post and pre across units."""
        if self.n < 2:
            return 0.0
        return (self.post_pre_sum_of_products - self.post.sum * self.pre.sum / self.n) / (
            self.n - 1
        )

    @property
    def mean(self) -> float:
        return self.post.mean - (self.theta or 0.0) * self.pre.mean

    @property
    def variance(self) -> float:
        t = self.theta or 0.0
        return self.post.variance + t * t * self.pre.variance - 2.0 * t * self.covariance

    @property
    def has_zero_variance(self) -> bool:
        return self.post.has_zero_variance or super().has_zero_variance

    def __add__(self, other: object) -> RegressionAdjustedStatistic:
        if not isinstance(other, RegressionAdjustedStatistic):
            return NotImplemented
        if self.theta != other.theta:
            raise ValueError("cannot add regression-adjusted statistics with different theta")
        return RegressionAdjustedStatistic(
            self.n + other.n,
            self.post + other.post,
            self.pre + other.pre,
            self.post_pre_sum_of_products + other.post_pre_sum_of_products,
            self.theta,
        )


def pooled_theta(a: RegressionAdjustedStatistic, b: RegressionAdjustedStatistic) -> float:
    """``cov(post, pre) / var(pre)`` over both arms as one sample; 0.0 if ``var(pre) <= 0``."""
    joint = RegressionAdjustedStatistic(
        a.n + b.n,
        a.post + b.post,
        a.pre + b.pre,
        a.post_pre_sum_of_products + b.post_pre_sum_of_products,
    )
    pre_var = joint.pre.variance
    return joint.covariance / pre_var if pre_var > 0 else 0.0


def cuped_effect(
    control: RegressionAdjustedStatistic,
    treatment: RegressionAdjustedStatistic,
    difference: DifferenceType,
) -> tuple[float, float, RegressionAdjustedStatistic, RegressionAdjustedStatistic]:
    """``(estimate, se**2, control, treatment)`` of the adjusted comparison.

    The returned arms carry the ``theta`` used (pooled when the control's is ``None``),
    so callers can compute Welch degrees of freedom from their adjusted variances.
    Called by :func:`~abplatform.core.stats.moments.effect_moments` after its degenerate-data
    checks; formulas in the module docstring.
    """
    theta = control.theta if control.theta is not None else pooled_theta(control, treatment)
    a, b = replace(control, theta=theta), replace(treatment, theta=theta)
    v_a, v_b = a.variance, b.variance
    diff = b.mean - a.mean
    if difference == "absolute":
        return diff, v_b / b.n + v_a / a.n, a, b
    post_a, post_b = a.post.mean, b.post.mean
    control_part = (
        a.post.variance * post_b**2 / post_a**2
        - 2.0 * theta * a.covariance * post_b / post_a
        + theta**2 * a.pre.variance
    )
    var = v_b / (b.n * post_a**2) + control_part / (a.n * post_a**2)
    return diff / abs(post_a), var, a, b
