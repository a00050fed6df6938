"""Altair charts of a report: forest plot, cumulative lift, latency distribution.

Each function takes the report engine's (or :mod:`abplatform.service.reports`'s) typed
results and returns an ``alt.Chart`` or None when there is nothing to draw. Lifts are
fractions, drawn as percent; latencies are milliseconds.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from abplatform.core.report import Report
from abplatform.core.series import CumulativeLift, LatencyBin
from dashboard.tables import verdict

CHART_HEIGHT = 300
"""Pixel height of the cumulative-lift and latency charts."""
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")


def variant_colors(variants: list[str], shown: list[str] | None = None) -> alt.Scale:
    """Colours of the ``shown`` variant keys (default all), each keeping the colour of its
    position in ``variants`` (all keys, control first): the same on every chart."""
    keys = variants if shown is None else shown
    return alt.Scale(domain=keys, range=[PALETTE[variants.index(k) % len(PALETTE)] for k in keys])


VERDICT_COLORS = alt.Scale(
    domain=["better", "worse", "not significant", "inconclusive"],
    range=["#2e7d32", "#c62828", "#757575", "#757575"],
)


def forest_data(report: Report) -> pd.DataFrame:
    """One row per (metric, treatment) with a lift: the lift, its CI and the verdict."""
    rows = []
    for m in report.metrics:
        for c in m.comparisons:
            if c.lift is None or c.lift_ci is None:
                continue
            rows.append(
                {
                    "row": f"{m.metric} · {c.variant}",
                    "metric": m.metric,
                    "role": m.role,
                    "variant": c.variant,
                    "lift": c.lift,
                    "low": c.lift_ci[0],
                    "high": c.lift_ci[1],
                    "p_value": c.p_value,
                    "verdict": verdict(c) if c.difference is not None else "not significant",
                    "direction": "lower is better" if m.lower_is_better else "higher is better",
                }
            )
    return pd.DataFrame(rows)


def forest_plot(report: Report) -> alt.Chart | None:
    """Lift of every treatment on every metric with its CI (percent), zero marked."""
    data = forest_data(report)
    if data.empty:
        return None
    order = list(data["row"])
    base = alt.Chart(data).encode(
        y=alt.Y("row:N", sort=order, title=None, axis=alt.Axis(labelLimit=260))
    )
    tooltip = [
        alt.Tooltip("metric:N"),
        alt.Tooltip("variant:N"),
        alt.Tooltip("lift:Q", format="+.2%"),
        alt.Tooltip("low:Q", format="+.2%", title="CI low"),
        alt.Tooltip("high:Q", format="+.2%", title="CI high"),
        alt.Tooltip("p_value:Q", format=".4f", title="p-value"),
        alt.Tooltip("direction:N"),
    ]
    color = alt.Color("verdict:N", scale=VERDICT_COLORS, legend=alt.Legend(orient="bottom"))
    bars = base.mark_rule(strokeWidth=3).encode(
        x=alt.X("low:Q", title="lift vs control (CI)", axis=alt.Axis(format="+%")),
        x2="high:Q",
        color=color,
        tooltip=tooltip,
    )
    points = base.mark_point(filled=True, size=70).encode(x="lift:Q", color=color, tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return bars + points + zero


def forest_height(report: Report) -> int:
    """Pixel height for ``st.altair_chart`` (the whole chart: rows, axis and legend)."""
    return 40 * max(len(forest_data(report)), 1) + 170


def cumulative_data(series: CumulativeLift) -> pd.DataFrame:
    """Points of the cumulative-lift chart that have a lift."""
    return pd.DataFrame(
        [
            {
                "at": p.at,
                "variant": p.variant,
                "lift": p.lift,
                "low": p.ci_low,
                "high": p.ci_high,
                "units_control": p.units_control,
                "units_treatment": p.units_treatment,
            }
            for p in series.points
            if p.lift is not None
        ]
    )


def lift_domain(data: pd.DataFrame) -> tuple[float, float]:
    """The y range of the cumulative-lift chart: every lift and the latest confidence
    sequence of each variant, plus 10% and zero. Earlier, wider bands are clipped to it
    (a first point's band can span thousands of percent and flatten everything else)."""
    latest = data.sort_values("at").groupby("variant").tail(1)
    values = [0.0, *data["lift"], *latest["low"], *latest["high"]]
    lo, hi = min(values), max(values)
    pad = 0.1 * (hi - lo) or 0.01
    return lo - pad, hi + pad


def cumulative_chart(series: CumulativeLift, variants: list[str]) -> alt.Chart | None:
    """The lift over time (UTC) with its always-valid confidence sequence as a band,
    from the first point with enough units in both arms and scaled to the data
    (:func:`lift_domain`); ``variants`` (all keys, control first) fix the colours."""
    data = cumulative_data(series)
    if data.empty:
        return None
    data["at"] = pd.to_datetime(data["at"], utc=True)
    span_s = (data["at"].max() - data["at"].min()).total_seconds()
    axis = alt.Axis(format="%H:%M:%S") if span_s < 600 else alt.Axis()  # no ".500" ticks
    x = alt.X("at:T", title="time (UTC)", axis=axis)
    treatments = [v for v in variants if v in set(data["variant"])]
    color = alt.Color(
        "variant:N", scale=variant_colors(variants, treatments), legend=alt.Legend(orient="bottom")
    )
    tooltip = [
        alt.Tooltip("at:T", format="%Y-%m-%d %H:%M:%S", title="up to"),
        alt.Tooltip("variant:N"),
        alt.Tooltip("lift:Q", format="+.2%"),
        alt.Tooltip("low:Q", format="+.2%", title="CS low"),
        alt.Tooltip("high:Q", format="+.2%", title="CS high"),
        alt.Tooltip("units_control:Q", title="control n"),
        alt.Tooltip("units_treatment:Q", title="treatment n"),
    ]
    scale = alt.Scale(domain=list(lift_domain(data)), nice=False)
    band = (
        alt.Chart(data)
        .mark_area(opacity=0.2, clip=True)
        .encode(
            x=x,
            y=alt.Y(
                "low:Q", title=f"lift of {series.metric}", axis=alt.Axis(format="+%"), scale=scale
            ),
            y2="high:Q",
            color=color,
        )
    )
    line = (
        alt.Chart(data)
        .mark_line(point=True, clip=True)
        .encode(x=x, y=alt.Y("lift:Q", scale=scale), color=color, tooltip=tooltip)
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(y="y:Q")
    return band + line + zero


def latency_data(bins: list[LatencyBin]) -> pd.DataFrame:
    """The latency histogram rows (ms, share of each variant's successful requests)."""
    return pd.DataFrame(
        [
            {
                "variant": b.variant,
                "low_ms": b.low_ms,
                "high_ms": b.high_ms,
                "requests": b.requests,
                "share": b.share,
                "zero": 0.0,
            }
            for b in bins
            if b.low_ms > 0 and b.high_ms != float("inf")
        ]
    )


def latency_chart(bins: list[LatencyBin], variants: list[str]) -> alt.Chart | None:
    """Share of requests per latency bin (log-scaled ms), one colour per variant."""
    data = latency_data(bins)
    if data.empty:
        return None
    return (
        alt.Chart(data)
        .mark_rect(opacity=0.55)
        .encode(
            x=alt.X("low_ms:Q", scale=alt.Scale(type="log"), title="latency (ms, log scale)"),
            x2="high_ms:Q",
            y=alt.Y("share:Q", stack=None, title="share of requests", axis=alt.Axis(format="%")),
            y2="zero:Q",
            color=alt.Color(
                "variant:N", scale=variant_colors(variants), legend=alt.Legend(orient="bottom")
            ),
            tooltip=[
                alt.Tooltip("variant:N"),
                alt.Tooltip("low_ms:Q", format=".1f", title="from ms"),
                alt.Tooltip("high_ms:Q", format=".1f", title="to ms"),
                alt.Tooltip("requests:Q"),
                alt.Tooltip("share:Q", format=".2%"),
            ],
        )
    )
