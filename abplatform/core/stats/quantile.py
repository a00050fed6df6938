"""Latency percentiles (p50/p95/p99) from mergeable log-spaced histograms.

Why a histogram: a per-arm histogram with fixed bins is a sufficient statistic that
adds with ``+`` across days and slices and that SQL computes without downloading rows::

    SELECT variant, width_bucket(ln(greatest(latency_ms, 0.05)), ln(0.1), ln(1000000.0), 700)
           AS bucket, count(*) FROM requests GROUP BY 1, 2

(:func:`abplatform.store.rollups.latency_bucket_sql` writes that expression;
:meth:`LatencyBins.bucket` is its numpy mirror.) The default 700 bins span 0.1 ms - 1e6 ms
at 100 bins per decade, so a bin is
2.3% wide and the log-interpolated quantile is accurate to well under 1%.

Estimator and uncertainty:

* The quantile ``Q(p)`` inverts the binned empirical CDF, interpolating geometrically
  inside a bin (linearly in the underflow bin ``[0, lower)``).
* Its standard error is Woodruff's (1952, "Confidence intervals for medians and other
  position measures", JASA 47:635-646): invert the CDF at ``p ± z sqrt(p(1-p)/n)`` to
  get ``(L, U)`` and set ``se = (U - L) / (2 z)`` with ``z = z_{0.975}``, the
  distribution-free standard error also used by Price & Bonett (2002, "Distribution-free
  confidence intervals for difference and ratio of medians", J. Stat. Comput. Simul.
  72:119-124) for differences of medians and by Francisco & Fuller (1991, Ann. Statist.).
* Differences (absolute or delta-method relative) of two independent arms then go
  through the ordinary tests (:func:`~abplatform.core.stats.frequentist.welch_ttest`...):
  :class:`QuantileStatistic` reports ``mean`` = the quantile and ``variance = n se**2``.

Assumption: observations (requests) are independent. When several requests come from one
user the se is too small by the square root of the design effect; prefer a
:class:`~abplatform.core.stats.statistics.RatioStatistic` of mean latency per request for
user-randomised decisions, and treat quantiles as guardrail signals.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from abplatform.core.stats import messages
from abplatform.core.stats.statistics import Statistic

_Z95 = float(special.ndtri(0.975))


@dataclass(frozen=True)
class LatencyBins:
    """Log-spaced bins, as SQL ``width_bucket(ln(x), ln(lower), ln(upper), n_bins)``.

    Bucket 0 holds ``x < lower`` (including 0), buckets ``1..n_bins`` the log-spaced bins,
    bucket ``n_bins + 1`` holds ``x >= upper`` (overflow). Units are whatever the latency
    column uses (milliseconds by default).

    Raises:
        ValueError: unless ``0 < lower < upper`` and ``n_bins >= 1``.
    """

    lower: float = 0.1
    upper: float = 1_000_000.0
    n_bins: int = 700

    def __post_init__(self) -> None:
        if not 0 < self.lower < self.upper or self.n_bins < 1:
            raise ValueError(f"need 0 < lower < upper and n_bins >= 1, got {self}")

    @functools.cached_property
    def edges(self) -> npt.NDArray[np.float64]:
        """The ``n_bins + 1`` geometric edges; bucket ``j`` is ``[edges[j-1], edges[j])``."""
        return np.geomspace(self.lower, self.upper, self.n_bins + 1)

    def bucket(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Bucket index of each value (numpy mirror of the SQL expression).

        Raises:
            ValueError: if a value is negative or not finite.
        """
        x = np.asarray(values, dtype=float)
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise ValueError("latencies must be finite and >= 0")
        log_lo, log_hi = math.log(self.lower), math.log(self.upper)
        with np.errstate(divide="ignore"):
            pos = (np.log(x) - log_lo) / (log_hi - log_lo) * self.n_bins
        b = np.floor(np.where(x > 0, pos, -1.0)).astype(np.int64) + 1
        b[x < self.lower] = 0
        b[x >= self.upper] = self.n_bins + 1
        return np.clip(b, 0, self.n_bins + 1)


