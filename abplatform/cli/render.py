"""Render a :class:`abplatform.core.report.Report` as rich tables (the CLI's view).

Words and number formats come from :mod:`abplatform.core.wording`, shared with the
dashboard. The header names the method (engine, test, prior); the comparison table
shows that engine's figures only; a missing figure is "–" and a sentence under the
table says why.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from abplatform.core import wording as w
from abplatform.core.report import CallSummary, Comparison, Report

ACTION_STYLE = {"ship": "bold green", "keep running": "bold yellow", "roll back": "bold red"}
VERDICT_STYLE = {
    "better": "green",
    "worse": "red",
    "not significant": "dim",
    "inconclusive": "dim",
    "no test": "dim",
}


def _show_fallbacks(report: Report) -> bool:
    return any(m.metric == "fallback_rate" for m in report.metrics) or any(
        v.fallbacks for v in report.variants
    )


def variant_table(report: Report) -> Table:
    """Per variant: units, requests (rejected ones apart), error and fallback rates,
    latency (ms) and feedback."""
    scope = "all phases, summed" if report.all_phases else f"phase {report.phase}"
    t = Table(title=f"Variants ({scope})", title_justify="left")
    fallbacks = _show_fallbacks(report)
    columns = ["variant", "weight %", "units", "requests", "rejected", "error rate"]
    columns += ["fallback rate"] if fallbacks else []
    columns += ["latency mean", "p50", "p95", "p99", "feedback"]
    costs = any(v.cost_per_request is not None for v in report.variants)
    ci = f"{1 - report.alpha:.0%} CI"
    columns += [f"cost $/1k req [{ci}]", f"$/1k ok [{ci}]", "billed s/req"] if costs else []
    for col in columns:
        t.add_column(col, justify="left" if col == "variant" else "right")
    for v in report.variants:
        row = [
            f"{v.key} ({v.model_version})" + (" control" if v.is_control else ""),
            f"{v.weight:g}",
            f"{v.units:,}",
            f"{v.requests:,}",
            f"{v.rejected:,}",
            w.pct(v.error_rate),
        ]
        row += [w.pct(v.fallback_rate)] if fallbacks else []
        row += [
            w.num(v.latency_mean_ms),
            w.num(v.latency_p50_ms),
            w.num(v.latency_p95_ms),
            w.num(v.latency_p99_ms),
            f"{v.feedback_count:,}",
        ]
        row += [
            w.usd_k_interval(v.cost_per_request, v.cost_per_request_ci),
            w.usd_k_interval(v.cost_per_success, v.cost_per_success_ci),
            w.num(v.billed_s_per_request, "{:.3f}"),
        ] if costs else []  # fmt: skip
        t.add_row(*row)
    return t


def _calls_columns(t: Table, first: list[str]) -> None:
    for col in [*first, "calls", "errors", "error rate", "latency mean", "p50", "p95",
                "billed s", "cost $/1k"]:  # fmt: skip
        t.add_column(col, justify="left" if col in first else "right")


def _calls_row(c: CallSummary) -> list[str]:
    return [
        f"{c.calls:,}", f"{c.errors:,}" + (f" (+{c.skipped} skipped)" if c.skipped else ""),
        w.pct(c.error_rate), w.num(c.latency_mean_ms), w.num(c.latency_p50_ms),
        w.num(c.latency_p95_ms), w.num(c.billed_s_per_call, "{:.3f}"), w.usd_k(c.cost_per_call),
    ]  # fmt: skip


def steps_table(report: Report) -> Table:
    """Per pipeline step of each variant: calls, where errors happen (later steps are
    skipped), latency (ms), billed seconds and cost per call."""
    t = Table(title="Pipeline steps (per call)", title_justify="left")
    _calls_columns(t, ["variant", "step", "app"])
    for c in report.steps:
        t.add_row(c.variant or "–", str(c.step + 1), c.app, *_calls_row(c))
    return t


def shadows_table(report: Report) -> Table:
    """Per mirroring variant: the shadow app against the live answers of the same requests."""
    t = Table(title="Shadow traffic (the shadow vs the live answer of the same requests)",
              title_justify="left")  # fmt: skip
    for col in ("variant", "shadow app", "mirrored", "error rate shadow | live",
                "latency mean shadow | live", "shadow p95", "cost $/1k shadow | live"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("variant", "shadow app") else "right")
    for c in report.shadows:
        t.add_row(
            c.variant or "–", c.app, f"{c.calls:,}",
            f"{w.pct(c.error_rate)} | {w.pct(c.live_error_rate)}",
            f"{w.num(c.latency_mean_ms)} | {w.num(c.live_latency_mean_ms)}",
            w.num(c.latency_p95_ms),
            f"{w.usd_k(c.cost_per_call)} | {w.usd_k(c.live_cost_per_call)}",
        )  # fmt: skip
    return t


def route_table(rules: tuple[CallSummary, ...], title: str) -> Table:
    """Per route rule (and the experiment or app it served): requests, errors, latency
    (ms), billed seconds and cost per request."""
    t = Table(title=title, title_justify="left")
    _calls_columns(t, ["route", "rule", "served by"])
    for c in rules:
        served = f"experiment {c.experiment}" if c.experiment else (c.app or "experiment")
        t.add_row(c.route or "–", c.rule or "–", served, *_calls_row(c))
    return t


def _verdict(c: Comparison) -> Text:
    text = w.verdict_text(c)
    return Text(text, style=VERDICT_STYLE[text])


def comparison_table(report: Report) -> Table:
    """Per metric and treatment: the verdict, difference and lift with their intervals,
    and the engine's figures (p-values, or chance to beat control and risk)."""
    bayes = report.engine == "bayesian"
    interval = "credible interval" if bayes else (
        "confidence sequence" if report.method == "sequential" else "confidence interval"
    )  # fmt: skip
    comparators = list(dict.fromkeys(c.comparator for m in report.metrics for c in m.comparisons))
    single = len(comparators) == 1  # then the title names the comparator
    title = comparators[0] if single else "Treatments vs control"
    t = Table(title=f"{title} ({1 - report.alpha:.0%} {interval})", title_justify="left")
    figures = ["P(better)", "risk"] if bayes else [w.p_label(report.method), "adj. p"]
    columns = ["metric", "role", "comparison", "verdict", "control", "treatment"]
    if single:
        columns.remove("comparison")
    for col in [*columns, "difference", "lift", *figures]:
        t.add_column(
            col, justify="left" if col in ("metric", "role", "comparison", "verdict") else "right"
        )
    for m in report.metrics:
        fmt = w.difference_format(m.metric)
        name = m.metric
        for c in m.comparisons:
            if bayes:
                risk = w.interval(w.shown_interval(name, c.risk), fmt.replace("+", "")) if (
                    c.risk) else w.DASH  # fmt: skip
                extra = [w.chance_text(c), risk]
            else:
                extra = [w.p_value(c.p_value), w.p_value(c.adjusted_p_value)]
            head = [w.metric_label(name), m.role] + ([] if single else [c.comparator])
            t.add_row(
                *head,
                _verdict(c),
                w.num(w.shown(name, c.control_value), "{:.4g}"),
                w.num(w.shown(name, c.treatment_value), "{:.4g}"),
                w.with_interval(w.shown(name, c.difference), w.shown_interval(name, c.ci), fmt),
                w.with_interval(c.lift, c.lift_ci, "{:+.1%}"),
                *extra,
            )
    return t


