"""Config changes pushed to every router runner: PostgreSQL ``LISTEN``/``NOTIFY``.

Every experiment write (:func:`abplatform.store.experiments.finish_write`) calls
:func:`notify_config_changed` in its transaction; PostgreSQL delivers the notification
to every listening connection when (and only if) the transaction commits. Routers listen
with :func:`config_changes` and reload that experiment, so a weight change or promotion
reaches all runners in milliseconds; their periodic refresh stays as the safety net.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

CHANNEL = "abplatform_config"


def notify_config_changed(session: Session, name: str) -> None:
    """Queue a notification that experiment ``name`` changed (sent at commit)."""
    session.execute(
        sa.text("SELECT pg_notify(:channel, :name)"), {"channel": CHANNEL, "name": name}
    )


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as a libpq connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def config_changes(url: str) -> AsyncIterator[str | None]:
    """Yield None once listening (catch up: anything may have changed before), then the
    name of each experiment that changes. Ends with an exception when the connection is
    lost; the caller reconnects.

    Raises:
        psycopg.Error: cannot connect, or the connection broke.
    """
    import psycopg

    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        yield None
        async for note in conn.notifies():
            yield note.payload


__all__ = ["CHANNEL", "config_changes", "libpq_url", "notify_config_changed"]
