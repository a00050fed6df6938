"""The store: PostgreSQL schema (SQLAlchemy ORM), connection, migrations admin, the log
store and its writer, the rollups, and the queries that fetch sufficient statistics.

It depends on :mod:`abplatform.core` only; edges reach it through :mod:`abplatform.service`
(the router, which writes the logs, is the one edge that uses it directly).
"""
