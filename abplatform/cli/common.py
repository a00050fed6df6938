"""What every CLI command shares: consoles, error exits, the database session.

Exit codes: 2 for bad input or a refused change (nothing changed), 3 when the database
cannot be reached, 1 when a run (demo, up) failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from abplatform import service
from abplatform.service.database import Database, DatabaseUnavailableError, open_database

console = Console(width=None if sys.stdout.isatty() else 160)  # wide tables in logs
err_console = Console(stderr=True)
T = TypeVar("T")

ACTOR = typer.Option("--actor", help="Name recorded in the audit log.")


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def database_url() -> str:
    """``DATABASE_URL``, or (unset) the URL of the local embedded PostgreSQL, started on
    demand (with a note on stderr when its state folder is new: a command run from another
    folder would otherwise read an empty database without a word). The CLI is the one
    production edge that may start the local default."""
    from abplatform.local.postgres import resolve_url
    from abplatform.settings import get_settings

    settings = get_settings()
    if not settings.database_url and not (settings.home / "pg").exists():
        home = settings.home.resolve()
        err_console.print(
            f"note: DATABASE_URL is not set and {home} has no database yet: starting a new, "
            "empty embedded PostgreSQL there. To reach a running 'abplatform up', run from "
            "its folder or set ABPLATFORM_HOME to its state folder (or DATABASE_URL).",
            highlight=False,
        )
    return resolve_url(settings)


@contextmanager
def database(*, migrate: bool = True) -> Iterator[Database]:
    """Connect (embedded PostgreSQL unless DATABASE_URL is set) and migrate; exit 3 with
    the reason when the server cannot be reached."""
    try:
        db = open_database(database_url(), migrate=migrate)
    except DatabaseUnavailableError as exc:
        fail(str(exc), code=3)
    except ValueError as exc:
        fail(str(exc), code=3)
    try:
        yield db
    finally:
        db.dispose()


def run_service(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a service function in a fresh session, turning service errors into exit 2."""
    with database() as db, db.sessions() as session:
        try:
            return fn(session, *args, **kwargs)
        except service.ServiceError as exc:
            session.rollback()
            fail(str(exc))
            raise  # unreachable


def parse_weights(text: str) -> list[float]:
    """Percent weights from ``"50,50"``; exits 2 with the allowed form otherwise."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"weights must be comma-separated numbers in percent (e.g. 50,50), got {text!r}")
        raise


def first_error(exc: Exception) -> str:
    """The first validation error of a pydantic ``ValidationError`` (``loc: msg``)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        loc = ".".join(str(x) for x in e.get("loc", ()))
        msg = str(e.get("msg")).removeprefix("Value error, ")
        return f"{loc}: {msg}" if loc else msg
    return str(exc)
