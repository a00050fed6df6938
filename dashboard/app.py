"""The operator dashboard: ``streamlit run dashboard/app.py`` (or ``abplatform up``).

Reads ``DATABASE_URL`` (set by ``abplatform dashboard`` and ``abplatform up``), the
operator password ``ABPLATFORM_OPERATOR_PASSWORD`` (or Streamlit secrets, or OIDC via
``[auth]`` secrets) and the refresh period ``ABPLATFORM_DASHBOARD_REFRESH_S``.
Deep links: ``?page=experiment&experiment=<name>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:  # `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the project
    import dashboard  # noqa: F401
except ImportError:  # pragma: no cover - only without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from abplatform.service.database import DatabaseUnavailableError
from dashboard import access, context, data, nav
from dashboard.views import audit, create, experiment, overview, routes


def main() -> None:
    """Draw the sidebar and the chosen page."""
    st.set_page_config(page_title="abplatform", page_icon="🧪", layout="wide")
    try:
        names = data.experiment_names()
    except DatabaseUnavailableError as exc:
        st.error(str(exc))
        return
    with st.sidebar:
        st.header("abplatform")
        page, name = nav.sidebar(names)
        auto = st.toggle("Auto-refresh results", value=True, key="auto_refresh")
        refresh = context.refresh_s()
        if auto and refresh:
            st.caption(f"Results refresh every {refresh:g} s.")
        st.divider()
        access.sidebar_login()
    context.show_flash()
    if page != "create":
        st.session_state.pop(create.ERRORS_KEY, None)  # stale form errors
    if page == "overview":
        overview.render()
    elif page == "create":
        create.render()
    elif page == "audit":
        audit.render(name)
    elif page == "routes":
        routes.render()
    else:
        experiment.render(name, refresh if auto and refresh else None)


main()
