"""The metric catalogue and the sufficient statistics every metric is built from.

Data flow: the log store keeps, per unit (the unit of randomisation), the sums of a few
**unit columns** (:data:`REQUEST_COLUMNS`; feedback per metric: :data:`FEEDBACK_COLUMNS`).
A query sums those over the units of each variant into :class:`Moments` (gbstats's
sufficient statistics: ``n``, ``sum``, ``sum_squares``, ``sum_product``) and a latency
histogram, giving one :class:`VariantData` per variant and one :class:`PhaseData` per
analysed phase. Each :class:`Metric` says how its per-arm
:class:`~abplatform.core.stats.Statistic` is built from those aggregates, its unit, its
good direction and its default role. Nothing else in the platform restates a metric.

Built-in metrics (all lower-is-better):

========================  ==========================================  ========  ==========
name                      definition                                  unit      role
========================  ==========================================  ========  ==========
``error_rate``            failed / valid requests, per unit           fraction  guardrail
``fallback_rate``         served by the fallback / valid requests     fraction  guardrail
                                                                                with fallback
``latency_mean``          latency of successful requests / ok         ms        secondary
``latency_p50|p95|p99``   request-level quantile (histogram)          ms        p95 guardrail
``cost_per_request``      cost / valid requests, per unit             USD       secondary
``cost_per_success``      cost / successful requests, per unit        USD       secondary
========================  ==========================================  ========  ==========

Cost is what the backends billed for a request (:mod:`abplatform.core.costs`: billed
seconds times the app's price per second; a pipeline's steps summed); requests that called
an app without a price count in ``unpriced`` and add nothing, and the report says so.

Requests are counted by **assigned** variant (intention to treat): a request the
assigned variant failed (error or timeout) is its failure also when the control then
served it as a fallback, so a fallback cannot hide a regression. A request the backend
rejected for the caller's arguments (a 4xx such as 422) is the caller's mistake: it is
*valid* for no variant and left out of the error rate, and counted apart (``rejected``).

Per-request metrics are unit-level **ratio metrics** (delta method, Deng et al. 2018),
because the unit of randomisation (a user) makes many requests. Any other metric name is
a **feedback metric**: the mean value per feedback, per unit (higher is better); when every
unit has exactly one 0/1 value it is a proportion.
"""

from __future__ import annotations

import difflib
import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from abplatform.core.stats import (
    LatencyBins,
    LatencyHistogram,
    ProportionStatistic,
    RatioStatistic,
    Statistic,
)

BINS = LatencyBins()
"""The latency histogram layout of the rollups and the report (0.1 ms – 1000 s, 700 bins)."""

REQUEST_COLUMNS: tuple[str, ...] = (
    "requests",
    "errors",
    "successes",
    "latency_ms",
    "valid_requests",
    "rejected",
    "fallbacks",
    "billed_s",
    "cost_usd",
    "unpriced",
)
"""Per-unit request sums the store keeps: requests made; requests the assigned variant
failed (error or timeout, fallback-served ones included); requests it answered itself;
the summed latency (ms) of those; requests not rejected for the caller's arguments
(``valid_requests = requests - rejected``); requests rejected for the caller's
arguments; requests the control served as a fallback after the assigned variant failed;
the billed backend seconds and the cost (USD) of the valid requests; valid requests
whose cost is unknown (an app without a price)."""

FEEDBACK_COLUMNS: tuple[str, ...] = ("value", "count")
"""Per-unit feedback sums, per metric: the summed values and how many there were."""


class Role(enum.StrEnum):
    """What a metric does in a decision."""

    PRIMARY = "primary"
    GUARDRAIL = "guardrail"
    SECONDARY = "secondary"


Source = Literal["requests", "latency", "feedback"]


