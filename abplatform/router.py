"""The A/B router: a cheap CPU ``fal.App`` in front of the model backends.

Deploy: ``fal deploy abplatform/router.py::ABRouter --app-name ab-router`` with the secrets
``FAL_KEY`` (to call the backends) and ``DATABASE_URL`` (the experiment database).

Per request (``POST /``): look up the experiment's config (cached, refreshed every
``ABPLATFORM_CONFIG_TTL_S`` seconds, so weight changes and promotions arrive within
seconds without a redeploy), assign the unit by deterministic hashing, call that
variant's backend through ``fal_client`` with a client timeout (optionally falling back
to the control), tag the response, and queue the log row for the background writer.
The request never waits for the database.

Status codes: 404 unknown experiment, 409 experiment not serving (draft or stopped),
422 malformed body, 4xx passed through from a backend that rejected the arguments,
502 backend failure, 504 backend timeout, 500 config unavailable. Never 503: fal treats
a 503 as a dead runner.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import fal
from fastapi import HTTPException
from pydantic import BaseModel, Field

from abplatform.core.records import OutcomeRecord, RequestRecord, RequestStatus
from abplatform.core.routing import (
    NotServingError,
    RouteDecision,
    RoutingConfig,
    RoutingVariant,
    decide_route,
)
from abplatform.settings import METRIC_VALUE_LIMIT

if TYPE_CHECKING:
    from abplatform.store.connection import Database
    from abplatform.store.writer import BatchWriter

log = logging.getLogger("abplatform.router")

NEGATIVE_CACHE_S = 1.0
RECENT_REQUESTS = 100_000


class RouteRequest(BaseModel):
    """Body of ``POST /``: which experiment, which unit, and the backend's arguments."""

    experiment: str = Field(min_length=1, max_length=100, description="Experiment name.")
    unit_id: str = Field(min_length=1, max_length=200, description="Unit of assignment.")
    arguments: dict[str, Any] = Field(description="JSON object passed to the backend.")
    path: str = Field(default="", max_length=200, description="Backend endpoint path.")


class FeedbackRequest(BaseModel):
    """Body of ``POST /feedback``: an outcome for a request id (or experiment + unit)."""

    metric: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    value: float = Field(
        allow_inf_nan=False,
        ge=-METRIC_VALUE_LIMIT,
        le=METRIC_VALUE_LIMIT,
        description="Outcome value, |value| <= 1e12 (e.g. 0/1 for a thumbs-up).",
    )
    request_id: str | None = Field(default=None, max_length=64)
    experiment: str | None = Field(default=None, max_length=100)
    unit_id: str | None = Field(default=None, max_length=200)


@dataclass
class _CacheEntry:
    config: RoutingConfig | None
    fetched_at: float
    error: str | None = None


class ConfigCache:
    """Experiment configs by name, refreshed in the background every ``ttl_s`` seconds.

    A request for a cached experiment is a dict lookup. The first request for a name
    loads it (in a thread). If a refresh fails, the last good config stays in use.
    """

    def __init__(self, db: Database, ttl_s: float) -> None:
        self._db = db
        self._ttl = ttl_s
        self._entries: dict[str, _CacheEntry] = {}
        self._task: asyncio.Task[None] | None = None

    def _load(self, name: str) -> RoutingConfig | None:
        from abplatform.core.errors import NotFoundError
        from abplatform.store import experiments

        with self._db.sessions() as session:
            try:
                return experiments.routing_config(session, name)
            except NotFoundError:
                return None

    async def get(self, name: str) -> _CacheEntry:
        """The cached entry for ``name``, loading it if absent or a stale negative entry."""
        entry = self._entries.get(name)
        now = time.monotonic()
        if entry is not None and (
            entry.config is not None or now - entry.fetched_at < NEGATIVE_CACHE_S
        ):
            return entry
        try:
            config = await asyncio.to_thread(self._load, name)
            entry = _CacheEntry(config, now)
        except Exception as exc:
            entry = _CacheEntry(None, now, error=f"{type(exc).__name__}: {exc}")
        self._entries[name] = entry
        return entry

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ttl)
            for name, entry in list(self._entries.items()):
                if entry.config is None:
                    continue
                try:
                    config = await asyncio.to_thread(self._load, name)
                except Exception as exc:  # keep serving the last good config
                    log.warning("config refresh of %s failed: %s", name, exc)
                    continue
                self._entries[name] = _CacheEntry(config, time.monotonic())

    def start(self) -> None:
        """Start the background refresh."""
        self._task = asyncio.create_task(self._refresh_loop(), name="abplatform-config-refresh")

    def stop(self) -> None:
        """Stop the background refresh."""
        if self._task is not None:
            self._task.cancel()


