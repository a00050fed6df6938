"""Tables and one-line summaries of a report, as pandas DataFrames and strings.

Words and number formats come from :mod:`abplatform.core.wording`, shared with the CLI:
"–" for a value that does not exist, with a sentence elsewhere saying why. Tables are
kept narrow (a value and its interval in one cell, the verdict next to the comparison)
and their first columns are pinned, so nothing an operator needs is cut at the edge.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from abplatform.core import wording
from abplatform.core.report import Comparison, Report
from abplatform.core.views import ExperimentView
from abplatform.core.wording import (
    DASH,
    decision_text,
    headline,
    interval,
    num,
    p_value,
    pct,
    signed_pct,
    srm_text,
)

__all__ = [
    "DASH",
    "comparator_title",
    "comparison_columns",
    "comparison_config",
    "comparison_table",
    "decision_text",
    "headline",
    "interval",
    "num",
    "p_value",
    "pct",
    "pinned",
    "signed_pct",
    "srm_text",
    "variant_table",
    "verdict",
    "weights_text",
]


def verdict(c: Comparison) -> str:
    """better / worse / not significant / no test."""
    return wording.verdict_text(c)


def weights_text(view: ExperimentView) -> str:
    """``control 50 / treatment 50`` (percent) of the current phase."""
    return " / ".join(f"{v.key} {v.weight:g}" for v in view.variants)


def pinned(*columns: str) -> dict[str, st.column_config.Column]:
    """``column_config`` that keeps ``columns`` visible when a table scrolls sideways."""
    return {c: st.column_config.Column(pinned=True) for c in columns}


def _show_fallbacks(report: Report) -> bool:
    return any(m.metric == "fallback_rate" for m in report.metrics) or any(
        v.fallbacks for v in report.variants
    )


def variant_table(report: Report) -> pd.DataFrame:
    """Per variant: units, requests (rejected ones apart), error and fallback rates,
    latency (ms), feedback and, once requests have a cost, cost per 1,000 requests and per
    1,000 successful ones with their intervals, and billed seconds per request."""
    fallbacks = _show_fallbacks(report)
    costs = any(v.cost_per_request is not None for v in report.variants)
    rows = []
    for v in report.variants:
        row = {
            "variant": v.key + (" (control)" if v.is_control else ""),
            "model": v.model_version,
            "weight %": f"{v.weight:g}",
            "units": v.units,
            "requests": v.requests,
            "rejected": v.rejected,
            "error rate": pct(v.error_rate),
        }
        if fallbacks:
            row["fallback rate"] = pct(v.fallback_rate)
        row |= {
            "latency mean ms": num(v.latency_mean_ms),
            "p50 ms": num(v.latency_p50_ms),
            "p95 ms": num(v.latency_p95_ms),
            "p99 ms": num(v.latency_p99_ms),
            "feedback": v.feedback_count,
        }
        if costs:
            row |= {
                "cost $/1k req [CI]": wording.usd_k_interval(v.cost_per_request,
                                                              v.cost_per_request_ci),
                "cost $/1k ok [CI]": wording.usd_k_interval(v.cost_per_success,
                                                             v.cost_per_success_ci),
                "billed s/req": num(v.billed_s_per_request, "{:.3f}"),
            }  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_columns(report: Report) -> tuple[str, ...]:
    """The comparison table's columns for the report's engine."""
    several = len({c.variant for m in report.metrics for c in m.comparisons}) > 1
    head: tuple[str, ...] = ("metric", "role", "comparison", "verdict")
    if not several:  # the one comparator is named in the table's title (comparator_title)
        head = ("metric", "role", "verdict")
    if report.engine == "bayesian":
        figures: tuple[str, ...] = (
            "difference [credible interval]",
            "lift [credible interval]",
            "chance to beat control",
            "risk: keep control / ship",
        )
    else:
        kind = "CS" if report.method == "sequential" else "CI"
        figures = (f"difference [{kind}]", f"lift [{kind}]", "p", "adj. p")
    return (*head, *figures, "control → treatment")


def comparator_title(report: Report) -> str:
    """The comparison table's title: ``"treatment vs control"`` when there is one
    treatment (the table then has no comparison column), else ``"Treatments vs
    control"``."""
    comparators = list(dict.fromkeys(c.comparator for m in report.metrics for c in m.comparisons))
    if len(comparators) == 1:
        return comparators[0]
    control = next((v.key for v in report.variants if v.is_control), "control")
    return f"Treatments vs {control}"


def comparison_config(report: Report) -> dict[str, st.column_config.Column]:
    """Column settings of the comparison table: the first columns pinned, the narrow ones
    small, and what each figure is in its header's tooltip."""
    config = pinned("metric", "comparison", "verdict")
    if report.engine == "bayesian":
        return config
    p_help = (
        "always-valid p-value of the sequential test: valid at every look, stays at 1 "
        "until the evidence builds up"
        if report.method == "sequential"
        else "p-value of the fixed-horizon Welch t-test"
    )
    return config | {
        "role": st.column_config.Column(width="small"),
        "p": st.column_config.Column(width="small", help=p_help),
        "adj. p": st.column_config.Column(
            width="small", help=f"after the {report.correction} correction (not for guardrails)"
        ),
    }


def _figures(report: Report, metric: str, c: Comparison) -> list[str]:
    fmt = wording.difference_format(metric)
    cells = [
        wording.with_interval(
            wording.shown(metric, c.difference), wording.shown_interval(metric, c.ci), fmt
        ),
        wording.with_interval(c.lift, c.lift_ci, "{:+.1%}"),
    ]
    if report.engine == "bayesian":
        risk = (
            interval(wording.shown_interval(metric, c.risk), fmt.replace("+", "")).strip("[]")
            if c.risk
            else DASH
        )
        return [*cells, wording.chance_text(c), risk.replace(", ", " / ")]
    return [*cells, p_value(c.p_value), p_value(c.adjusted_p_value)]


def comparison_table(report: Report, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per metric and treatment: the verdict, difference and lift with their intervals
    and the engine's figures (rows of ``metrics`` only, when given)."""
    columns = comparison_columns(report)
    rows = []
    for m in report.metrics:
        if metrics is not None and m.metric not in metrics:
            continue
        for c in m.comparisons:
            head = [wording.metric_label(m.metric), m.role, c.comparator, verdict(c)]
            if "comparison" not in columns:
                head.remove(c.comparator)
            cells = [*head, *_figures(report, m.metric, c)]
            before = num(wording.shown(m.metric, c.control_value), "{:.4g}")
            after = num(wording.shown(m.metric, c.treatment_value), "{:.4g}")
            cells.append(f"{before} → {after}")
            rows.append(dict(zip(columns, cells, strict=True)))
    return pd.DataFrame(rows, columns=list(columns))