def _header(report: Report) -> Group:
    srm = report.srm
    srm_style = "bold red" if srm.flagged else ("yellow" if srm.note else "green")
    mark = "⚠ SRM: " if srm.flagged else ("SRM: " if srm.note else "✓ SRM: ")
    multi = (
        f"Units assigned to more than one variant within a phase: {report.multi_exposure_units}"
        + (" (excluded)" if report.multi_exposure_excluded else " (included)")
    )
    return Group(
        Text(
            f"{report.experiment} — {report.status}; {report.scope_label}, since "
            f"{report.phase_started_at:%Y-%m-%d %H:%M:%S} UTC"
        ),
        Text(f"Method: {report.method_label}", style="bold"),
        Text(
            f"Primary metric {report.primary_metric}; guardrails "
            f"{', '.join(report.guardrails) or 'none'}"
        ),
        Text(mark + w.srm_text(report), style=srm_style),
        Text(multi),
    )


def render(report: Report, console: Console, previous: Report | None = None) -> None:
    """Print the whole report; ``previous`` (the phase before, when the report is of a
    newer phase) is summed up in one line beside the decision."""
    console.print(Panel(_header(report), title="Stats report"))
    console.print(variant_table(report))
    if report.rules:
        console.print(route_table(report.rules, "Traffic by route rule"))
    if report.steps:
        console.print(steps_table(report))
    if report.shadows:
        console.print(shadows_table(report))
    console.print(comparison_table(report))
    missing = w.missing_figures(report)
    if missing:
        console.print(Text("Why some figures are missing:", style="dim"))
        for line in missing:
            console.print(Text(f"  {line}", style="dim"))
    if report.method == "sequential" and report.engine == "frequentist":
        console.print(
            Text(
                "Always-valid p-values stay at 1 until the evidence builds up; they and the "
                "confidence sequences stay valid however often you look.",
                style="dim",
            )
        )
    d = report.decision
    head = Text(
        f"Decision: {d.action}" + (f" → {d.variant}" if d.variant else ""),
        style=ACTION_STYLE[d.action],
    )
    lines = [head, *[Text("• " + r) for r in d.reasons], Text(f"Rule: {d.rule}", style="dim")]
    lines += [Text("Note: " + n, style="yellow") for n in report.notes]
    if previous is not None:
        lines.append(
            Text(
                f"A new phase started; the previous {w.phase_result(previous)} "
                "(`--phase N` shows a phase, `--all-phases` pools them)",
                style="cyan",
            )
        )
    console.print(Panel(Group(*lines)))