@dataclass(frozen=True)
class Moments:
    """Sums over units of per-unit columns: gbstats's sufficient statistics.

    ``n`` units; ``sum[c]`` and ``sum_squares[c]`` per column ``c``; ``sum_product[(a, b)]``
    per pair of columns a ratio metric divides. Missing entries count as 0. Moments of
    disjoint sets of units add with ``+``.
    """

    n: int = 0
    sum: Mapping[str, float] = field(default_factory=dict)
    sum_squares: Mapping[str, float] = field(default_factory=dict)
    sum_product: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def ratio(self, numerator: str, denominator: str) -> RatioStatistic:
        """The unit-level ratio ``Σ numerator / Σ denominator`` as a delta-method statistic.

        Raises:
            KeyError: the product of the two columns was not aggregated.
        """
        n = self.n
        product = self.sum_product[(numerator, denominator)] if n else 0.0
        return RatioStatistic(
            n=n,
            m_sum=self.sum.get(numerator, 0.0),
            m_sum_squares=self.sum_squares.get(numerator, 0.0),
            d_sum=self.sum.get(denominator, 0.0),
            d_sum_squares=self.sum_squares.get(denominator, 0.0),
            m_d_sum_of_products=product,
        )

    def total(self, column: str) -> float:
        """``Σ column`` over the units (0 when absent)."""
        return self.sum.get(column, 0.0)

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.n + other.n,
            _add(self.sum, other.sum),
            _add(self.sum_squares, other.sum_squares),
            _add(self.sum_product, other.sum_product),
        )


K = TypeVar("K")


def _add(a: Mapping[K, float], b: Mapping[K, float]) -> dict[K, float]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


@dataclass(frozen=True)
class FeedbackData:
    """One feedback metric in one variant: :class:`Moments` of ``value`` and ``count`` over
    the units with at least one value, and whether each of them has exactly one 0/1 value."""

    moments: Moments
    binary_single: bool

    def __add__(self, other: FeedbackData) -> FeedbackData:
        return FeedbackData(
            self.moments + other.moments, self.binary_single and other.binary_single
        )


def empty_histogram() -> LatencyHistogram:
    """A latency histogram with no observations, on :data:`BINS`."""
    return LatencyHistogram(BINS, (0,) * (BINS.n_bins + 2))


@dataclass(frozen=True)
class VariantData:
    """What the store knows of one variant in one phase (or one slice of it).

    ``requests``: :class:`Moments` of :data:`REQUEST_COLUMNS` over the variant's units
    (``requests.n`` is the number of exposed units); ``latency``: histogram (ms) of
    successful requests; ``feedback``: per feedback metric name.
    """

    requests: Moments = field(default_factory=Moments)
    latency: LatencyHistogram = field(default_factory=empty_histogram)
    feedback: Mapping[str, FeedbackData] = field(default_factory=dict)

    @property
    def units(self) -> int:
        """Units exposed to the variant."""
        return self.requests.n

    def __add__(self, other: VariantData) -> VariantData:
        feedback = dict(self.feedback)
        for name, fb in other.feedback.items():
            feedback[name] = feedback[name] + fb if name in feedback else fb
        return VariantData(self.requests + other.requests, self.latency + other.latency, feedback)


CALL_COLUMNS: tuple[str, ...] = (
    "calls",
    "errors",
    "rejected",
    "skipped",
    "successes",
    "latency_ms",
    "billed_s",
    "cost_usd",
    "unpriced",
    "live_errors",
    "live_successes",
    "live_latency_ms",
    "live_cost_usd",
)
"""Sums the store keeps per slice of calls (:class:`CallTotals`): calls; failed ones
(error or timeout); rejected for their arguments; pipeline steps skipped after an earlier
step failed; successful ones and their summed latency (ms); billed seconds; cost (USD);
calls without a price; and, for shadow calls, the same requests' live answers: failed,
successful, their summed latency (ms, successful ones) and cost (USD)."""

CALL_KINDS: tuple[str, ...] = ("request", "step", "shadow")
"""Slices of calls: the requests of a route rule, the steps of a pipeline variant, the
shadow calls of a mirroring variant."""


@dataclass(frozen=True)
class CallTotals:
    """Descriptive sums of one slice of calls in one phase (see :data:`CALL_KINDS`):
    ``variant`` key (None: a route rule's requests outside any experiment), ``step``
    (0-based; 0 for requests and shadows), ``app`` id, ``route`` and ``rule`` names and
    the ``experiment`` a rule's request went to (requests only; None: an app), ``sums``
    of :data:`CALL_COLUMNS` and the ``latency`` histogram (ms) of the successful calls."""

    kind: str
    variant: str | None
    step: int
    app: str
    sums: Mapping[str, float]
    latency: LatencyHistogram = field(default_factory=empty_histogram)
    route: str | None = None
    rule: str | None = None
    experiment: str | None = None

    @property
    def key(self) -> tuple[str | int | None, ...]:
        """What identifies the slice (phases of an all-phases report add up by it)."""
        return (
            self.kind, self.variant, self.step, self.app, self.route, self.rule, self.experiment
        )  # fmt: skip

    def total(self, column: str) -> float:
        """``Σ column`` of the slice (0 when absent)."""
        return self.sums.get(column, 0.0)

    def __add__(self, other: CallTotals) -> CallTotals:
        return CallTotals(
            self.kind, self.variant, self.step, self.app, _add(self.sums, other.sums),
            self.latency + other.latency, self.route, self.rule, self.experiment,
        )  # fmt: skip


