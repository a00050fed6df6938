"""Experiment and route configs for the router: cached, pushed by PostgreSQL, refreshed
as a net.

A request for a cached experiment is a dict lookup. The first request for a name loads
it (in a thread). A listener (:func:`abplatform.store.notify.config_changes`) reloads an
experiment the moment a change to it commits, so weight changes and promotions reach
every runner within milliseconds; every ``ttl_s`` seconds all cached configs are reloaded
anyway (the safety net when notifications are lost, e.g. while the listener reconnects).
While the database is down the last good config stays in use. Routes are cached beside
the experiments under ``route:<name>`` (the key their change notifications carry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from abplatform.core.routes import RouteConfig
from abplatform.core.routing import RoutingConfig
from abplatform.store.connection import Database
from abplatform.store.routes import ROUTE_PREFIX

log = logging.getLogger("abplatform.router")

NEGATIVE_CACHE_S = 1.0
LISTEN_BACKOFF_MAX_S = 5.0


@dataclass
class CacheEntry:
    """A config (None: no such experiment or route, or ``error`` when it could not be
    loaded)."""

    config: RoutingConfig | RouteConfig | None
    fetched_at: float
    error: str | None = None


class ConfigCache:
    """Experiment configs by name; see the module docstring."""

    def __init__(self, db: Database, ttl_s: float) -> None:
        self._db = db
        self._ttl = ttl_s
        self._entries: dict[str, CacheEntry] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = False

    @property
    def cached(self) -> int:
        """How many experiment names are cached."""
        return len(self._entries)

    def _load(self, name: str) -> RoutingConfig | RouteConfig | None:
        from abplatform.core.errors import NotFoundError
        from abplatform.store import experiments, routes

        with self._db.sessions() as session:
            try:
                if name.startswith(ROUTE_PREFIX):
                    return routes.route_config(session, name.removeprefix(ROUTE_PREFIX))
                return experiments.routing_config(session, name)
            except NotFoundError:
                return None

    async def get_route(self, name: str) -> CacheEntry:
        """The cached entry of route ``name`` (see :meth:`get`)."""
        return await self.get(ROUTE_PREFIX + name)

    async def get(self, name: str) -> CacheEntry:
        """The cached entry of experiment ``name`` (``route:<name>``: a route), loading it
        if absent or a stale negative entry."""
        entry = self._entries.get(name)
        now = time.monotonic()
        if entry is not None and (
            entry.config is not None or now - entry.fetched_at < NEGATIVE_CACHE_S
        ):
            return entry
        try:
            config = await asyncio.to_thread(self._load, name)
            entry = CacheEntry(config, now)
        except Exception as exc:
            entry = CacheEntry(None, now, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        self._entries[name] = entry
        return entry

    async def reload(self, name: str) -> None:
        """Load ``name`` again if it is cached (keep the old config if that fails)."""
        if name not in self._entries:
            return
        try:
            config = await asyncio.to_thread(self._load, name)
        except Exception as exc:  # keep serving the last good config
            log.warning("config reload of %s failed: %s", name, exc)
            return
        self._entries[name] = CacheEntry(config, time.monotonic())

    async def reload_all(self) -> None:
        """Reload every cached experiment that had a config."""
        for name, entry in list(self._entries.items()):
            if entry.config is not None:
                await self.reload(name)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ttl)
            await self.reload_all()

    async def _listen_loop(self) -> None:
        from abplatform.store.notify import config_changes

        backoff = 0.1
        while True:
            try:
                async for name in config_changes(self._db.url):
                    if name is None:
                        self.listening, backoff = True, 0.1
                        await self.reload_all()
                    else:
                        await self.reload(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.listening:
                    log.warning("config listener lost its connection: %s", exc)
            self.listening = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, LISTEN_BACKOFF_MAX_S)

    def start(self) -> None:
        """Start the listener and the periodic refresh."""
        self._tasks = [
            asyncio.create_task(self._refresh_loop(), name="abplatform-config-refresh"),
            asyncio.create_task(self._listen_loop(), name="abplatform-config-listen"),
        ]

    def stop(self) -> None:
        """Stop both."""
        for task in self._tasks:
            task.cancel()


__all__ = ["CacheEntry", "ConfigCache"]
