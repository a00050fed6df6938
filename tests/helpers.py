"""Helpers shared by the tests: database administration on the test server and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from abplatform.settings import get_settings

TEMPLATE = "abplatform_template"


def admin_execute(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database name replaced by ``name``."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def fresh_database(server_url: str, name: str) -> str:
    """(Re)create database ``name`` as a copy of the migrated template; return its URL."""
    admin_execute(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin_execute(server_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return database_url(server_url, name)


def run_cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``abplatform ARGS`` as a user would (a subprocess) against ``db_url``."""
    return subprocess.run(
        [sys.executable, "-m", "abplatform.cli", *args],
        env={**os.environ, "DATABASE_URL": db_url, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextmanager
def settings_env(env: dict[str, str]) -> Iterator[None]:
    """``env`` in the environment, and the settings read again, for a module's local stack
    (its router processes inherit it); the environment and the settings restored after."""
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            get_settings.cache_clear()
            yield
    finally:
        get_settings.cache_clear()