@dataclass(frozen=True)
class PhaseData:
    """Everything the analysis of one phase needs, keyed by variant key.

    ``multi_exposure_units`` counts units seen in more than one variant;
    ``multi_exposure_included`` says whether they are in ``variants``. ``calls`` are the
    phase's descriptive breakdowns: pipeline steps, shadow calls, route rules.
    """

    phase: int
    variants: Mapping[str, VariantData]
    multi_exposure_units: int = 0
    multi_exposure_included: bool = False
    calls: tuple[CallTotals, ...] = ()

    def variant(self, key: str) -> VariantData:
        """The data of variant ``key`` (empty when it has none)."""
        return self.variants.get(key) or VariantData()

    @property
    def feedback_metrics(self) -> tuple[str, ...]:
        """Names of the feedback metrics with data in any variant, sorted."""
        return tuple(sorted({m for v in self.variants.values() for m in v.feedback}))


@dataclass(frozen=True)
class Metric:
    """One metric: its name, meaning, unit, good direction, default role and how its
    per-arm statistic is built.

    ``source`` ``"requests"``: the ratio ``Σ numerator / Σ denominator`` of two
    :data:`REQUEST_COLUMNS` per unit; ``"latency"``: the ``quantile`` of the latency
    histogram; ``"feedback"``: the per-unit mean of a feedback metric's values.
    ``unit`` is ``"fraction"``, ``"ms"``, ``"USD"`` or ``"value"``.
    """

    name: str
    description: str
    unit: str
    lower_is_better: bool
    default_role: Role
    source: Source
    numerator: str = ""
    denominator: str = ""
    quantile: float = 0.0

    def statistics(self, data: PhaseData, keys: Iterable[str]) -> dict[str, Statistic]:
        """The per-arm statistic of this metric for each variant key in ``keys``."""
        keys = list(keys)
        if self.source == "requests":
            return {
                k: data.variant(k).requests.ratio(self.numerator, self.denominator) for k in keys
            }
        if self.source == "latency":
            return {k: data.variant(k).latency.quantile(self.quantile) for k in keys}
        found = {k: data.variant(k).feedback.get(self.name) for k in keys}
        if all(fb is None or fb.binary_single for fb in found.values()):
            return {
                k: ProportionStatistic(n=fb.moments.n, sum=fb.moments.total("value"))
                if fb
                else ProportionStatistic(n=0, sum=0.0)
                for k, fb in found.items()
            }
        return {
            k: (fb.moments if fb else Moments()).ratio("value", "count") for k, fb in found.items()
        }


def _latency_quantile(p: float, role: Role) -> Metric:
    return Metric(
        f"latency_p{round(p * 100)}",
        f"{round(p * 100)}th percentile of successful requests' latency",
        "ms",
        True,
        role,
        "latency",
        quantile=p,
    )


BUILTIN_METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "error_rate",
            "requests the assigned variant failed (fallback-served ones included) / "
            "requests not rejected for the caller's arguments (per unit)",
            "fraction",
            True,
            Role.GUARDRAIL,
            "requests",
            "errors",
            "valid_requests",
        ),
        Metric(
            "fallback_rate",
            "requests the control served after the assigned variant failed / requests "
            "not rejected for the caller's arguments (per unit)",
            "fraction",
            True,
            Role.SECONDARY,
            "requests",
            "fallbacks",
            "valid_requests",
        ),
        Metric(
            "latency_mean",
            "mean latency of successful requests (per unit)",
            "ms",
            True,
            Role.SECONDARY,
            "requests",
            "latency_ms",
            "successes",
        ),
        _latency_quantile(0.50, Role.SECONDARY),
        _latency_quantile(0.95, Role.GUARDRAIL),
        _latency_quantile(0.99, Role.SECONDARY),
        Metric(
            "cost_per_request",
            "billed cost (USD) of the requests not rejected for the caller's arguments / "
            "those requests (per unit; a fallback's cost included)",
            "USD",
            True,
            Role.SECONDARY,
            "requests",
            "cost_usd",
            "valid_requests",
        ),
        Metric(
            "cost_per_success",
            "billed cost (USD) of the valid requests, failed ones included / requests the "
            "assigned variant answered (per unit): what one good answer costs",
            "USD",
            True,
            Role.SECONDARY,
            "requests",
            "cost_usd",
            "successes",
        ),
    )
}
"""The request metrics every live experiment has, by name."""

