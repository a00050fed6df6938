"""Tables and one-line summaries of a report, as pandas DataFrames and strings.

Numbers are formatted for reading (percent, ms, p-values), in the conventions of the
CLI's rendering (:mod:`abplatform.cli.render`): "–" for a value that does not exist.
"""

from __future__ import annotations

import pandas as pd

from abplatform.core.report import Comparison, Report
from abplatform.core.views import ExperimentView

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
    """A p-value, "<0.0001" when tiny, or "–"."""
    if p is None:
        return DASH
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def interval(ci: tuple[float, float] | None, fmt: str) -> str:
    """``[lo, hi]`` formatted, or "–"."""
    return DASH if ci is None else f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def difference_format(metric: str) -> str:
    """Format of a difference in ``metric``'s units (ms for latency)."""
    return "{:+.2f}" if metric.startswith("latency") else "{:+.4f}"


def verdict(c: Comparison) -> str:
    """better / worse / not significant / why the test could not run."""
    if c.error_message:
        return c.error_message
    if c.better is True:
        return "better"
    if c.better is False:
        return "worse"
    return "not significant"


def weights_text(view: ExperimentView) -> str:
    """``control 50 / treatment 50`` (percent) of the current phase."""
    return " / ".join(f"{v.key} {v.weight:g}" for v in view.variants)


def variant_table(report: Report) -> pd.DataFrame:
    """Per variant: units, requests, errors, latency (ms) and feedback."""
    return pd.DataFrame(
        [
            {
                "variant": v.key + (" (control)" if v.is_control else ""),
                "model_version": v.model_version,
                "weight %": f"{v.weight:g}",
                "units": v.units,
                "requests": v.requests,
                "error rate": pct(v.error_rate),
                "latency mean ms": num(v.latency_mean_ms),
                "p50 ms": num(v.latency_p50_ms),
                "p95 ms": num(v.latency_p95_ms),
                "p99 ms": num(v.latency_p99_ms),
                "feedback": v.feedback_count,
                "feedback rate": pct(v.feedback_rate),
            }
            for v in report.variants
        ]
    )


def comparison_table(report: Report, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per metric and treatment: difference and lift with their CIs, p-values and the
    chance to beat control (rows of ``metrics`` only, when given)."""
    rows = []
    for m in report.metrics:
        if metrics is not None and m.metric not in metrics:
            continue
        fmt = difference_format(m.metric)
        for c in m.comparisons:
            rows.append(
                {
                    "metric": m.metric,
                    "role": m.role,
                    "comparison": c.comparator,
                    "control": num(c.control_value, "{:.4g}"),
                    "treatment": num(c.treatment_value, "{:.4g}"),
                    "difference": num(c.difference, fmt),
                    "difference CI": interval(c.ci, fmt),
                    "lift": signed_pct(c.lift),
                    "lift CI": interval(c.lift_ci, "{:+.1%}"),
                    "p-value": p_value(c.p_value),
                    "adjusted p": p_value(c.adjusted_p_value),
                    "chance to beat control": f"{c.chance_to_win:.1%}",
                    "verdict": verdict(c),
                }
            )
    return pd.DataFrame(rows)


def headline(report: Report) -> str:
    """The primary metric in one line per treatment: lift, its CI and the p-value."""
    try:
        primary = report.metric(report.primary_metric)
    except KeyError:
        return f"{report.primary_metric}: no data yet"
    parts = []
    for c in primary.comparisons:
        if c.lift is None and c.difference is None:
            parts.append(f"{c.variant}: {c.error_message or 'no data yet'}")
            continue
        value = signed_pct(c.lift) if c.lift is not None else num(c.difference, "{:+.4g}")
        ci = interval(c.lift_ci, "{:+.1%}") if c.lift is not None else interval(c.ci, "{:+.4g}")
        parts.append(
            f"{c.variant} {value} {ci}, p={p_value(c.p_value)}, P(better)={c.chance_to_win:.0%}"
        )
    return f"{report.primary_metric}: " + "; ".join(parts)


def srm_text(report: Report) -> str:
    """Observed against expected units per variant, with the test's p-value."""
    srm = report.srm
    pairs = ", ".join(
        f"{v.key} {o:,} vs {e:,.1f}"
        for v, o, e in zip(report.variants, srm.observed, srm.expected, strict=True)
    )
    return f"observed vs expected units: {pairs} (χ²={srm.chi2:.2f}, p={srm.p_value:.3g})"


def decision_text(report: Report) -> str:
    """``ship treatment`` / ``keep running`` / ``roll back to control``."""
    d = report.decision
    if d.action == "ship":
        return f"ship {d.variant}"
    if d.action == "roll back":
        return f"roll back to {d.variant}"
    return "keep running"
