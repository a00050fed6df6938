"""Overview: every experiment with its status, split, traffic, headline, SRM flag and
last change. Selecting a row opens the experiment."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import access, data, nav
from dashboard.tables import DASH, decision_text, headline, pinned, weights_text

TABLE_KEY = "overview_table"


def _srm_flag(row: data.OverviewRow) -> str:
    r = row.report
    if r is None or not sum(r.srm.observed) or r.srm.note:
        return DASH
    if r.srm.flagged:
        return f"⚠ mismatch (p={r.srm.p_value:.2g})"
    return "ok"


def _phase(row: data.OverviewRow) -> str:
    r = row.report
    number = r.phase if r else row.view.current_phase.number
    total = len(row.view.phases)
    return f"{number} of {total}" if total > 1 else str(number)


def _all_phases(row: data.OverviewRow) -> str:
    a = row.activity
    if a is None:
        return DASH
    return f"{a.units:,} units, {a.requests:,} requests"


def _last_change(row: data.OverviewRow) -> str:
    c = row.last_change
    if c is None:
        return DASH
    return f"{c.action} by {c.actor}, {c.at:%Y-%m-%d %H:%M} UTC"


def table(rows: list[data.OverviewRow]) -> pd.DataFrame:
    """The overview table, one row per experiment (newest first). Units, requests, the
    headline, recommendation and SRM are those of the analysed phase (the report's
    default, as on the experiment page); "all phases" counts every phase."""
    return pd.DataFrame(
        [
            {
                "experiment": r.view.name,
                "status": r.view.status + (f" ({r.view.winner} won)" if r.view.winner else ""),
                "phase": _phase(r),
                "weights %": weights_text(r.view),
                "units": sum(v.units for v in r.report.variants) if r.report else 0,
                "requests": sum(v.requests for v in r.report.variants) if r.report else 0,
                "recommendation": decision_text(r.report) if r.report else DASH,
                "primary metric": headline(r.report)
                if r.report
                else f"{r.view.primary_metric}: no data yet",
                "SRM": _srm_flag(r),
                "all phases": _all_phases(r),
                "last change": _last_change(r),
            }
            for r in rows
        ]
    )


def _open_selected() -> None:
    selection = st.session_state.get(TABLE_KEY) or {}
    rows = selection.get("selection", {}).get("rows", [])
    names = st.session_state.get("_overview_names", [])
    if rows and rows[0] < len(names):
        nav.go("experiment", names[rows[0]])


def render() -> None:
    """Draw the overview page."""
    st.title("Experiments")
    rows = data.overview()
    if not rows:
        st.info("No experiments yet.")
        if access.is_operator():
            st.button(
                "Create an experiment", key="overview_create", on_click=nav.go, args=("create",)
            )
        return
    statuses = pd.Series([r.view.status for r in rows]).value_counts()
    cols = st.columns(4)
    for col, status in zip(cols, ("running", "draft", "concluded", "stopped"), strict=True):
        col.metric(status.capitalize(), int(statuses.get(status, 0)))
    st.session_state["_overview_names"] = [r.view.name for r in rows]
    st.dataframe(
        table(rows),
        key=TABLE_KEY,
        on_select=_open_selected,
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        column_config=pinned("experiment"),
    )
    st.caption(
        "Units, requests, recommendation and primary metric are those of the analysed "
        "phase (the current one; for a concluded experiment the one before its promotion), "
        "under each experiment's default test: the always-valid sequential test for live "
        "experiments, the fixed-horizon test for imported ones. Primary metric: lift of "
        "each treatment over control with its 95% interval and p-value. Select a row to "
        "open the experiment."
    )
