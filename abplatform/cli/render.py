"""Render a :class:`abplatform.service.reports.Report` as rich tables (the CLI's view)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from abplatform.core.report import Comparison, Report

ACTION_STYLE = {"ship": "bold green", "keep running": "bold yellow", "roll back": "bold red"}


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.2%}"


def _ci(ci: tuple[float, float] | None, fmt: str) -> str:
    if ci is None:
        return "–"
    return f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def variant_table(report: Report) -> Table:
    """Per variant: units, requests, errors, latency (ms) and feedback."""
    t = Table(title=f"Variants (phase {report.phase})", title_justify="left")
    for col in (
        "variant",
        "model",
        "weight %",
        "units",
        "requests",
        "error rate",
        "latency mean",
        "p50",
        "p95",
        "p99",
        "feedback",
        "feedback rate",
    ):
        t.add_column(col, justify="left" if col in ("variant", "model") else "right")
    for v in report.variants:
        t.add_row(
            v.key + (" (control)" if v.is_control else ""),
            v.model_version,
            f"{v.weight:g}",
            f"{v.units:,}",
            f"{v.requests:,}",
            _pct(v.error_rate),
            _num(v.latency_mean_ms),
            _num(v.latency_p50_ms),
            _num(v.latency_p95_ms),
            _num(v.latency_p99_ms),
            f"{v.feedback_count:,}",
            _pct(v.feedback_rate),
        )
    return t


def _fmt_for(metric: str) -> str:
    if metric.startswith("latency"):
        return "{:+.2f}"
    return "{:+.4f}"


def comparison_table(report: Report) -> Table:
    """Per metric and treatment: difference and lift with CIs, p-values, chance to win."""
    label = "always-valid" if report.method == "sequential" else "fixed-horizon"
    t = Table(
        title=f"Treatment vs control ({label} {1 - report.alpha:.0%} CI, "
        f"correction: {report.correction})",
        title_justify="left",
    )
    for col in (
        "metric",
        "role",
        "comparison",
        "control",
        "treatment",
        "difference",
        "CI",
        "lift",
        "lift CI",
        "p",
        "adj. p",
        "P(better)",
        "verdict",
    ):
        t.add_column(col, justify="left" if col in ("metric", "role", "comparison") else "right")
    for m in report.metrics:
        for c in m.comparisons:
            t.add_row(
                m.metric,
                m.role,
                c.comparator,
                _num(c.control_value, "{:.4g}"),
                _num(c.treatment_value, "{:.4g}"),
                _num(c.difference, _fmt_for(m.metric)),
                _ci(c.ci, _fmt_for(m.metric)),
                _pct(c.lift),
                _ci(c.lift_ci, "{:+.1%}"),
                _p(c.p_value),
                _p(c.adjusted_p_value),
                f"{c.chance_to_win:.1%}",
                _verdict(c),
            )
    return t


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


#: Short, human-readable forms of :mod:`abplatform.core.stats.messages` codes.
WHY = {
    "NO_UNITS_IN_VARIATION": "no units yet",
    "ZERO_NEGATIVE_VARIANCE": "no variance yet",
    "ZERO_NEGATIVE_BASELINE_VARIATION": "control is 0",
    "ZERO_RATIO_DENOMINATOR": "no requests",
    "QUANTILE_INSUFFICIENT_DATA": "too few requests",
    "QUANTILE_OUT_OF_HISTOGRAM_RANGE": "beyond histogram",
}


def _verdict(c: Comparison) -> Text:
    if c.error_message:
        return Text(WHY.get(c.error_message, c.error_message), style="dim")
    if c.better is True:
        return Text("better", style="green")
    if c.better is False:
        return Text("worse", style="red")
    return Text("n.s.", style="dim")


def render(report: Report, console: Console) -> None:
    """Print the whole report."""
    srm = report.srm
    srm_line = (
        f"SRM: observed {list(srm.observed)} vs expected "
        f"{[round(x, 1) for x in srm.expected]} (weights {list(srm.weights)}%), "
        f"χ²={srm.chi2:.2f}, p={srm.p_value:.3g}"
    )
    srm_text = Text(
        ("⚠ " if srm.flagged else "✓ ") + srm_line, style="bold red" if srm.flagged else "green"
    )
    console.print(
        Panel(
            Group(
                Text(
                    f"{report.experiment} — {report.status}, phase {report.phase} since "
                    f"{report.phase_started_at:%Y-%m-%d %H:%M:%S} UTC; primary metric "
                    f"{report.primary_metric}; guardrails {', '.join(report.guardrails) or 'none'}"
                ),
                srm_text,
                Text(
                    f"Units assigned to more than one variant: {report.multi_exposure_units}"
                    + (" (excluded)" if report.multi_exposure_excluded else " (included)")
                ),
            ),
            title="Stats report",
        )
    )
    console.print(variant_table(report))
    console.print(comparison_table(report))
    d = report.decision
    head = Text(
        f"Decision: {d.action}" + (f" → {d.variant}" if d.variant else ""),
        style=ACTION_STYLE[d.action],
    )
    console.print(
        Panel(
            Group(
                head,
                *[Text("• " + r) for r in d.reasons],
                Text(f"Rule: {d.rule}", style="dim"),
                *[Text("Note: " + n, style="yellow") for n in report.notes],
            )
        )
    )
