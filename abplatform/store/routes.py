"""The route repository: routing configs stored, audited and pushed to the routers.

A route row holds its declared arguments and ordered rules as JSON (the fields of
:class:`abplatform.core.routes.RouteSpec`); :func:`to_config` compiles it for the router.
Every write is audited (``audit_log`` entries without an experiment, action
``route_create`` / ``route_update``) and notified (``route:<name>`` on the config channel),
so every router runner reloads it within milliseconds.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from abplatform.core.errors import ConflictError, NotFoundError, StaleWriteError
from abplatform.core.metrics import CALL_COLUMNS, CallTotals
from abplatform.core.routes import ExperimentInfo, RouteConfig, RouteSpec, compile_route
from abplatform.core.stats import LatencyHistogram
from abplatform.core.views import RouteView
from abplatform.store.experiments import now
from abplatform.store.models import AuditEntry, Experiment, Route
from abplatform.store.notify import notify_config_changed

ROUTE_PREFIX = "route:"
"""Notification payloads of route changes start with this (experiment names cannot)."""


def load(session: Session, name: str, *, for_update: bool = False) -> Route:
    """The route ``name`` (row-locked with ``for_update``).

    Raises:
        NotFoundError: no such route (the message lists the known names).
    """
    stmt = sa.select(Route).where(Route.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    route = session.scalars(stmt).one_or_none()
    if route is None:
        names = session.scalars(sa.select(Route.name).order_by(Route.name)).all()
        raise NotFoundError(
            f"unknown route '{name}'; known routes: {', '.join(names) or 'none yet'}"
        )
    return route


def load_all(session: Session) -> list[Route]:
    """Every route, by name."""
    return list(session.scalars(sa.select(Route).order_by(Route.name)).all())


def spec_of(route: Route) -> RouteSpec:
    """The stored route as its spec."""
    return RouteSpec(
        name=route.name, description=route.description, arguments=route.arguments,
        rules=route.rules,
    )  # fmt: skip


def to_view(route: Route) -> RouteView:
    """The read model of a route row."""
    return RouteView(
        id=route.id,
        name=route.name,
        description=route.description,
        version=route.version,
        arguments=dict(route.arguments),
        rules=tuple(dict(r) for r in route.rules),
        created_at=route.created_at,
        updated_at=route.updated_at,
    )


def to_config(route: Route) -> RouteConfig:
    """The router's snapshot of a route row (conditions compiled)."""
    return compile_route(route.id, route.version, spec_of(route))


def route_config(session: Session, name: str) -> RouteConfig:
    """The router's snapshot of route ``name``.

    Raises:
        NotFoundError: no such route.
    """
    return to_config(load(session, name))


def experiment_infos(session: Session) -> dict[str, ExperimentInfo]:
    """Name, status and namespace of every experiment, by name (for route validation)."""
    rows = session.execute(
        sa.select(
            Experiment.name, Experiment.status, Experiment.namespace,
            Experiment.namespace_start, Experiment.namespace_end,
        )
    ).all()  # fmt: skip
    return {
        name: ExperimentInfo(name, status, (ns, float(a), float(b)) if ns else None)
        for name, status, ns, a, b in rows
    }


def _snapshot(route: Route) -> dict[str, Any]:
    return {"route": route.name, "version": route.version, **spec_of(route).model_dump()}


def _commit(session: Session, route: Route, action: str, before: dict[str, Any] | None) -> None:
    session.flush()
    notify_config_changed(session, ROUTE_PREFIX + route.name)
    session.add(
        AuditEntry(
            experiment_id=None, actor=session.info.get("actor", "?"), action=action,
            before=before, after=_snapshot(route), at=now(),
        )
    )  # fmt: skip
    try:
        session.commit()
    except StaleDataError as exc:
        session.rollback()
        raise StaleWriteError(
            f"route '{route.name}' was changed by someone else; reload and try again"
        ) from exc


