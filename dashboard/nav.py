"""Page navigation: the sidebar's page and experiment choice, mirrored in the URL.

``?page=experiment&experiment=img-v2`` opens that page directly; the query parameters
follow the sidebar as it changes. Callbacks use :func:`go` to switch pages (widget state
may only be changed before the widgets are drawn, i.e. in a callback).
"""

from __future__ import annotations

import streamlit as st

PAGES = {
    "overview": "Overview",
    "experiment": "Experiment",
    "create": "Create experiment",
    "audit": "Audit log",
    "routes": "Routes",
}
SLUGS = {label: slug for slug, label in PAGES.items()}
PAGE_KEY = "nav"
EXPERIMENT_KEY = "experiment"
LAST_KEY = "_last_experiment"


def go(page: str, experiment: str | None = None) -> None:
    """Switch to ``page`` (a slug) and optionally to ``experiment``; call in a callback."""
    st.session_state[PAGE_KEY] = PAGES[page]
    if experiment is not None:
        st.session_state[EXPERIMENT_KEY] = experiment


def sidebar(names: list[str]) -> tuple[str, str | None]:
    """Draw the page and experiment choice; return ``(page slug, experiment or None)``."""
    if PAGE_KEY not in st.session_state:
        st.session_state[PAGE_KEY] = PAGES.get(str(st.query_params.get("page")), "Overview")
    page = SLUGS[st.radio("Page", list(PAGES.values()), key=PAGE_KEY)]
    experiment = None
    if names:
        current = st.session_state.get(EXPERIMENT_KEY)
        if current not in names:
            candidates = (st.query_params.get("experiment"), st.session_state.get(LAST_KEY))
            st.session_state[EXPERIMENT_KEY] = next((c for c in candidates if c in names), names[0])
        if page in ("experiment", "audit"):
            experiment = st.selectbox("Experiment", names, key=EXPERIMENT_KEY)
        else:
            experiment = st.session_state[EXPERIMENT_KEY]
        st.session_state[LAST_KEY] = experiment
    st.query_params["page"] = page
    if experiment is not None and page in ("experiment", "audit"):
        st.query_params["experiment"] = experiment
    else:
        st.query_params.pop("experiment", None)
    return page, experiment
