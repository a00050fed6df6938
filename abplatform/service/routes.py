"""Route commands and reads: create and replace routing configs, show them and their
traffic, and the price table that gives each request its cost.

A route is validated whole before anything is written (:func:`abplatform.core.routes.
validate_route`: conditions against the declared arguments, known apps, existing
experiments, namespaces of a layer); a bad one changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from abplatform.core.breakdown import breakdowns
from abplatform.core.costs import PriceTable
from abplatform.core.metrics import PhaseData
from abplatform.core.report import RouteReport
from abplatform.core.routes import RouteSpec, validate_route
from abplatform.core.views import RouteView
from abplatform.settings import get_settings
from abplatform.store import routes as repo


def _validate(session: Session, spec: RouteSpec) -> RouteSpec:
    return validate_route(spec, get_settings().known_backend_apps, repo.experiment_infos(session))


def create_route(session: Session, spec: RouteSpec, *, actor: str) -> RouteView:
    """Create a route; routers serve it at once (``POST /`` with ``route``).

    Raises:
        InvalidInputError: a rule breaks a rule of :func:`~abplatform.core.routes.
            validate_route` (the message names the rule and what is allowed).
        ConflictError: a route with this name exists.
    """
    _validate(session, spec)
    return repo.to_view(repo.add_route(session, spec, actor=actor))


def update_route(
    session: Session, spec: RouteSpec, *, actor: str, expected_version: int | None = None
) -> RouteView:
    """Replace route ``spec.name``'s description, arguments and rules (a new version);
    every router reloads it within milliseconds.

    Raises:
        NotFoundError: no such route. InvalidInputError: as :func:`create_route`.
        StaleWriteError: the route changed since ``expected_version``.
    """
    from abplatform.core.errors import StaleWriteError

    route = repo.load(session, spec.name, for_update=True)
    if expected_version is not None and route.version != expected_version:
        raise StaleWriteError(
            f"route '{spec.name}' changed since you read it (version {expected_version}, now "
            f"{route.version}); reload and try again"
        )
    _validate(session, spec)
    return repo.to_view(repo.replace_route(session, route, spec, actor=actor))


def get_route(session: Session, name: str) -> RouteView:
    """One route by name. Raises :class:`NotFoundError` (listing known names)."""
    return repo.to_view(repo.load(session, name))


def get_route_spec(session: Session, name: str) -> RouteSpec:
    """One route's spec (to edit and save again)."""
    return repo.spec_of(repo.load(session, name))


def list_routes(session: Session) -> list[RouteView]:
    """Every route, by name."""
    return [repo.to_view(r) for r in repo.load_all(session)]


def route_audit(session: Session, name: str) -> list[dict[str, Any]]:
    """Who changed route ``name``, when, from what to what (oldest first)."""
    repo.load(session, name)
    return repo.route_audit(session, name)


def route_report(session: Session, name: str) -> RouteReport:
    """What route ``name``'s traffic did, per rule, experiment and served app: requests,
    errors, latency (ms), billed seconds and cost (USD) per request, from the rollups.

    Raises:
        NotFoundError: no such route.
    """
    route = repo.load(session, name)
    calls = tuple(repo.fetch_route_calls(session, route))
    _, _, rules = breakdowns([PhaseData(0, {}, calls=calls)])
    view = repo.to_view(route)
    return RouteReport(
        route=view.name, version=view.version, generated_at=datetime.now(UTC), rules=rules,
        rule_specs=view.rules, arguments=view.arguments,
    )  # fmt: skip


def price_table() -> PriceTable:
    """The price table of this deployment (settings over fal's public list prices).

    Raises:
        InvalidInputError: a malformed ``ABPLATFORM_MACHINE_TYPES`` or
            ``ABPLATFORM_PRICES_PER_HOUR``.
    """
    settings = get_settings()
    return PriceTable.from_settings(settings.machine_types, settings.prices_per_hour)


def price_rows() -> list[dict[str, Any]]:
    """Machine type, USD per hour and per second, and source of every known backend app."""
    table = price_table()
    apps = list(dict.fromkeys([*get_settings().known_backend_apps, *table.machine_types]))
    return table.rows(apps)


__all__ = [
    "create_route",
    "get_route",
    "get_route_spec",
    "list_routes",
    "price_rows",
    "price_table",
    "route_audit",
    "route_report",
    "update_route",
]
