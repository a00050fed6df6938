"""Safe rollouts on the dashboard: the banner and an operator's controls on the experiment
page, and the rollout fields of the create form.

The banner says where the rollout stands (ramping, paused, rolled back, promoted, ended),
its step and share, when the controller checks next, and its last decision with the
reason and each guardrail's figures. Operators may pause (with a reason), resume, or
override: advance, roll back or promote now; each passes the rollout version they saw.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from abplatform import service
from abplatform.core import metrics as catalogue
from abplatform.core.rollout import (
    DEFAULT_MARGINS,
    Margin,
    RolloutPlan,
    RolloutView,
    format_regression,
    format_value,
)
from abplatform.service import rollouts
from dashboard import access, context

STATUS = {
    "ramping": (st.info, ":blue-badge[ramping]"),
    "paused": (st.warning, ":orange-badge[paused]"),
    "rolled_back": (st.error, ":red-badge[rolled back]"),
    "promoted": (st.success, ":green-badge[promoted]"),
    "ended": (st.info, ":gray-badge[ended]"),
}
OVERRIDES = {"advance": "Advance to the next step", "roll_back": "Roll back to the control",
             "promote": "Promote the treatment"}  # fmt: skip


def _next_check(last: dict[str, Any]) -> str:
    raw = last.get("next_check_at")
    if not raw:
        return ""
    due = (datetime.fromisoformat(raw) - datetime.now(UTC)).total_seconds()
    return f" · next check {'due' if due <= 0 else f'in {due:.0f} s'}"


def guardrail_rows(last: dict[str, Any]) -> list[dict[str, str]]:
    """The last decision's guardrails as table rows (words, not raw numbers)."""
    rows = []
    for g in (last.get("evidence") or {}).get("guardrails", []):
        unit = catalogue.metric(g["metric"]).unit
        kind = g["margin"]["kind"]

        def reg(x: float | None, unit: str = unit, kind: str = kind) -> str:
            return format_regression(x, kind, unit, signed=True)

        rows.append({
            "guardrail": g["metric"], "margin": reg(g["margin"]["value"]),
            "control": format_value(g["control_value"], unit),
            "treatment": format_value(g["treatment_value"], unit),
            "regression": reg(g["regression"]), "bounds": f"{reg(g['lower'])} … {reg(g['upper'])}",
            "verdict": g["verdict"],
        })  # fmt: skip
    return rows


def banner(name: str) -> RolloutView | None:
    """Draw the rollout banner of experiment ``name`` (nothing when it has no rollout)."""
    with context.session() as s:
        view = rollouts.find_rollout(s, name)
    if view is None:
        return None
    show, badge = STATUS.get(view.status, (st.info, view.status))
    last = dict(view.last_action or {})
    steps = " → ".join(f"{x:g}%" for x in view.plan.steps)
    head = f"**Safe rollout** {badge} · {view.step_label} (ramp {steps} → 100%)"
    head += _next_check(last) if view.status == "ramping" else ""
    decision = (
        f"\n\nLast decision: **{last['kind']}** — {last['reason']}"
        if last else "\n\nNot evaluated yet: the controller checks every few seconds."
    )  # fmt: skip
    note = f"\n\n{view.note}" if view.note else ""
    show(head + decision + note)
    rows = guardrail_rows(last)
    if rows:
        st.dataframe(rows, hide_index=True, key="rollout_guardrails")
    return view


def _act(run: Callable[[str], RolloutView], done: str) -> None:
    try:
        actor = access.require_operator()
        view = run(actor)
    except (PermissionError, service.ServiceError) as exc:
        context.flash("error", f"Nothing was changed: {exc}", scope="rollout")
        return
    context.flash("success", f"{done}: the rollout is {view.status} at {view.step_label}.",
                  scope="rollout")  # fmt: skip


def _pause(name: str, version: int) -> None:
    reason = str(st.session_state.get("rollout_reason", ""))

    def run(actor: str) -> RolloutView:
        with context.session() as s:
            return rollouts.pause_rollout(s, name, actor=actor, reason=reason,
                                          expected_version=version)  # fmt: skip

    _act(run, "Paused")


def _resume(name: str, version: int) -> None:
    def run(actor: str) -> RolloutView:
        with context.session() as s:
            return rollouts.resume_rollout(s, name, actor=actor, expected_version=version)

    _act(run, "Resumed")


