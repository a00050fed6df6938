"""The edges' way to the database: connect to a URL and bring the schema up to date.

The CLI resolves the URL (``DATABASE_URL`` or the local embedded server) and the dashboard
reads ``DATABASE_URL``; both then call :func:`open_database` and pass its sessions
(:class:`Session`) to the services.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from abplatform.store.connection import Database, DatabaseUnavailableError
from abplatform.store.migrate import connect, downgrade, upgrade


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Connect to ``url``, check it answers, and apply pending migrations (by default).

    Raises:
        DatabaseUnavailableError: the server cannot be reached.
        ValueError: ``url`` is not a PostgreSQL URL.
    """
    return connect(url, migrate=migrate)


__all__ = [
    "Database",
    "DatabaseUnavailableError",
    "Session",
    "downgrade",
    "open_database",
    "upgrade",
]
