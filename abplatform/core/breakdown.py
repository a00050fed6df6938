"""Descriptive breakdowns of a phase beside the comparisons: what each request cost per
variant (with confidence intervals), each pipeline step's latency and errors, shadow
calls against the live answers of the same requests, and the route rules the traffic
came through.

Pure functions of :class:`~abplatform.core.metrics.PhaseData`; the analysis
(:func:`abplatform.core.analysis.analyze`) puts their results in the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from abplatform.core.metrics import CallTotals, PhaseData, VariantData
from abplatform.core.report import CallSummary


def level_ci(
    data: VariantData, numerator: str, denominator: str, alpha: float
) -> tuple[float | None, tuple[float, float] | None]:
    """A variant's own ratio ``Σ numerator / Σ denominator`` over its units and its
    ``1 - alpha`` confidence interval (normal, delta-method standard error with the unit
    as the unit of analysis: Deng et al. 2018). ``(None, None)`` without data; no
    interval with fewer than two units."""
    ratio = data.requests.ratio(numerator, denominator)
    if ratio.n == 0 or ratio.d_sum == 0:
        return None, None
    if ratio.n < 2:
        return ratio.mean, None
    half = NormalDist().inv_cdf(1 - alpha / 2) * math.sqrt(max(ratio.variance, 0.0) / ratio.n)
    return ratio.mean, (ratio.mean - half, ratio.mean + half)


def cost_figures(data: VariantData, alpha: float) -> dict[str, object]:
    """The cost fields of a :class:`~abplatform.core.report.VariantSummary`: billed
    seconds per valid request, cost per valid request and per successful request (USD)
    with intervals, and the count of requests without a price. Cost figures are None
    when none of the variant's requests has a price (requests without one add no cost:
    the report notes them)."""
    r = data.requests
    valid = r.total("valid_requests")
    priced = valid - r.total("unpriced") > 0
    per_request, per_request_ci = level_ci(data, "cost_usd", "valid_requests", alpha)
    per_success, per_success_ci = level_ci(data, "cost_usd", "successes", alpha)
    return {
        "billed_s_per_request": r.total("billed_s") / valid if valid else None,
        "cost_per_request": per_request if priced else None,
        "cost_per_request_ci": per_request_ci if priced else None,
        "cost_per_success": per_success if priced else None,
        "cost_per_success_ci": per_success_ci if priced else None,
        "unpriced": int(r.total("unpriced")),
    }


def merged_calls(datas: Sequence[PhaseData]) -> list[CallTotals]:
    """The call slices of every phase, added up by slice, in a stable order."""
    merged: dict[tuple[object, ...], CallTotals] = {}
    for d in datas:
        for c in d.calls:
            merged[c.key] = merged[c.key] + c if c.key in merged else c
    order = {"request": 0, "step": 1, "shadow": 2}
    return sorted(
        merged.values(),
        key=lambda c: (order.get(c.kind, 9), c.route or "", c.rule or "", c.experiment or "",
                       c.variant or "", c.step, c.app),
    )  # fmt: skip


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def call_summary(c: CallTotals) -> CallSummary:
    """The report's view of one call slice (latencies in ms, costs in USD per call)."""
    calls, ok = c.total("calls"), c.total("successes")
    valid = calls - c.total("rejected") - c.total("skipped")
    priced = c.total("unpriced") < valid
    shadow = c.kind == "shadow"

    def q(p: float) -> float | None:
        return c.latency.value_at(p)[0] if c.latency.n else None

    return CallSummary(
        kind=c.kind,
        variant=c.variant,
        step=c.step,
        app=c.app,
        calls=int(calls),
        errors=int(c.total("errors")),
        error_rate=_ratio(c.total("errors"), valid),
        latency_mean_ms=_ratio(c.total("latency_ms"), ok),
        latency_p50_ms=q(0.5),
        latency_p95_ms=q(0.95),
        billed_s_per_call=_ratio(c.total("billed_s"), valid),
        cost_per_call=_ratio(c.total("cost_usd"), valid) if priced else None,
        skipped=int(c.total("skipped")),
        rejected=int(c.total("rejected")),
        route=c.route,
        rule=c.rule,
        experiment=c.experiment,
        live_error_rate=_ratio(c.total("live_errors"), calls) if shadow else None,
        live_latency_mean_ms=_ratio(c.total("live_latency_ms"), c.total("live_successes"))
        if shadow
        else None,
        live_cost_per_call=_ratio(c.total("live_cost_usd"), calls) if shadow else None,
    )


def breakdowns(
    datas: Sequence[PhaseData],
) -> tuple[tuple[CallSummary, ...], tuple[CallSummary, ...], tuple[CallSummary, ...]]:
    """``(steps, shadows, rules)`` of the analysed phases."""
    summaries = [call_summary(c) for c in merged_calls(datas)]
    return (
        tuple(s for s in summaries if s.kind == "step"),
        tuple(s for s in summaries if s.kind == "shadow"),
        tuple(s for s in summaries if s.kind == "request"),
    )


__all__ = ["breakdowns", "call_summary", "cost_figures", "level_ci", "merged_calls"]
