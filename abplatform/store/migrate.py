"""Schema administration: apply or revert the Alembic migrations in ``migrations/``.

Kept apart from :mod:`abplatform.store.connection` so that processes that never change
the schema (the router on fal) do not need Alembic.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from abplatform.store.connection import (
    Database,
    check_reachable,
    make_database,
    to_sqlalchemy_url,
)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


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


def connect(url: str, *, migrate: bool = True) -> Database:
    """Connect to ``url``, check the server answers, and apply migrations (by default).

    Raises:
        DatabaseUnavailableError: the server cannot be reached.
        ValueError: ``url`` is not a PostgreSQL URL.
    """
    db = make_database(url)
    check_reachable(db)
    if migrate:
        upgrade(db.url)
    return db


__all__ = ["MIGRATIONS_DIR", "alembic_config", "connect", "downgrade", "upgrade"]
