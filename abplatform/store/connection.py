"""Database connection: an engine and a session factory for a PostgreSQL URL.

Nothing here starts a server or runs migrations: production passes ``DATABASE_URL``
(the local stack starts an embedded server and sets it, see
:mod:`abplatform.local.postgres`), and schema changes are :mod:`abplatform.store.migrate`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

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
    """Normalise a libpq/SQLAlchemy URL to the psycopg 3 driver (``postgresql+psycopg://``).

    Raises:
        ValueError: not a PostgreSQL URL.
    """
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(
        f"DATABASE_URL must be a PostgreSQL URL (postgresql://...), got {url.split(':', 1)[0]}://"
    )


def make_database(url: str, *, pool_size: int = 5) -> Database:
    """Create an engine (psycopg 3, pre-ping) and a session factory for ``url``."""
    engine = sa.create_engine(
        to_sqlalchemy_url(url), pool_size=pool_size, pool_pre_ping=True, future=True
    )
    return Database(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


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


def require_url(url: str | None, who: str) -> str:
    """``url`` normalised for SQLAlchemy.

    Raises:
        DatabaseUnavailableError: ``url`` is unset; the message tells ``who`` (e.g. "the
            router") to set ``DATABASE_URL``.
    """
    if not url:
        raise DatabaseUnavailableError(
            f"DATABASE_URL is not set: {who} needs the experiment database "
            "(postgresql://user:pass@host:5432/db; on fal: fal secrets set DATABASE_URL=...). "
            "Locally, 'abplatform up' starts an embedded PostgreSQL and sets it."
        )
    try:
        return to_sqlalchemy_url(url)
    except ValueError as exc:
        raise DatabaseUnavailableError(str(exc)) from exc


__all__ = [
    "Database",
    "DatabaseUnavailableError",
    "check_reachable",
    "make_database",
    "require_url",
    "to_sqlalchemy_url",
]
