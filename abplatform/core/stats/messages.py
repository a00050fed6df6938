"""Machine-readable reasons why a statistical result is not informative.

Every test in :mod:`abplatform.core.stats` returns a result instead of raising on
degenerate data; the result's ``error_message`` is one of these constants (or
``None`` when the result is informative). The first five strings are the ones
gbstats uses (``gbstats/messages.py``), so dashboards and alerts can share a
vocabulary with GrowthBook; the quantile ones are specific to this package.
"""

from __future__ import annotations

NO_UNITS_IN_VARIATION = "NO_UNITS_IN_VARIATION"
"""At least one arm has ``n == 0`` (an empty variant)."""

ZERO_NEGATIVE_VARIANCE = "ZERO_NEGATIVE_VARIANCE"
"""An arm has zero (or numerically negative) variance: a single unit, constant data,
0% or 100% conversion."""

BASELINE_VARIATION_ZERO = "ZERO_NEGATIVE_BASELINE_VARIATION"
"""A relative lift was requested but the control mean is 0."""

RATIO_DENOMINATOR_ZERO = "ZERO_RATIO_DENOMINATOR"
"""A ratio metric's denominator sums to 0 in some arm, so its ratio is undefined."""

QUANTILE_INSUFFICIENT_DATA = "QUANTILE_INSUFFICIENT_DATA"
"""Too few observations for the quantile's rank interval to stay inside (0, 1),
e.g. fewer than about 400 requests for a p99."""

QUANTILE_OUT_OF_RANGE = "QUANTILE_OUT_OF_HISTOGRAM_RANGE"
"""The quantile (or its rank interval) falls into the histogram's overflow bucket,
so its value is censored at the upper edge."""

NO_UNITS_IN_EXPERIMENT = "NO_UNITS_IN_EXPERIMENT"
"""SRM check on an experiment that has no units in any weighted arm."""

SINGLE_WEIGHTED_ARM = "SINGLE_WEIGHTED_ARM"
"""SRM check with fewer than two arms of positive weight: nothing to compare."""

NON_FINITE_DATA = "NON_FINITE_DATA"
"""A sum, sum of squares or the resulting variance is infinite or NaN (an overflowed or
corrupted aggregate): no interval can be computed from it."""

ALL_MESSAGES: frozenset[str] = frozenset(
    {
        NO_UNITS_IN_VARIATION,
        ZERO_NEGATIVE_VARIANCE,
        BASELINE_VARIATION_ZERO,
        RATIO_DENOMINATOR_ZERO,
        QUANTILE_INSUFFICIENT_DATA,
        QUANTILE_OUT_OF_RANGE,
        NO_UNITS_IN_EXPERIMENT,
        SINGLE_WEIGHTED_ARM,
        NON_FINITE_DATA,
    }
)

SENTENCES: dict[str, str] = {
    NO_UNITS_IN_VARIATION: "no units in one of the variants yet",
    ZERO_NEGATIVE_VARIANCE: (
        "no variation in either variant yet (every unit has the same value), so the "
        "difference has no standard error"
    ),
    BASELINE_VARIATION_ZERO: (
        "the control's mean is 0, so a relative lift is undefined; the absolute "
        "difference is reported instead"
    ),
    RATIO_DENOMINATOR_ZERO: "no requests to divide by in one of the variants yet",
    QUANTILE_INSUFFICIENT_DATA: "too few requests for this percentile yet",
    QUANTILE_OUT_OF_RANGE: "the percentile lies beyond the latency histogram's range",
    NO_UNITS_IN_EXPERIMENT: "no units in this phase yet",
    SINGLE_WEIGHTED_ARM: "only one variant receives traffic, so there is no split to check",
    NON_FINITE_DATA: "the data contain an infinite or undefined sum, so nothing can be computed",
}
"""Each message as a sentence an operator can read (views never show the codes)."""


def sentence(message: str | None) -> str | None:
    """The sentence for a message constant (``None`` for ``None``; unknown codes are
    returned as they are)."""
    if message is None:
        return None
    return SENTENCES.get(message, message)
