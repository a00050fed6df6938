"""Resolving ``POST /`` with ``route``: the matched rule, then the app or the experiment
(of a layer of mutually exclusive ones) that serves the request.

The pure parts are the core's (:meth:`abplatform.core.routes.RouteConfig.match`,
:func:`abplatform.core.routing.pick_experiment`, :func:`~abplatform.core.routing.
decide_route`); this module fetches the configs they need from the router's cache and
turns what goes wrong into the status the router answers (:class:`RouteFailure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from abplatform.core.errors import InvalidInputError
from abplatform.core.routes import CompiledRule, RouteConfig
from abplatform.core.routing import (
    NotServingError,
    RouteDecision,
    RouteReason,
    RoutingConfig,
    decide_route,
    pick_experiment,
)
from abplatform.serving.configs import ConfigCache


class RouteFailure(Exception):
    """The request cannot be routed: answer ``status`` with ``detail``; ``retry_safe``
    when nothing ran and another runner may succeed (a config that could not be loaded)."""

    def __init__(self, status: int, detail: str, retry_safe: bool = False) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_safe = retry_safe


@dataclass(frozen=True)
class Resolved:
    """Where a route sends one request: the ``route`` and its matched ``rule``, the
    experiment ``config`` (None when the rule's app serves it) and the ``decision``."""

    route: RouteConfig
    rule: CompiledRule
    config: RoutingConfig | None
    decision: RouteDecision


async def _entry_config(cache: ConfigCache, key: str, what: str) -> Any:
    entry = await (cache.get_route(key) if what == "route" else cache.get(key))
    if entry.config is not None:
        return entry.config
    if entry.error is not None:
        raise RouteFailure(500, f"{what} config unavailable (database error: {entry.error})", True)
    hint = "abplatform route create" if what == "route" else "abplatform experiment create"
    raise RouteFailure(404, f"unknown {what} '{key}'; create it first ({hint}) and check the name")


async def resolve(
    cache: ConfigCache, name: str, unit_id: str, arguments: dict[str, Any]
) -> Resolved:
    """Route ``name``'s decision for this request.

    Raises:
        RouteFailure: unknown route (404) or experiment of a rule (404), a config that
            cannot be loaded (500), arguments the rules cannot evaluate or that no rule
            matches (422), a rule whose experiment does not serve and that has no app to
            fall back on (409).
    """
    route: RouteConfig = await _entry_config(cache, name, "route")
    try:
        rule = route.match(arguments)
    except InvalidInputError as exc:
        raise RouteFailure(422, str(exc)) from exc
    app = rule.app
    if not rule.experiments:
        assert app is not None
        return Resolved(route, rule, None, RouteDecision(None, app, RouteReason.RULE))
    configs = [await _entry_config(cache, n, "experiment") for n in rule.experiments]
    chosen = pick_experiment(configs, unit_id)
    if chosen is None and app is not None:
        return Resolved(route, rule, None, RouteDecision(None, app, RouteReason.RULE))
    config = chosen or configs[0]
    try:
        return Resolved(route, rule, config, decide_route(config, unit_id))
    except NotServingError as exc:
        if app is not None:  # the rule's app serves while its experiment does not
            return Resolved(route, rule, None, RouteDecision(None, app, RouteReason.RULE))
        raise RouteFailure(409, f"route '{name}', rule '{rule.name}': {exc}") from exc


__all__ = ["Resolved", "RouteFailure", "resolve"]