@dataclass(frozen=True)
class LatencyHistogram:
    """Counts per bucket (``n_bins + 2`` of them) for one arm; add histograms with ``+``."""

    bins: LatencyBins
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != self.bins.n_bins + 2:
            raise ValueError(f"need {self.bins.n_bins + 2} counts, got {len(self.counts)}")
        if any(c < 0 for c in self.counts):
            raise ValueError("counts must be >= 0")

    @classmethod
    def from_values(
        cls, values: npt.ArrayLike, bins: LatencyBins | None = None
    ) -> LatencyHistogram:
        """Histogram of raw latencies (tests, simulations, small in-process samples)."""
        layout = bins or LatencyBins()
        counts = np.bincount(layout.bucket(values).ravel(), minlength=layout.n_bins + 2)
        return cls(layout, tuple(int(c) for c in counts))

    @classmethod
    def from_buckets(
        cls, rows: Mapping[int, int], bins: LatencyBins | None = None
    ) -> LatencyHistogram:
        """Histogram from SQL ``{bucket: count}`` rows; missing buckets count 0.

        Raises:
            ValueError: on a bucket outside ``0..n_bins+1``.
        """
        layout = bins or LatencyBins()
        counts = [0] * (layout.n_bins + 2)
        for bucket, count in rows.items():
            if not 0 <= bucket <= layout.n_bins + 1:
                raise ValueError(f"bucket {bucket} outside 0..{layout.n_bins + 1}")
            counts[bucket] += int(count)
        return cls(layout, tuple(counts))

    @property
    def n(self) -> int:
        return sum(self.counts)

    def __add__(self, other: object) -> LatencyHistogram:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        if other.bins != self.bins:
            raise ValueError("cannot add histograms with different bins")
        return LatencyHistogram(
            self.bins, tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        )

    @functools.cached_property
    def _cumulative(self) -> npt.NDArray[np.float64]:
        return np.cumsum(np.asarray(self.counts, dtype=float))

    def value_at(self, prob: float) -> tuple[float, bool]:
        """``(Q(prob), in_range)``: the interpolated quantile, and False if it is censored
        in the overflow bucket (then the value returned is ``bins.upper``).

        Raises:
            ValueError: if the histogram is empty or ``prob`` is outside [0, 1].
        """
        if self.n == 0 or not 0.0 <= prob <= 1.0:
            raise ValueError(f"need a non-empty histogram and 0 <= prob <= 1, got {prob}")
        cum = self._cumulative
        rank = prob * cum[-1]
        k = int(np.searchsorted(cum, rank, side="left"))
        while self.counts[k] == 0:  # rank 0 lands on leading empty buckets
            k += 1
        below = cum[k - 1] if k > 0 else 0.0
        frac = min(max((rank - below) / self.counts[k], 0.0), 1.0)
        nb = self.bins.n_bins
        if k == nb + 1:
            return self.bins.upper, False
        if k == 0:
            return frac * self.bins.lower, True
        lo, hi = self.bins.edges[k - 1], self.bins.edges[k]
        return float(lo * (hi / lo) ** frac), True

    def quantile(self, p: float) -> QuantileStatistic:
        """The :class:`QuantileStatistic` for probability ``p`` (e.g. 0.95 for p95)."""
        return QuantileStatistic(self, p)


@dataclass(frozen=True)
class QuantileStatistic(Statistic):
    """Quantile ``p`` of one arm's latency histogram, as a testable statistic.

    ``mean`` is the quantile estimate (metric units), ``variance`` is ``n * se**2`` with
    Woodruff's se (module docstring), ``n`` counts observations. Add two with ``+`` when
    they share ``p`` and bins.

    Raises:
        ValueError: unless ``0 < p < 1``.
    """

    histogram: LatencyHistogram
    p: float

    def __post_init__(self) -> None:
        if not 0.0 < self.p < 1.0:
            raise ValueError(f"quantile p must be in (0, 1), got {self.p}")

    @property
    def n(self) -> int:
        return self.histogram.n

    @functools.cached_property
    def _rank_bounds(self) -> tuple[float, float]:
        half = _Z95 * math.sqrt(self.p * (1.0 - self.p) / self.n) if self.n else math.inf
        return self.p - half, self.p + half

    @functools.cached_property
    def _values(self) -> tuple[float, float, float] | None:
        """(lower, estimate, upper) of the 95% Woodruff interval, or None if unusable."""
        if self.unusable_reason is not None or self.n == 0:
            return None
        p_lo, p_hi = self._rank_bounds
        values = [self.histogram.value_at(q) for q in (p_lo, self.p, p_hi)]
        return values[0][0], values[1][0], values[2][0]

    @property
    def mean(self) -> float:
        return self._values[1] if self._values else 0.0

    @property
    def standard_error(self) -> float:
        """Woodruff standard error of the quantile (metric units); 0.0 when unusable."""
        if self._values is None:
            return 0.0
        return (self._values[2] - self._values[0]) / (2.0 * _Z95)

    @property
    def variance(self) -> float:
        return self.n * self.standard_error**2

    def woodruff_interval(self, alpha: float = 0.05) -> tuple[float, float] | None:
        """Distribution-free ``1 - alpha`` CI for this arm's quantile, or None if unusable."""
        if self._values is None:
            return None
        half = float(special.ndtri(1.0 - alpha / 2.0)) * math.sqrt(self.p * (1 - self.p) / self.n)
        if self.p - half < 0 or self.p + half > 1:
            return None
        return self.histogram.value_at(self.p - half)[0], self.histogram.value_at(self.p + half)[0]

    @functools.cached_property
    def unusable_reason(self) -> str | None:
        if self.n == 0:
            return None  # reported as NO_UNITS_IN_VARIATION by the tests
        p_lo, p_hi = self._rank_bounds
        if p_lo < 0.0 or p_hi > 1.0:
            return messages.QUANTILE_INSUFFICIENT_DATA
        if not self.histogram.value_at(p_hi)[1]:
            return messages.QUANTILE_OUT_OF_RANGE
        return None

    def __add__(self, other: object) -> QuantileStatistic:
        if not isinstance(other, QuantileStatistic):
            return NotImplemented
        if other.p != self.p:
            raise ValueError("cannot add quantile statistics for different p")
        return QuantileStatistic(self.histogram + other.histogram, self.p)