def add_route(session: Session, spec: RouteSpec, *, actor: str) -> Route:
    """Insert a validated route and commit (audited, notified).

    Raises:
        ConflictError: the name is taken.
    """
    if session.scalar(sa.select(Route.id).where(Route.name == spec.name)) is not None:
        raise ConflictError(f"a route named '{spec.name}' already exists; names must be unique")
    dumped = spec.model_dump(exclude_none=False)
    route = Route(
        name=spec.name, description=spec.description, arguments=dumped["arguments"],
        rules=dumped["rules"],
    )  # fmt: skip
    session.add(route)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"a route named '{spec.name}' already exists") from exc
    session.info["actor"] = actor
    _commit(session, route, "route_create", None)
    return route


def replace_route(session: Session, route: Route, spec: RouteSpec, *, actor: str) -> Route:
    """Replace a (locked) route's description, arguments and rules with a validated spec
    and commit (a new version; audited, notified).

    Raises:
        StaleWriteError: someone else changed it meanwhile.
    """
    before = _snapshot(route)
    dumped = spec.model_dump()
    route.description = spec.description
    route.arguments = dumped["arguments"]
    route.rules = dumped["rules"]
    route.updated_at = now()
    session.info["actor"] = actor
    _commit(session, route, "route_update", before)
    return route


def route_audit(session: Session, name: str) -> list[dict[str, Any]]:
    """Audit entries of route ``name``, oldest first."""
    rows = session.scalars(
        sa.select(AuditEntry)
        .where(AuditEntry.experiment_id.is_(None), AuditEntry.after["route"].astext == name)
        .order_by(AuditEntry.id)
    ).all()
    return [
        {"actor": r.actor, "at": r.at, "action": r.action, "before": r.before, "after": r.after}
        for r in rows
    ]


_SERVED_APP = "CASE WHEN {t}.experiment_id = 0 THEN {t}.app_id ELSE '' END"
ROUTE_CALLS_SQL = f"""
WITH totals AS (
    SELECT t.rule, t.experiment_id, {_SERVED_APP.format(t="t")} AS app,
           {", ".join(f"sum(t.{c})::float8 AS {c}" for c in CALL_COLUMNS)}
    FROM call_totals t WHERE t.route_id = :r AND t.kind = 'request'
    GROUP BY 1, 2, 3
), buckets AS (
    SELECT b.rule, b.experiment_id, b.app, json_object_agg(b.bucket, b.n) AS buckets
    FROM (SELECT c.rule, c.experiment_id, {_SERVED_APP.format(t="c")} AS app, c.bucket,
                 sum(c.count) AS n
          FROM call_latency_buckets c WHERE c.route_id = :r AND c.kind = 'request'
          GROUP BY 1, 2, 3, 4) AS b
    GROUP BY 1, 2, 3
)
SELECT totals.rule, coalesce(e.name, ''), totals.app,
       {", ".join(f"totals.{c}" for c in CALL_COLUMNS)}, coalesce(buckets.buckets, '{{}}')
FROM totals LEFT JOIN buckets USING (rule, experiment_id, app)
LEFT JOIN experiments e ON e.id = totals.experiment_id
"""
"""Per rule and what served it (an experiment, or the app of a rule's app target): the
sums of a route's requests and their latency histogram, over all time."""


def fetch_route_calls(session: Session, route: Route) -> list[CallTotals]:
    """The rollups of a route's requests, one :class:`CallTotals` per rule and what
    served it (an experiment, whatever apps its variants call, or an app), from
    ``call_totals`` (never the raw log)."""
    from abplatform.core.metrics import BINS

    out = []
    for rule, experiment, app, *sums, buckets in session.execute(
        sa.text(ROUTE_CALLS_SQL), {"r": route.id}
    ).all():
        hist = LatencyHistogram.from_buckets({int(k): int(v) for k, v in buckets.items()}, BINS)
        out.append(
            CallTotals(
                "request", None, 0, app, dict(zip(CALL_COLUMNS, sums, strict=True)), hist,
                route.name, rule, experiment or None,
            )
        )  # fmt: skip
    return out


__all__ = [
    "ROUTE_PREFIX",
    "add_route",
    "experiment_infos",
    "fetch_route_calls",
    "load",
    "load_all",
    "replace_route",
    "route_audit",
    "route_config",
    "spec_of",
    "to_config",
    "to_view",
]