DEFAULT_GUARDRAILS: tuple[str, ...] = tuple(
    m.name for m in BUILTIN_METRICS.values() if m.default_role == Role.GUARDRAIL
)
"""Guardrails of a new experiment unless it names its own."""

FALLBACK_GUARDRAIL = "fallback_rate"
"""Added to the default guardrails of an experiment that falls back to the control."""

FALLBACK_METRICS: frozenset[str] = frozenset({FALLBACK_GUARDRAIL})
"""Request metrics reported only for experiments with a fallback (or data showing one)."""

COST_METRICS: frozenset[str] = frozenset({"cost_per_request", "cost_per_success"})
"""Request metrics reported only when the data have a cost (or the experiment names one)."""


def default_guardrails(fallback_to_control: bool) -> tuple[str, ...]:
    """The guardrails of a new experiment that names none: :data:`DEFAULT_GUARDRAILS`,
    plus :data:`FALLBACK_GUARDRAIL` when it falls back to the control."""
    return DEFAULT_GUARDRAILS + ((FALLBACK_GUARDRAIL,) if fallback_to_control else ())


RATIO_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (m.numerator, m.denominator) for m in BUILTIN_METRICS.values() if m.source == "requests"
)
"""The column pairs whose per-unit products the store must sum (``sum_product``)."""

FEEDBACK_PAIR: tuple[str, str] = ("value", "count")
"""The feedback column pair whose per-unit product the store sums."""


def feedback_metric(name: str) -> Metric:
    """The catalogue entry of a feedback metric (``name`` is not a built-in)."""
    return Metric(
        name,
        f"mean '{name}' feedback value (per unit)",
        "value",
        False,
        Role.SECONDARY,
        "feedback",
        "value",
        "count",
    )


def metric(name: str) -> Metric:
    """The catalogue entry of ``name``: a built-in, else a feedback metric."""
    return BUILTIN_METRICS.get(name) or feedback_metric(name)


_BUILTIN_LOOKALIKE = re.compile(r"^(latency|cost_per)_")


@functools.lru_cache(maxsize=1024)
def _resembles_builtin(name: str) -> tuple[bool, str | None]:
    """Whether ``name`` looks like a built-in, and the closest one (cached: the router's
    ``/feedback`` checks every metric name it receives, and the names are few)."""
    close = difflib.get_close_matches(name, BUILTIN_METRICS, n=1, cutoff=0.8)
    return bool(close or _BUILTIN_LOOKALIKE.match(name)), close[0] if close else None


def check_metric_name(name: str) -> str:
    """``name`` if it is a built-in metric or can be a feedback metric's name.

    A feedback metric (its values arrive through the router's ``/feedback``) may not look
    like a built-in one: a name within a typo of a built-in (``error-rate``,
    ``latency_p96``) or in a built-in's family (``latency_*``, ``cost_per_*``) would
    otherwise become a feedback metric that never gets data, and a guardrail without
    data never blocks a decision.

    Raises:
        ValueError: the name looks like a built-in that does not exist; the message names
            the closest built-in and lists them all.
    """
    if name in BUILTIN_METRICS:
        return name
    looks_like, close = _resembles_builtin(name)
    if looks_like:
        hint = f"did you mean {close!r}? " if close else ""
        raise ValueError(
            f"unknown metric {name!r}: {hint}built-in metrics are "
            + ", ".join(BUILTIN_METRICS)
            + "; any other name is a feedback metric (values sent to /feedback) and may not "
            "look like a built-in one"
        )
    return name


__all__ = [
    "BINS",
    "BUILTIN_METRICS",
    "CALL_COLUMNS",
    "CALL_KINDS",
    "COST_METRICS",
    "DEFAULT_GUARDRAILS",
    "FALLBACK_GUARDRAIL",
    "FALLBACK_METRICS",
    "FEEDBACK_COLUMNS",
    "FEEDBACK_PAIR",
    "RATIO_PAIRS",
    "REQUEST_COLUMNS",
    "CallTotals",
    "FeedbackData",
    "Metric",
    "Moments",
    "PhaseData",
    "Role",
    "VariantData",
    "check_metric_name",
    "default_guardrails",
    "empty_histogram",
    "feedback_metric",
    "metric",
]
