"""Audit log: who changed what, when, per experiment (newest first)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from abplatform import service
from dashboard import data
from dashboard.tables import DASH


def _state(snapshot: dict[str, Any] | None) -> str:
    if not snapshot:
        return DASH
    parts = [str(snapshot.get("status", ""))]
    weights = snapshot.get("weights")
    if weights:
        # Snapshots store fractions; the create entry carries the spec's percents.
        scale = 100.0 if abs(sum(weights) - 1.0) < 1e-6 else 1.0
        parts.append("weights " + "/".join(f"{w * scale:g}" for w in weights))
    if snapshot.get("phase") is not None:
        parts.append(f"phase {snapshot['phase']}")
    if snapshot.get("winner"):
        parts.append(f"winner {snapshot['winner']}")
    if snapshot.get("mode"):
        parts.append(str(snapshot["mode"]))
    if snapshot.get("share") is not None and snapshot.get("step") is not None:
        parts.append(f"rollout step {snapshot['step'] + 1} at {snapshot['share']:g}%")
    return ", ".join(p for p in parts if p)


def _why(after: dict[str, Any] | None) -> str:
    """A safe rollout's reason for the change (with its figures), or an operator's note."""
    after = after or {}
    rollout = after.get("rollout")
    if isinstance(rollout, dict) and rollout.get("reason"):
        return str(rollout["reason"])
    return str(after.get("note") or "")


def table(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """The audit entries, newest first: time (UTC), actor, action, state before/after, and
    why (a rollout's reason with its figures, or an operator's note)."""
    return pd.DataFrame(
        [
            {
                "at (UTC)": f"{e['at']:%Y-%m-%d %H:%M:%S}",
                "actor": e["actor"],
                "action": e["action"],
                "before": _state(e["before"]),
                "after": _state(e["after"]),
                "why": _why(e["after"]),
            }
            for e in reversed(entries)
        ]
    )


def render(name: str | None) -> None:
    """Draw the audit log of experiment ``name``."""
    st.title("Audit log")
    if name is None:
        st.info("No experiments yet.")
        return
    try:
        entries = data.audit_entries(name)
    except service.NotFoundError as exc:
        st.error(str(exc))
        return
    st.caption(f"{len(entries)} entries for **{name}**, newest first.")
    st.dataframe(table(entries), hide_index=True, key="audit_table", width="stretch")
    with st.expander("Raw entries (JSON)"):
        st.code(json.dumps(list(reversed(entries)), default=str, indent=2), language="json")