class BackendError(Exception):
    """A backend call failed: ``status`` is the HTTP status to answer; ``log_status`` is
    what the request log records (error, timeout, or rejected for the caller's
    arguments)."""

    def __init__(self, status: int, log_status: str, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.log_status = log_status
        self.detail = detail


def _backend_error(exc: Exception, app_id: str, timeout_s: float) -> BackendError:
    import fal_client

    if isinstance(exc, fal_client.client.FalClientTimeoutError | asyncio.TimeoutError):
        return BackendError(
            504, "timeout", f"backend {app_id} did not answer within {timeout_s:g} s"
        )
    if isinstance(exc, fal_client.client.FalClientHTTPError):
        try:
            body: Any = exc.response.json()
        except ValueError:
            body = exc.response.text[:2000]
        detail = body.get("detail", body) if isinstance(body, dict) else body
        # The caller's arguments were rejected: pass the 4xx through and log it as
        # rejected (not the variant's error). Anything else: 502.
        status = exc.status_code if 400 <= exc.status_code < 500 else 502
        if status in (401, 403, 404, 408, 409, 429):
            status = 502  # the router's own credentials/routing failed, not the caller
        log_status = RequestStatus.REJECTED.value if status < 500 else "error"
        return BackendError(
            status, log_status, {"backend": app_id, "status": exc.status_code, "error": detail}
        )
    return BackendError(502, "error", {"backend": app_id, "error": f"{type(exc).__name__}: {exc}"})


def _error_text(assigned: BackendError | None, answered: BackendError | None) -> str | None:
    """The log's ``error``: the assigned variant's failure, and the fallback's own failure
    when that failed too (at most 4000 characters)."""
    if assigned is None:
        return None
    text = str(assigned.detail)
    if answered is not None and answered is not assigned:
        text += f"; fallback to the control failed too: {answered.detail}"
    return text[:4000]


class ABRouter(fal.App, keep_alive=300, min_concurrency=0, max_concurrency=4):
    """Routes each request to an experiment variant's backend and logs it.

    Machine type "S" (CPU), high multiplexing: one runner serves many concurrent
    requests, since it only waits on the backends. Reads ``DATABASE_URL``; calls the
    backends with ``FAL_KEY``.
    """

    machine_type = "S"
    max_multiplexing = 64
    request_timeout = 300
    # What the router imports (an import-linter contract keeps alembic, the embedded
    # server, pandas, Streamlit and torch out); numpy and scipy serve the core's statistics.
    requirements = [
        "fal-client>=1.0.3,<1.1",
        "sqlalchemy>=2.0.30,<2.2",
        "psycopg[binary]>=3.2,<3.4",
        "pydantic>=2.9,<2.15",
        "pydantic-settings>=2.5",
        "numpy>=1.26",
        "scipy>=1.13,<1.18",
    ]
    secrets = ["FAL_KEY", "DATABASE_URL"]

    async def setup(self) -> None:
        """Connect to the database, start the config refresher and the log writer."""
        import fal_client

        from abplatform.settings import get_settings
        from abplatform.store import connection, logstore
        from abplatform.store.writer import BatchWriter

        self.settings = get_settings()
        url = connection.require_url(self.settings.database_url, "the router")
        self.db: Database = connection.make_database(url)
        self.configs = ConfigCache(self.db, self.settings.config_ttl_s)
        self.configs.start()
        engine = self.db.engine
        self.writer: BatchWriter = BatchWriter(
            lambda reqs, outs: logstore.write_batch(engine, reqs, outs),
            batch_size=self.settings.log_batch_size,
            flush_interval_s=self.settings.log_flush_interval_ms / 1000.0,
            spill_dir=self.settings.home / "spill",
        )
        await self.writer.start()
        self.fal = fal_client.AsyncClient(default_timeout=self.settings.backend_timeout_s)
        self.recent: OrderedDict[str, tuple[int, int, str]] = OrderedDict()

    async def teardown(self) -> None:
        """Drain the log buffer (spilling what cannot be written) and close connections."""
        self.configs.stop()
        await self.writer.close()
        self.db.dispose()

    async def _call(self, variant: RoutingVariant, req: RouteRequest, request_id: str) -> Any:
        timeout = self.settings.backend_timeout_s
        try:
            return await self.fal.subscribe(
                variant.backend_app_id,
                req.arguments,
                path=req.path,
                interval=self.settings.poll_interval_s,
                client_timeout=timeout,
                headers={"x-abplatform-request-id": request_id},
            )
        except Exception as exc:
            raise _backend_error(exc, variant.backend_app_id, timeout) from exc

    @fal.endpoint("/")
    async def route(self, req: RouteRequest) -> dict[str, Any]:
        """Assign ``unit_id``, call the variant's backend, return its JSON tagged with
        ``model_version``, ``experiment``, ``variant`` and ``request_id``."""
        entry = await self.configs.get(req.experiment)
        if entry.config is None:
            if entry.error is not None:
                raise HTTPException(
                    500, f"experiment config unavailable (database error: {entry.error})"
                )
            raise HTTPException(
                404,
                f"unknown experiment '{req.experiment}'; create it first (abplatform "
                "experiment create) and check the name",
            )
        cfg = entry.config
        try:
            decision = decide_route(cfg, req.unit_id)
        except NotServingError as exc:
            raise HTTPException(409, str(exc)) from exc
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        served, result, failure, assigned_failure = await self._serve(
            cfg, decision, req, request_id
        )
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.writer.log_request(
            RequestRecord(
                request_id=request_id,
                experiment_id=cfg.experiment_id,
                phase_id=cfg.phase_id,
                unit_id=req.unit_id,
                assigned_variant_id=decision.assigned.id if decision.assigned else None,
                served_variant_id=served.id if served else None,
                model_version=served.model_version if served else None,
                latency_ms=latency_ms,
                status=assigned_failure.log_status if assigned_failure else RequestStatus.OK.value,
                error=_error_text(assigned_failure, failure),
                created_at=datetime.now(UTC),
                fallback=served is not None and assigned_failure is not None,
            )
        )
        self._remember(request_id, cfg.experiment_id, cfg.phase_id, req.unit_id)
        if failure is not None:
            raise HTTPException(
                failure.status,
                {"error": failure.detail, "request_id": request_id, "variant": decision.target.key},
            )
        assert served is not None
        body = result if isinstance(result, dict) else {"output": result}
        return {
            **body,
            "model_version": served.model_version,
            "experiment": cfg.name,
            "variant": served.key,
            "assigned_variant": decision.assigned.key if decision.assigned else None,
            "in_experiment": decision.in_experiment,
            "request_id": request_id,
        }

    async def _serve(
        self, cfg: RoutingConfig, decision: RouteDecision, req: RouteRequest, request_id: str
    ) -> tuple[RoutingVariant | None, Any, BackendError | None, BackendError | None]:
        """Call the target's backend, falling back to the control on a 5xx when the
        experiment allows it. Returns (served variant, result, failure to answer with,
        the target's own failure: set also when the fallback then served the request)."""
        target = decision.target
        try:
            return target, await self._call(target, req, request_id), None, None
        except BackendError as exc:
            if not (cfg.fallback_to_control and not target.is_control and exc.status >= 500):
                return None, None, exc, exc
            first = exc
        try:
            return cfg.control, await self._call(cfg.control, req, request_id), None, first
        except BackendError as exc:
            return None, None, exc, first

    def _remember(self, request_id: str, experiment_id: int, phase_id: int, unit_id: str) -> None:
        self.recent[request_id] = (experiment_id, phase_id, unit_id)
        if len(self.recent) > RECENT_REQUESTS:
            self.recent.popitem(last=False)

    def _find_request(self, request_id: str) -> tuple[int, int, str] | None:
        from abplatform.store import experiments

        with self.db.sessions() as session:
            return experiments.find_request(session, request_id)

    @fal.endpoint("/feedback")
    async def feedback(self, fb: FeedbackRequest) -> dict[str, Any]:
        """Record an outcome (``metric``, ``value``) for a ``request_id`` (or for an
        ``experiment`` + ``unit_id``). Answers 404 for an unknown request id."""
        if fb.request_id:
            found = self.recent.get(fb.request_id)
            if found is None:
                found = await asyncio.to_thread(self._find_request, fb.request_id)
            if found is None:
                raise HTTPException(
                    404,
                    f"unknown request_id '{fb.request_id}'; use the request_id returned by POST /",
                )
            experiment_id, phase_id, unit_id = found
        elif fb.experiment and fb.unit_id:
            entry = await self.configs.get(fb.experiment)
            if entry.config is None:
                raise HTTPException(404, f"unknown experiment '{fb.experiment}'")
            cfg = entry.config
            experiment_id, phase_id, unit_id = cfg.experiment_id, cfg.phase_id, fb.unit_id
        else:
            raise HTTPException(
                422, "give either request_id, or both experiment and unit_id, with metric and value"
            )
        outcome_id = uuid.uuid4().hex
        self.writer.log_outcome(
            OutcomeRecord(
                outcome_key=outcome_id,
                experiment_id=experiment_id,
                phase_id=phase_id,
                request_id=fb.request_id,
                unit_id=unit_id,
                metric=fb.metric,
                value=fb.value,
                created_at=datetime.now(UTC),
            )
        )
        return {"outcome_id": outcome_id, "recorded": True}

    @fal.endpoint("/flush")
    async def flush(self) -> dict[str, Any]:
        """Write every buffered log row now; returns the writer's counters."""
        await self.writer.flush()
        s = self.writer.stats
        return {
            "requests_written": s.requests_written,
            "outcomes_written": s.outcomes_written,
            "pending": self.writer.pending,
            "failed_flushes": s.failed_flushes,
        }
