"""Per-process resources and per-run context of the dashboard.

* The database: :func:`database` connects once per URL (``DATABASE_URL``, read on every
  run; required) and applies migrations, cached with
  ``st.cache_resource`` keyed on the URL, so a test that points ``DATABASE_URL`` at a
  fresh database gets its own connection pool.
* The result store (:mod:`dashboard.store`), one per process.
* Settings read from the environment on every run: the refresh period.
* Flash messages that survive the rerun after an action.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from abplatform.service import database as db_module
from abplatform.service.database import Session
from dashboard.store import ResultStore

REFRESH_ENV = "ABPLATFORM_DASHBOARD_REFRESH_S"
DEFAULT_REFRESH_S = 10.0
FLASH_S = 15.0
"""How long a confirmation or error message stays after an action (seconds)."""


def database_url() -> str | None:
    """``DATABASE_URL`` as set now (None: unset, which the dashboard refuses)."""
    return os.environ.get("DATABASE_URL") or None


@st.cache_resource(show_spinner="Connecting to PostgreSQL…", max_entries=16)
def _database(url: str | None) -> db_module.Database:
    if not url:
        raise db_module.DatabaseUnavailableError(
            "DATABASE_URL is not set: the dashboard needs the experiment database "
            "(postgresql://user:pass@host:5432/db). 'abplatform dashboard' and "
            "'abplatform up' set it for you (the local embedded PostgreSQL by default)."
        )
    return db_module.open_database(url)


def database() -> db_module.Database:
    """The connected, migrated database of ``DATABASE_URL`` (cached per URL)."""
    return _database(database_url())


@contextmanager
def session() -> Iterator[Session]:
    """A session on :func:`database`, closed afterwards (service writes commit)."""
    with database().sessions() as s:
        yield s


@st.cache_resource(max_entries=1)
def store() -> ResultStore:
    """The process-wide :class:`~dashboard.store.ResultStore`."""
    return ResultStore()


def refresh_s() -> float:
    """Seconds between automatic refreshes of results (0: recompute on every run).

    From ``ABPLATFORM_DASHBOARD_REFRESH_S`` (default 10).
    """
    raw = os.environ.get(REFRESH_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_REFRESH_S
    except ValueError:
        value = DEFAULT_REFRESH_S
    return max(value, 0.0)


def flash(kind: str, text: str, *, scope: str = "page") -> None:
    """Show a message (``kind`` success, info, warning or error) in ``scope`` for the next
    :data:`FLASH_S` seconds, across reruns and self-refreshes; it replaces the scope's
    previous message."""
    st.session_state.setdefault("_flash", {})[scope] = (kind, text, time.time() + FLASH_S)


def show_flash(scope: str = "page") -> None:
    """Show the message of ``scope`` if it has not expired (and forget it when it has)."""
    queued = st.session_state.get("_flash", {})
    if scope not in queued:
        return
    kind, text, until = queued[scope]
    if time.time() > until:
        del queued[scope]
        return
    getattr(st, kind)(text)
