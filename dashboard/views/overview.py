"""Overview: every experiment with its status, split, traffic, headline, SRM flag and
last change. Selecting a row opens the experiment."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import access, data, nav
from dashboard.tables import DASH, headline, weights_text

TABLE_KEY = "overview_table"


def _srm_flag(row: data.OverviewRow) -> str:
    r = row.report
    if r is None or not sum(r.srm.observed):
        return DASH
    if r.srm.flagged:
        return f"⚠ mismatch (p={r.srm.p_value:.2g})"
    return "ok"


def _last_change(row: data.OverviewRow) -> str:
    c = row.last_change
    if c is None:
        return DASH
    return f"{c.action} by {c.actor}, {c.at:%Y-%m-%d %H:%M} UTC"


def table(rows: list[data.OverviewRow]) -> pd.DataFrame:
    """The overview table, one row per experiment (newest first)."""
    return pd.DataFrame(
        [
            {
                "experiment": r.view.name,
                "status": r.view.status + (f" ({r.view.winner} won)" if r.view.winner else ""),
                "weights %": weights_text(r.view),
                "units": r.activity.units if r.activity else 0,
                "requests": r.activity.requests if r.activity else 0,
                "primary metric": headline(r.report)
                if r.report
                else f"{r.view.primary_metric}: no data yet",
                "SRM": _srm_flag(r),
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
    )
    st.caption(
        "Primary metric: lift of each treatment over control with its always-valid 95% "
        "confidence interval, p-value and chance to beat control (current phase, "
        "sequential test). Select a row to open the experiment."
    )
