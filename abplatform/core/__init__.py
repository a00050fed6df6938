"""The pure core: assignment, statistics, the metric catalogue, analysis, lifecycle rules,
the routing decision and the event records.

Typed inputs in, frozen dataclasses out. Nothing here imports a database driver, a web
framework, fal or Streamlit (an import-linter contract in ``pyproject.toml`` enforces it),
so every rule in here is tested in-process without PostgreSQL.
"""
