"""``abplatform db upgrade|downgrade``: the schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated

import typer

from abplatform.cli.common import console, database
from abplatform.service.database import downgrade, upgrade

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    with database(migrate=False) as db:
        upgrade(db.url, revision)
    console.print(f"database at revision {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. base or -1.")]) -> None:
    """Revert migrations down to REVISION."""
    with database(migrate=False) as db:
        downgrade(db.url, revision)
    console.print(f"database at revision {revision}")