def _override(name: str, version: int) -> None:
    if not st.session_state.get("rollout_confirm"):
        context.flash("error", "Tick the confirmation first.", scope="rollout")
        return
    command = st.session_state.get("rollout_override", "advance")
    reason = str(st.session_state.get("rollout_reason", ""))

    def run(actor: str) -> RolloutView:
        with context.session() as s:
            return rollouts.override_rollout(s, name, command, actor=actor, reason=reason,
                                             expected_version=version)  # fmt: skip

    _act(run, f"Override ({OVERRIDES[command].lower()}) applied")


def controls(view: RolloutView) -> None:
    """An operator's pause / resume / override of a live rollout."""
    context.show_flash("rollout")
    if view.status not in ("ramping", "paused") or not access.is_operator():
        return
    with st.expander("Operate the rollout (pause, resume, override)"):
        st.text_input("Reason (kept with the rollout and in the audit log)", key="rollout_reason")
        left, right = st.columns(2)
        if view.status == "ramping":
            left.button("Pause the rollout", key="rollout_pause", on_click=_pause,
                        args=(view.experiment, view.version))  # fmt: skip
        else:
            left.button("Resume the rollout", key="rollout_resume", on_click=_resume,
                        args=(view.experiment, view.version))  # fmt: skip
        right.selectbox("Override", list(OVERRIDES), format_func=OVERRIDES.__getitem__,
                        key="rollout_override")  # fmt: skip
        right.checkbox("I override the controller's decision", key="rollout_confirm")
        right.button("Apply the override", key="rollout_apply", on_click=_override,
                     args=(view.experiment, view.version))  # fmt: skip


# ----------------------------------------------------------------------------- create form

FORM_MARGINS = ("error_rate", "fallback_rate", "latency_p95", "latency_p99")


def form_fields() -> None:
    """The create form's rollout fields (inside the form)."""
    st.checkbox("Roll out safely: ramp the treatment in steps, advance on evidence, roll "
                "back by itself (two variants)", key="create_rollout")  # fmt: skip
    c1, c2, c3, c4 = st.columns(4)
    c1.text_input("Ramp steps, treatment %", value="5,25,50", key="create_rollout_steps")
    c2.number_input("Min minutes per step", min_value=0.0, value=10.0, step=1.0,
                    key="create_rollout_minutes")  # fmt: skip
    c3.number_input("Min treatment units per step", min_value=1, value=100, step=10,
                    key="create_rollout_units")  # fmt: skip
    c4.selectbox("Promote when", ["win", "safe"], key="create_rollout_promote",
                 help="win: the primary metric must be better at the last step; safe: "
                 "guardrails within their margins suffice.")  # fmt: skip
    cols = st.columns(len(FORM_MARGINS))
    for col, name in zip(cols, FORM_MARGINS, strict=True):
        m = DEFAULT_MARGINS[name]
        unit = "points" if m.kind == "absolute" else "%"
        col.number_input(f"{name} may rise at most ({unit})", min_value=0.0,
                         value=m.value * 100, step=1.0, key=f"create_margin_{name}")  # fmt: skip


def plan_from_form(fallback: bool) -> RolloutPlan | None:
    """The plan the form asks for (None: no rollout); the fallback rate is watched only
    when the experiment falls back to the control.

    Raises:
        InvalidInputError: the steps are not numbers, or the plan breaks a rule.
    """
    ss = st.session_state
    if not ss.get("create_rollout"):
        return None
    try:
        steps = tuple(
            float(x) for x in str(ss.get("create_rollout_steps", "")).split(",") if x.strip()
        )
    except ValueError as exc:
        raise service.InvalidInputError(
            "ramp steps must be comma-separated percents, e.g. 5,25,50"
        ) from exc
    margins = tuple(
        Margin(name, float(ss.get(f"create_margin_{name}", 0.0)) / 100, DEFAULT_MARGINS[name].kind)
        for name in FORM_MARGINS if fallback or name != "fallback_rate"
    )  # fmt: skip
    return RolloutPlan(
        steps=steps, min_duration_s=float(ss.get("create_rollout_minutes", 10.0)) * 60,
        min_units=int(ss.get("create_rollout_units", 100)), margins=margins,
        promote_when=ss.get("create_rollout_promote", "win"),
    ).validate()  # fmt: skip


__all__ = ["banner", "controls", "form_fields", "guardrail_rows", "plan_from_form"]
