"""How a report reads: the words and number formats every view (CLI, dashboard, demo)
shares, so that two views of one report never say different things.

Pure strings from :class:`~abplatform.core.report.Report` parts. A figure that does not
exist is "–", and wherever one is missing a sentence says why (never an internal code).
Fractions are shown as percent, latencies in ms.
"""

from __future__ import annotations

from abplatform.core.comparison import verdict
from abplatform.core.report import Comparison, Method, Report, SrmCheck

DASH = "–"


def num(x: float | None, fmt: str = "{:.1f}") -> str:
    """``x`` formatted, or "–"."""
    return DASH if x is None else fmt.format(x)


def pct(x: float | None, digits: int = 2) -> str:
    """A fraction as a percent, or "–"."""
    return DASH if x is None else f"{x:.{digits}%}"


def signed_pct(x: float | None) -> str:
    """A fraction as a signed percent with one decimal, or "–"."""
    return DASH if x is None else f"{x:+.1%}"


def p_value(p: float | None) -> str:
    """A p-value for reading: "<0.0001" when tiny, 4 decimals below 0.01, 2 above, and
    "1" for an always-valid p that has not moved off 1 (no evidence yet); "–" when the
    test could not run."""
    if p is None:
        return DASH
    if p < 1e-4:
        return "<0.0001"
    if p < 0.01:
        return f"{p:.4f}"
    if p >= 0.995:
        return "1"
    return f"{p:.2f}"


def p_label(method: Method) -> str:
    """The p-value column's name for the test: ``always-valid p`` or ``p``."""
    return "always-valid p" if method == "sequential" else "p"


def interval(ci: tuple[float, float] | None, fmt: str) -> str:
    """``[lo, hi]`` formatted, or "–"."""
    return DASH if ci is None else f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def with_interval(x: float | None, ci: tuple[float, float] | None, fmt: str) -> str:
    """``x [lo, hi]`` in one cell (narrow tables), or "–"."""
    if x is None:
        return DASH
    return f"{fmt.format(x)} {interval(ci, fmt)}" if ci else fmt.format(x)


def difference_format(metric: str) -> str:
    """Format of a difference in ``metric``'s units (ms for latency)."""
    return "{:+.2f}" if metric.startswith("latency") else "{:+.4f}"


PER_K = 1000.0
"""Costs read per 1,000 requests: a request costs a few hundredths of a cent."""


def is_cost(metric: str) -> bool:
    """Whether ``metric`` is a cost (USD per request), shown per 1,000 requests."""
    return metric.startswith("cost_")


def metric_label(metric: str) -> str:
    """The metric's name with the unit a view shows it in (``cost_per_request $/1k``)."""
    return f"{metric} ($/1k)" if is_cost(metric) else metric


def shown(metric: str, x: float | None) -> float | None:
    """``x`` in the unit :func:`metric_label` names (costs per 1,000 requests)."""
    return None if x is None else (x * PER_K if is_cost(metric) else x)


def shown_interval(metric: str, ci: tuple[float, float] | None) -> tuple[float, float] | None:
    """An interval of ``metric`` in the unit :func:`metric_label` names."""
    return None if ci is None else (shown(metric, ci[0]), shown(metric, ci[1]))  # type: ignore[return-value]


def usd_k(x: float | None) -> str:
    """A cost per request as USD per 1,000 requests, e.g. ``$0.0275``, or "–"."""
    return DASH if x is None else f"${x * PER_K:.4f}"


def usd_k_interval(x: float | None, ci: tuple[float, float] | None) -> str:
    """A cost per request and its interval, per 1,000 requests, in one cell."""
    if x is None:
        return DASH
    text = usd_k(x)
    return f"{text} [{ci[0] * PER_K:.4f}, {ci[1] * PER_K:.4f}]" if ci else text


def verdict_text(c: Comparison) -> str:
    """better / worse / not significant / no test."""
    return verdict(c)


def chance_text(c: Comparison) -> str:
    """The Bayesian chance to beat the control, or "–"."""
    return DASH if c.chance_to_win is None else f"{c.chance_to_win:.1%}"


def missing_figures(report: Report) -> list[str]:
    """One sentence per comparison with a missing figure: ``"error_rate, b vs a: ..."``."""
    return [
        f"{m.metric}, {c.comparator}: {c.note}"
        for m in report.metrics
        for c in m.comparisons
        if c.note
    ]


def headline(report: Report) -> str:
    """The primary metric in one line per treatment, with the report's engine's figures:
    lift (or difference), its interval and the p-value or the chance to beat control."""
    try:
        primary = report.metric(report.primary_metric)
    except KeyError:
        return f"{report.primary_metric}: no data yet"
    parts = []
    for c in primary.comparisons:
        if c.difference is None:
            parts.append(f"{c.variant}: no test yet ({c.note or 'no data'})")
            continue
        if c.lift is not None:
            value = f"{signed_pct(c.lift)} {interval(c.lift_ci, '{:+.1%}')}"
        else:
            value = f"{num(c.difference, '{:+.4g}')} {interval(c.ci, '{:+.4g}')}"
        if report.engine == "bayesian":
            figure = f"P(better than {c.comparator.split(' vs ')[-1]})={chance_text(c)}"
        else:
            p = c.p_value if c.adjusted_p_value is None else c.adjusted_p_value
            figure = f"p={p_value(p)}"
        parts.append(f"{c.variant} {value}, {figure}, {verdict_text(c)}")
    return f"{report.primary_metric}: " + "; ".join(parts)


def srm_line(srm: SrmCheck, keys: list[str]) -> str:
    """Observed against expected units per variant with the test's p-value, or why the
    check could not run."""
    if srm.note:
        return srm.note
    pairs = ", ".join(
        f"{k} {o:,} vs {e:,.1f}" for k, o, e in zip(keys, srm.observed, srm.expected, strict=True)
    )
    return f"observed vs expected units: {pairs} (χ²={srm.chi2:.2f}, p={srm.p_value:.3g})"


def srm_text(report: Report) -> str:
    """The report's SRM check in words (each phase's, for an all-phases report)."""
    keys = [v.key for v in report.variants]
    if not report.phase_srm:
        return srm_line(report.srm, keys)
    each = "; ".join(
        f"phase {s.phase} ({'/'.join(f'{w:g}' for w in s.weights)}): {srm_line(s, keys)}"
        for s in report.phase_srm
    )
    return f"{each}; over all phases p={report.srm.p_value:.3g} (Bonferroni)"


def decision_text(report: Report) -> str:
    """``ship treatment`` / ``keep running`` / ``roll back to control``."""
    d = report.decision
    if d.action == "ship":
        return f"ship {d.variant}"
    if d.action == "roll back":
        return f"roll back to {d.variant}"
    return "keep running"


def phase_result(report: Report) -> str:
    """One line on a report's result, to show beside a later phase: its scope, units,
    recommendation and primary-metric headline."""
    units = sum(v.units for v in report.variants)
    return (
        f"{report.scope_label}: {units:,} units, recommendation {decision_text(report)}; "
        f"{headline(report)}"
    )


__all__ = [
    "DASH",
    "chance_text",
    "decision_text",
    "difference_format",
    "headline",
    "interval",
    "is_cost",
    "metric_label",
    "missing_figures",
    "num",
    "p_label",
    "p_value",
    "pct",
    "phase_result",
    "shown",
    "shown_interval",
    "signed_pct",
    "srm_line",
    "srm_text",
    "usd_k",
    "usd_k_interval",
    "verdict_text",
    "with_interval",
]
