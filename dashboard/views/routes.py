"""Routes: each routing config's rules (first match wins) and what its traffic did per
rule: requests, errors, latency, billed seconds and cost per request; and the price
table that gives each request its cost."""

from __future__ import annotations

import streamlit as st

from abplatform import service
from dashboard import context, patterns


def render() -> None:
    """Draw the routes page."""
    st.title("Routes")
    st.caption(
        'A caller sends `POST /` with `"route": NAME` instead of `"experiment"`; the first '
        "rule whose condition the request's arguments satisfy picks the app or experiment. "
        "Create and change routes with `abplatform route create|update`."
    )
    with context.session() as session:
        views = service.list_routes(session)
    if not views:
        st.info("No routes yet.")
    else:
        names = [v.name for v in views]
        name = st.selectbox("Route", names, key="route_choice")
        view = next(v for v in views if v.name == name)
        with context.session() as session:
            report = service.route_report(session, name)
        st.markdown(
            f"**{view.name}** · version {view.version} · changed "
            f"{view.updated_at:%Y-%m-%d %H:%M} UTC" + (f" · {view.description}" if view.description
                                                      else "")
        )  # fmt: skip
        if view.arguments:
            st.caption("Arguments: " + ", ".join(
                f"`{n}` {a['type']}" + (f" = {a['default']}" if a.get("default") is not None
                                         else "") for n, a in view.arguments.items()))  # fmt: skip
        st.subheader("Rules (first match wins)")
        st.dataframe(patterns.route_rules(view.rules), hide_index=True, key="route_rules")
        st.subheader("Traffic per rule (all time)")
        if report.rules:
            st.dataframe(patterns.rules_table(report.rules), hide_index=True, key="route_traffic")
        else:
            st.info("No requests through this route yet.")
    with st.expander("Prices (what a request costs)"):
        try:
            st.dataframe(patterns.prices_table(service.price_rows()), hide_index=True,
                         key="prices_table")  # fmt: skip
        except service.InvalidInputError as exc:
            st.error(str(exc))
