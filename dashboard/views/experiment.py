"""Experiment page: the stats report with charts, and (for operators) the actions.

The page body is a Streamlit fragment that reruns itself every refresh period, so the
results follow new traffic without a reload; the sidebar stays put. Results come from
:func:`dashboard.data.experiment_results` (report, cumulative lift, latency histogram).

Actions, each behind a confirmation and re-checked against the operator login:
start (draft), change the split (sticky or re-randomize, with a preview of the share of
units that would move), promote a winner (the report's recommendation preselected),
roll back to the control, stop. Each passes the config version the operator saw, so a
change made meanwhile by someone else is refused instead of overwritten.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from abplatform import service
from abplatform.core import wording
from abplatform.core.analysis import default_method
from abplatform.core.report import Report
from abplatform.core.series import MIN_CHART_UNITS
from dashboard import access, charts, context, data, patterns, tables
from dashboard.views import rollout

ACTION_PREFIXES = ("split_", "promote_", "end_", "start_")
MODES = {
    "sticky": "Sticky: keep assignments, move the fewest units",
    "rerandomize": "Re-randomize: new hash seed, everyone is drawn again",
}
STATUS_BADGE = {
    "draft": ":gray-badge[draft]",
    "running": ":green-badge[running]",
    "concluded": ":blue-badge[concluded]",
    "stopped": ":red-badge[stopped]",
}


# ----------------------------------------------------------------------------- actions


def _write(action: Callable[[str], str]) -> None:
    """Run a write as the logged-in operator; report the outcome as a flash message."""
    try:
        actor = access.require_operator()
        message = action(actor)
    except (PermissionError, service.ServiceError) as exc:
        context.flash("error", f"Nothing was changed: {exc}", scope="actions")
        return
    st.session_state["_actions_for"] = None  # reset the action widgets
    context.flash("success", message, scope="actions")


def _weights_from_state(view_keys: list[str]) -> list[float]:
    return [float(st.session_state.get(f"split_weight_{k}", 0.0)) for k in view_keys]


def _apply_split(name: str, version: int, keys: list[str]) -> None:
    if not st.session_state.get("split_confirm"):
        context.flash("error", "Tick the confirmation first.", scope="actions")
        return
    weights = _weights_from_state(keys)
    mode = st.session_state.get("split_mode", "sticky")

    def run(actor: str) -> str:
        with context.session() as s:
            view = service.set_weights(
                s, name, weights, actor=actor, mode=mode, expected_version=version
            )
        return (
            f"New split {tables.weights_text(view)} ({mode}); phase "
            f"{view.current_phase.number} started. Routers use it within two config "
            "refresh periods."
        )

    _write(run)


def _promote(name: str, version: int, variant: str | None, confirm_key: str) -> None:
    if not st.session_state.get(confirm_key):
        context.flash("error", "Tick the confirmation first.", scope="actions")
        return
    if not variant:
        context.flash("error", "Choose the variant to promote.", scope="actions")
        return

    def run(actor: str) -> str:
        with context.session() as s:
            service.promote(s, name, variant, actor=actor, expected_version=version)
        return f"Promoted **{variant}**: it gets 100% of traffic; the experiment is concluded."

    _write(run)


def _promote_chosen(name: str, version: int) -> None:
    _promote(name, version, st.session_state.get("promote_variant"), "promote_confirm")


def _stop(name: str, version: int) -> None:
    if not st.session_state.get("end_confirm"):
        context.flash("error", "Tick the confirmation first.", scope="actions")
        return

    def run(actor: str) -> str:
        with context.session() as s:
            service.stop_experiment(s, name, actor=actor, expected_version=version)
        return "Stopped: the router now refuses this experiment's requests."

    _write(run)


def _start(name: str, version: int) -> None:
    def run(actor: str) -> str:
        with context.session() as s:
            service.start_experiment(s, name, actor=actor, expected_version=version)
        return "Started: the router serves this experiment now."

    _write(run)


def _reset_actions_if_changed(view: service.ExperimentView) -> None:
    marker = (view.name, view.version)
    if st.session_state.get("_actions_for") != marker:
        for key in [k for k in st.session_state if str(k).startswith(ACTION_PREFIXES)]:
            del st.session_state[key]
        st.session_state["_actions_for"] = marker


def _split_section(view: service.ExperimentView, report: Report) -> None:
    st.subheader("Change the split")
    keys = [v.key for v in view.variants]
    cols = st.columns(len(keys))
    for col, v in zip(cols, view.variants, strict=True):
        col.number_input(
            f"{v.key} %", min_value=0.0, max_value=100.0, value=float(v.weight), step=1.0,
            key=f"split_weight_{v.key}",
        )  # fmt: skip
    mode = st.radio(
        "Reassignment",
        list(MODES),
        format_func=MODES.__getitem__,
        key="split_mode",
        horizontal=True,
    )
    weights = _weights_from_state(keys)
    valid = False
    try:
        with context.session() as s:
            preview = service.preview_weight_change(s, view.name, weights, mode)
    except service.InvalidInputError as exc:
        st.error(f"Invalid split: {exc}")
    else:
        valid = True
        units = sum(report.srm.observed) if report.phase == view.current_phase.number else 0
        estimate = f" (about {preview.moved_fraction * units:,.0f} of the {units:,} units seen)"
        st.info(
            f"{preview.moved_fraction:.1%} of units would change variant"
            + (estimate if units else "")
            + f": {'/'.join(f'{w:g}' for w in preview.old_weights)} → "
            f"{'/'.join(f'{w:g}' for w in preview.new_weights)}. A new phase starts and the "
            "report restarts from it."
        )
    confirm = st.checkbox("I confirm the new split", key="split_confirm", disabled=not valid)
    st.button(
        "Apply new split",
        key="split_apply",
        disabled=not (valid and confirm),
        on_click=_apply_split,
        args=(view.name, view.version, keys),
    )


def _promote_section(view: service.ExperimentView, report: Report) -> None:
    st.subheader("Promote or stop")
    keys = [v.key for v in view.variants]
    decision = report.decision
    recommended = decision.variant if decision.action in ("ship", "roll back") else None
    st.caption(
        f"The report recommends: **{tables.decision_text(report)}**"
        + (" (preselected)." if recommended else "; choose a winner yourself to end it early.")
    )
    choice = st.selectbox(
        "Winner",
        keys,
        index=keys.index(recommended) if recommended in keys else None,
        format_func=lambda k: f"{k} (recommended)" if k == recommended else k,
        placeholder="choose the variant to promote",
        key="promote_variant",
    )
    confirm = st.checkbox(
        "I confirm: send 100% of traffic to the winner and conclude the experiment",
        key="promote_confirm",
    )
    st.button(
        f"Promote {choice}" if choice else "Promote",
        key="promote_apply",
        type="primary",
        disabled=not (confirm and choice),
        on_click=_promote_chosen,
        args=(view.name, view.version),
    )
    control = view.control.key
    end_confirm = st.checkbox("I confirm ending the experiment", key="end_confirm")
    left, right = st.columns(2)
    left.button(
        f"Roll back to {control}",
        key="end_rollback",
        disabled=not end_confirm,
        on_click=_promote,
        args=(view.name, view.version, control, "end_confirm"),
        help="Promote the control: every request is served by it; the experiment concludes.",
    )
    right.button(
        "Stop serving",
        key="end_stop",
        disabled=not end_confirm,
        on_click=_stop,
        args=(view.name, view.version),
        help="The router refuses this experiment's requests from now on.",
    )


def actions(view: service.ExperimentView, report: Report) -> None:
    """The write actions for operators; a read-only note for everyone else."""
    st.divider()
    context.show_flash("actions")
    if not access.is_operator():
        st.info("Read-only: log in as an operator (sidebar) to change the split, promote or stop.")
        return
    _reset_actions_if_changed(view)
    if view.status == "draft":
        st.button(
            "Start experiment", key="start_apply", type="primary", on_click=_start,
            args=(view.name, view.version),
        )  # fmt: skip
    if view.status in ("draft", "running"):
        _split_section(view, report)
        _promote_section(view, report)
    else:
        winner = f", winner **{view.winner}**" if view.winner else ""
        st.info(f"This experiment is {view.status}{winner}: it can no longer be changed.")


# ----------------------------------------------------------------------------- results


ALL_PHASES = "all"


def _phase_label(view: service.ExperimentView, choice: int | str | None) -> str:
    if choice is None:
        return f"default (phase {data.analysed_phase(view, None).number})"
    if choice == ALL_PHASES:
        return "all phases, pooled as strata"
    return f"phase {choice}"


def show_all_phases() -> None:
    """Callback: switch the analysis to all phases (the new-phase banner's button)."""
    st.session_state["an_phase"] = ALL_PHASES


def _settings(view: service.ExperimentView) -> data.AnalysisSettings:
    with st.expander("Analysis settings"):
        c1, c2, c3, c4, c5 = st.columns(5)
        engine = c1.radio(
            "Engine",
            ["frequentist", "bayesian"],
            format_func={"frequentist": "frequentist (p-values)",
                         "bayesian": "Bayesian (chance to win, flat prior)"}.get,
            key="an_engine",
        )  # fmt: skip
        default = default_method(view)
        methods = [default, *[m for m in ("sequential", "fixed") if m != default]]
        method = c2.radio(
            "Test",
            methods,
            format_func={"sequential": "sequential (always valid)", "fixed": "fixed horizon"}.get,
            key="an_method",
            disabled=engine == "bayesian",
            help="Default for this experiment: "
            + ("sequential, safe to watch while it runs." if default == "sequential"
               else "fixed horizon: an imported, finished test is analysed once."),
        )  # fmt: skip
        alpha = c3.selectbox("α", [0.05, 0.01, 0.10], key="an_alpha")
        correction = c4.selectbox("Correction", ["holm", "bh", "none"], key="an_correction")
        choices: list[int | str | None] = [None]
        if len([p for p in view.phases if sum(w > 0 for w in p.weights) >= 2]) > 1:
            choices.append(ALL_PHASES)
        choices += [p.number for p in reversed(view.phases)]
        if st.session_state.get("an_phase") not in choices:
            st.session_state.pop("an_phase", None)
        phase = c5.selectbox(
            "Phase", choices, format_func=lambda n: _phase_label(view, n), key="an_phase"
        )
    return data.AnalysisSettings(
        method=method,
        alpha=float(alpha),
        correction=correction,
        phase=phase if isinstance(phase, int) else None,
        chart_metric=st.session_state.get("an_metric"),
        engine=engine,
        all_phases=phase == ALL_PHASES,
    )


def _header(view: service.ExperimentView) -> None:
    st.title(view.name)
    phase = view.current_phase
    st.markdown(
        f"{STATUS_BADGE.get(view.status, view.status)} · phase {phase.number} since "
        f"{phase.started_at:%Y-%m-%d %H:%M} UTC · split **{tables.weights_text(view)}** · "
        f"coverage {view.coverage:g}% · primary metric **{view.primary_metric}** · "
        f"guardrails {', '.join(view.guardrails) or 'none'}"
        + (f" · winner **{view.winner}**" if view.winner else "")
    )
    if view.description:
        st.caption(view.description)
    st.caption(
        f"seed `{phase.hash_seed}` · hash v{view.hash_version} · config version {view.version}"
        + " · variants: "
        + ", ".join(f"{v.key}={v.model_version} ({v.backend_app_id})" for v in view.variants)
    )


def _summary(report: Report) -> None:
    srm = report.srm
    if srm.note and not sum(srm.observed):
        st.info(f"No traffic in this {'analysis' if report.all_phases else 'phase'} yet.")
    elif srm.flagged:
        st.error(
            f"Sample ratio mismatch: {tables.srm_text(report)}. Fix assignment first.", icon="⚠️"
        )
    elif srm.note:
        st.info(f"Sample ratio not checked: {srm.note}.")
    else:
        st.success(f"No sample ratio mismatch: {tables.srm_text(report)}.")
    d = report.decision
    text = f"**Recommendation: {tables.decision_text(report)}.** " + " ".join(
        f"{r}." for r in d.reasons
    )
    {"ship": st.success, "roll back": st.error}.get(d.action, st.info)(text)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Units", f"{sum(v.units for v in report.variants):,}")
    c2.metric("Requests", f"{sum(v.requests for v in report.variants):,}")
    c3.metric(
        "Units in more than one variant",
        f"{report.multi_exposure_units:,}",
        help="Assigned more than one variant within a phase. "
        + ("Excluded from the analysis." if report.multi_exposure_excluded else "Included."),
    )
    c4.metric("Feedback", f"{sum(v.feedback_count for v in report.variants):,}")


def _new_phase(view: service.ExperimentView, results: data.ExperimentResults) -> None:
    """After a weight change: say a new phase started, show the previous phase's result
    beside it, and offer the all-phases analysis."""
    report, previous = results.report, results.previous
    if previous is None:
        return
    phase = view.phase(report.phase)
    units = sum(v.units for v in report.variants)
    left, right = st.columns([4, 1])
    left.info(
        f"**Phase {phase.number} started {phase.started_at:%Y-%m-%d %H:%M} UTC** "
        f"({phase.reason or 'new phase'}; {units:,} units so far). The previous "
        f"{wording.phase_result(previous)}."
    )
    right.button(
        "Show all phases",
        key="an_all_phases",
        on_click=show_all_phases,
        help="Pool every phase as a stratum, each with its own weights.",
    )


def _comparisons(report: Report, key: str, metrics: tuple[str, ...] | None = None) -> None:
    frame = tables.comparison_table(report, metrics)
    if frame.empty:
        return
    st.dataframe(
        frame,
        hide_index=True,
        key=key,
        column_config=tables.comparison_config(report),
    )


def results(view: service.ExperimentView, results: data.ExperimentResults) -> None:
    """The report: summary, tables and charts."""
    report = results.report
    st.caption(
        f"{report.scope_label.capitalize()} · {report.method_label} · results as of "
        f"{results.computed_at:%H:%M:%S} UTC"
        + (" · newer data are being analysed" if results.stale else "")
    )
    _new_phase(view, results)
    _summary(report)
    st.subheader("Variants")
    st.dataframe(
        tables.variant_table(report),
        hide_index=True,
        key="variant_table",
        column_config=tables.pinned("variant"),
    )
    _patterns(view, report)
    st.subheader(tables.comparator_title(report))
    _comparisons(report, "comparison_table")
    for line in wording.missing_figures(report):
        st.caption(f"No figure: {line}.")
    if report.engine == "frequentist" and report.method == "sequential":
        st.caption(
            "Always-valid p-values stay at 1 until the evidence builds up; they and the "
            "confidence sequences (CS) stay valid however often the page refreshes."
        )
    elif report.engine == "bayesian":
        st.caption(
            "Chance to beat control under a flat prior, against the control; not corrected "
            "for multiple comparisons and not protected against peeking."
        )
    forest = charts.forest_plot(report)
    if forest is not None:
        st.markdown("**Lift with its intervals**")
        st.altair_chart(forest, key="forest_chart", height=charts.forest_height(report))
    _charts(view, results)
    st.subheader("Latency percentiles")
    latency_metrics = ("latency_mean", "latency_p50", "latency_p95", "latency_p99")
    st.dataframe(
        tables.variant_table(report)[
            ["variant", "requests", "latency mean ms", "p50 ms", "p95 ms", "p99 ms"]
        ],
        hide_index=True,
        key="latency_table",
    )
    _comparisons(report, "latency_comparisons", latency_metrics)
    for note in report.notes:
        st.caption(f"Note: {note}")


def _patterns(view: service.ExperimentView, report: Report) -> None:
    """How the variants are served (pipelines, hints, shadows, namespace) and the
    breakdowns of the routing patterns: route rules, pipeline steps, shadow traffic."""
    served = [f"**{v.key}**: {v.calls_text}" for v in view.variants
              if v.calls_text != v.backend_app_id]  # fmt: skip
    if view.namespace_text:
        served.append(f"namespace **{view.namespace_text}** (mutually exclusive with the "
                      "other experiments of the namespace)")  # fmt: skip
    if served:
        st.caption(" · ".join(served))
    if report.rules:
        st.markdown("**Traffic by route rule**")
        st.dataframe(patterns.rules_table(report.rules), hide_index=True, key="rules_table")
    if report.steps:
        st.markdown("**Pipeline steps** (per call; later steps are skipped after a failure)")
        st.dataframe(patterns.steps_table(report.steps), hide_index=True, key="steps_table")
    if report.shadows:
        st.markdown("**Shadow traffic** (the shadow against the live answer of the same "
                    "requests; never served)")  # fmt: skip
        st.dataframe(patterns.shadows_table(report.shadows), hide_index=True,
                     key="shadows_table")  # fmt: skip


def _charts(view: service.ExperimentView, results: data.ExperimentResults) -> None:
    report = results.report
    shown = data.analysed_phase(view, None if report.all_phases else report.phase).number
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Cumulative lift with its confidence sequence (phase {shown})**")
        metrics = [m.metric for m in report.metrics] or [view.primary_metric]
        st.selectbox(
            "Metric",
            metrics,
            index=metrics.index(view.primary_metric) if view.primary_metric in metrics else 0,
            key="an_metric",
            label_visibility="collapsed",
        )
        keys = [v.key for v in view.variants]
        chart = charts.cumulative_chart(results.cumulative, keys) if results.cumulative else None
        if view.source != "live":
            st.caption("Imported results have no request log: no lift over time.")
        elif chart is None:
            st.caption(
                f"Not enough data yet for a lift over time (it starts at "
                f"{MIN_CHART_UNITS} units in each arm)."
            )
        else:
            st.altair_chart(chart, key="cumulative_chart", height=charts.CHART_HEIGHT)
    with right:
        st.markdown("**Latency distribution (successful requests)**")
        chart = charts.latency_chart(results.latency, keys)
        if chart is None:
            st.caption("No successful requests" + (" yet." if view.source == "live" else "."))
        else:
            st.altair_chart(chart, key="latency_chart", height=charts.CHART_HEIGHT)


def body(name: str) -> None:
    """The page body (run as a self-refreshing fragment by :func:`render`)."""
    try:
        view = data.experiment(name)
    except service.NotFoundError as exc:
        st.error(str(exc))
        return
    _header(view)
    ramp = rollout.banner(name)
    if ramp is not None:
        rollout.controls(ramp)
    settings = _settings(view)
    try:
        found = data.experiment_results(view, settings)
    except service.ServiceError as exc:
        st.error(str(exc))
        return
    results(view, found)
    actions(view, found.report)


def render(name: str | None, refresh_s: float | None) -> None:
    """Draw the experiment page; it reruns every ``refresh_s`` seconds (None: never)."""
    if name is None:
        st.info("No experiments yet: create one first.")
        return
    st.fragment(body, run_every=refresh_s)(name)
