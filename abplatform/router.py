"""The A/B router: a cheap CPU ``fal.App`` in front of the model backends.

Deploy: ``fal deploy abplatform/router.py::ABRouter --app-name ab-router`` with the secrets
``FAL_KEY`` (to call the backends) and ``DATABASE_URL`` (the experiment database).

Per request (``POST /``): look up the experiment's config (cached; changes are pushed by
PostgreSQL LISTEN/NOTIFY and arrive within milliseconds, with a periodic refresh every
``ABPLATFORM_CONFIG_TTL_S`` seconds as the safety net), assign the unit by deterministic
hashing, call that variant's backend through ``fal_client`` in the variant's call mode
(direct ``run``, or fal's queue with its status stream; optionally falling back to the
control), tag the response, and queue the log row for the background writer. The request
never waits for the database.

With ``route`` instead of ``experiment``, the route's first rule that the arguments
satisfy picks an app or an experiment (:mod:`abplatform.serving.routes`). A variant may
be a pipeline of apps, send fal's runner hint, and mirror a share of its requests to a
shadow app that the caller never waits for (:mod:`abplatform.serving.plans`,
:mod:`abplatform.serving.shadows`); every request's billed seconds and cost are logged.

Status codes: 404 unknown experiment or route, 409 experiment not serving (draft or
stopped), 422 arguments no rule of the route matches or can evaluate,
413 body over the limit, 422 malformed body, 403 QA override without a valid operator
token, 4xx passed through from a backend that rejected the arguments, 502 backend
failure, 504 backend timeout, 500 config unavailable. Never 503: fal treats a 503 as a
dead runner. ``X-Fal-Needs-Retry: 1`` marks failures where nothing ran (a retry on
another runner is safe), ``0`` the others.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import fal
from fastapi import Header, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator, model_validator
from starlette.background import BackgroundTask

from abplatform.core.metrics import BUILTIN_METRICS, check_metric_name
from abplatform.core.records import OutcomeRecord, RequestRecord, RequestStatus
from abplatform.core.routing import (
    NotServingError,
    RouteDecision,
    RoutingConfig,
    decide_route,
)
from abplatform.serving.calls import BackendError
from abplatform.serving.guard import json_depth_ok, plain_text, scrub
from abplatform.serving.plans import Served
from abplatform.serving.routes import Resolved, RouteFailure, resolve
from abplatform.serving.shadows import encode
from abplatform.settings import METRIC_VALUE_LIMIT

if TYPE_CHECKING:
    import fastapi

    from abplatform.serving.configs import ConfigCache
    from abplatform.serving.plans import Plans
    from abplatform.serving.shadows import Shadows
    from abplatform.store.connection import Database
    from abplatform.store.writer import BatchWriter

log = logging.getLogger("abplatform.router")

RECENT_REQUESTS = 100_000
MAX_ARGUMENT_DEPTH = 32
PATH_PATTERN = r"^(?:[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*)?$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
FORCE_HEADER = "x-abplatform-force-variant"
TOKEN_HEADER = "x-abplatform-operator-token"


class RouteRequest(BaseModel):
    """Body of ``POST /``: which experiment (or route), which unit, and the backend's
    arguments."""

    experiment: str | None = Field(
        default=None, min_length=1, max_length=100, description="Experiment name."
    )
    route: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="Route name (instead of experiment): its rules pick an app or experiment.",
    )  # fmt: skip
    unit_id: str = Field(min_length=1, max_length=200, description="Unit of assignment.")
    arguments: dict[str, Any] = Field(
        description=f"JSON object passed to the backend (nested at most {MAX_ARGUMENT_DEPTH} "
        "levels)."
    )
    path: str = Field(
        default="", max_length=200, pattern=PATH_PATTERN,
        description="Backend endpoint path, e.g. 'upscale' (letters, digits, _ - /).",
    )  # fmt: skip

    @field_validator("experiment", "route", "unit_id")
    @classmethod
    def _text(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else plain_text(value, info.field_name)

    @model_validator(mode="after")
    def _one_target(self) -> RouteRequest:
        if (self.experiment is None) == (self.route is None):
            given = "neither was given" if self.experiment is None else "both were given"
            raise ValueError(
                f"give either experiment (an A/B test) or route (routing rules): {given}"
            )
        return self

    @field_validator("arguments")
    @classmethod
    def _depth(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not json_depth_ok(value, MAX_ARGUMENT_DEPTH):
            raise ValueError(f"arguments must nest at most {MAX_ARGUMENT_DEPTH} levels deep")
        return value


class FeedbackRequest(BaseModel):
    """Body of ``POST /feedback``: an outcome for a request id (or experiment + unit)."""

    metric: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    value: float = Field(
        allow_inf_nan=False,
        ge=-METRIC_VALUE_LIMIT,
        le=METRIC_VALUE_LIMIT,
        description="Outcome value, |value| <= 1e12 (e.g. 0/1 for a thumbs-up).",
    )
    request_id: str | None = Field(default=None, pattern=REQUEST_ID_PATTERN)
    experiment: str | None = Field(default=None, min_length=1, max_length=100)
    unit_id: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("experiment", "unit_id")
    @classmethod
    def _text(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else plain_text(value, info.field_name)

    @field_validator("metric")
    @classmethod
    def _feedback_metric(cls, value: str) -> str:
        if value in BUILTIN_METRICS:
            raise ValueError(
                f"{value!r} is a built-in metric, computed from the request log; feedback "
                "takes any other name (for example thumbs_up)"
            )
        return check_metric_name(value)


def _fail(status: int, detail: Any, retry: bool = False) -> HTTPException:
    return HTTPException(status, detail, headers={"x-fal-needs-retry": "1" if retry else "0"})


def _error_text(assigned: BackendError | None, answered: BackendError | None) -> str | None:
    """The log's ``error``: the assigned variant's failure, and the fallback's own failure
    when that failed too (at most 4000 characters)."""
    if assigned is None:
        return None
    text = str(assigned.detail)
    if answered is not None and answered is not assigned:
        text += f"; fallback to the control failed too: {answered.detail}"
    return text[:4000].replace("\x00", "")


class ABRouter(fal.App, keep_alive=300, min_concurrency=0, max_concurrency=4):
    """Routes each request to an experiment variant's backend and logs it.

    Machine type "S" (CPU), high multiplexing: one runner serves many concurrent
    requests, since it only waits on the backends. Reads ``DATABASE_URL``; calls the
    backends with ``FAL_KEY``. Several runners may serve one deployment: feedback may
    reach any of them, and config changes reach all of them.
    """

    machine_type = "S"
    max_multiplexing = 64
    request_timeout = 300
    termination_grace_period_seconds = 30
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
        "sniffio>=1.3",  # httpcore imports it on every pool operation (issue 10 profile)
        "httpx-aiohttp>=0.1.8,<0.3",  # aiohttp's pool under fal_client (serving/calls.py)
        "prometheus-client>=0.20",
    ]
    secrets = ["FAL_KEY", "DATABASE_URL"]

    async def setup(self) -> None:
        """Connect to the database, start the config listener and the log writer."""
        from abplatform.core.costs import PriceTable
        from abplatform.serving.calls import BackendCaller, pooled_client
        from abplatform.serving.configs import ConfigCache
        from abplatform.serving.ids import RequestIds
        from abplatform.serving.metrics import router_metrics
        from abplatform.serving.plans import Plans
        from abplatform.serving.shadows import Shadows
        from abplatform.settings import get_settings
        from abplatform.store import connection, logstore
        from abplatform.store.writer import BatchWriter

        self.settings = get_settings()
        url = connection.require_url(self.settings.database_url, "the router")
        self.db: Database = connection.make_database(url)
        self.configs: ConfigCache = ConfigCache(self.db, self.settings.config_ttl_s)
        self.configs.start()
        engine = self.db.engine
        self.writer: BatchWriter = BatchWriter(
            lambda reqs, outs: logstore.write_batch(engine, reqs, outs),
            batch_size=self.settings.log_batch_size,
            flush_interval_s=self.settings.log_flush_interval_ms / 1000.0,
            spill_dir=self.settings.home / "spill",
        )
        await self.writer.start()
        client = pooled_client(self.settings.backend_timeout_s)
        prices = PriceTable.from_settings(
            self.settings.machine_types, self.settings.prices_per_hour
        )
        timeout_s = self.settings.backend_timeout_s
        self.plans: Plans = Plans(BackendCaller(client, timeout_s), prices)
        # Shadows have their own connection pool: they never take the live calls' ones.
        shadow_caller = BackendCaller(pooled_client(timeout_s, keepalive=64), timeout_s)
        self.shadows: Shadows = Shadows(
            Plans(shadow_caller, prices), self.settings.shadow_max_in_flight,
            self.settings.shadow_max_loop_lag_ms / 1000.0,
        )  # fmt: skip
        self.shadows.start_monitor()
        self.ids = RequestIds.from_secret(self.settings.request_id_key or url)
        self.metrics = router_metrics()
        self.metrics.writer = self.writer
        self.metrics.shadows = self.shadows
        self.recent: OrderedDict[str, tuple[int | None, int | None, str]] = OrderedDict()
        self.controller = None  # the safe-rollout controller; one runner acts, by lease
        if self.settings.controller:
            from abplatform.service.controller import RolloutController

            s = self.settings
            self.controller = RolloutController(
                self.db, interval_s=s.controller_interval_s, lease_s=s.controller_lease_s
            ).start()

    async def teardown(self) -> None:
        """Drain the log buffer (spooling what cannot be written), hand the rollout
        controller's lease over, and close connections."""
        if self.controller is not None:
            self.controller.stop()
        self.configs.stop()
        await self.shadows.drain(self.settings.flush_timeout_s)
        await self.writer.close()
        self.db.dispose()

    def _add_extra_middlewares(self, app: fastapi.FastAPI) -> None:
        """fal's middlewares (their ``http`` ones run by one plain ASGI middleware, see
        :mod:`abplatform.serving.middleware`), then the body-size limit (outermost)."""
        from abplatform.serving.guard import BodyLimit
        from abplatform.serving.middleware import install_fal_middlewares
        from abplatform.settings import get_settings

        install_fal_middlewares(app, super()._add_extra_middlewares)
        app.add_middleware(BodyLimit, limit=get_settings().max_body_bytes)  # type: ignore[arg-type]

    def _add_extra_routes(self, app: fastapi.FastAPI) -> None:
        """fal's routes, a 422 handler that never echoes the input back, and a 404 handler
        that keeps the retry header."""
        super()._add_extra_routes(app)

        @app.exception_handler(404)
        async def _not_found(request: Any, exc: Any) -> JSONResponse:
            # fal's own 404 handler drops the headers (X-Fal-Needs-Retry) of a 404 we raise
            detail = exc.detail
            headers = {**(getattr(exc, "headers", None) or {}), "x-fal-needs-retry": "0"}
            if detail == "Not Found":
                detail = f"Path {request.url.path} not found"
                headers["x-fal-billable-units"] = "0"
            return JSONResponse({"detail": detail}, 404, headers=headers)

        @app.exception_handler(RequestValidationError)
        async def _invalid(request: Any, exc: RequestValidationError) -> JSONResponse:
            return JSONResponse(
                {"detail": scrub(exc.errors())}, 422, headers={"x-fal-needs-retry": "0"}
            )

    async def _config(self, name: str) -> RoutingConfig:
        entry = await self.configs.get(name)
        if entry.config is not None:
            return entry.config
        if entry.error is not None:
            raise _fail(500, f"experiment config unavailable (database error: {entry.error})", True)
        raise _fail(
            404,
            f"unknown experiment '{name}'; create it first (abplatform experiment create) "
            "and check the name",
        )

    def _forced(
        self, cfg: RoutingConfig, decision: RouteDecision, key: str, token: str | None
    ) -> RouteDecision:
        """The decision with the QA override applied, or 403/422."""
        expected = self.settings.operator_token
        if not expected or not token or not hmac.compare_digest(token, expected):
            raise _fail(
                403,
                f"a QA override ({FORCE_HEADER}) needs a valid operator token in {TOKEN_HEADER}"
                + ("" if expected else "; none is configured (ABPLATFORM_OPERATOR_TOKEN)"),
            )
        variant = next((v for v in cfg.variants if v.key == key), None)
        if variant is None:
            keys = ", ".join(v.key for v in cfg.variants)
            raise _fail(422, f"no variant {key[:64]!r} in '{cfg.name}'; variants: {keys}")
        return RouteDecision(decision.assigned, variant, decision.reason)

    async def _resolve(self, req: RouteRequest) -> Resolved:
        """The route's decision (``route`` given), or the HTTP error to answer."""
        try:
            return await resolve(self.configs, req.route or "", req.unit_id, req.arguments)
        except RouteFailure as exc:
            raise _fail(exc.status, exc.detail, exc.retry_safe) from exc

    @fal.endpoint("/")
    async def route(
        self,
        req: RouteRequest,
        force_variant: str | None = Header(default=None, alias=FORCE_HEADER, max_length=64),
        operator_token: str | None = Header(default=None, alias=TOKEN_HEADER, max_length=200),
    ) -> JSONResponse:
        """Assign ``unit_id``, call the variant's backend, return its JSON tagged with
        ``model_version``, ``experiment``, ``variant`` and ``request_id``. With ``route``
        instead of ``experiment``, the route's matched rule picks the app or experiment
        (the answer adds ``route`` and ``rule``). With the ``x-abplatform-force-variant``
        header and a valid operator token, serve that variant instead (QA override:
        logged as forced, never analysed)."""
        started = time.perf_counter()
        resolved: Resolved | None = None
        if req.route is not None:
            resolved = await self._resolve(req)
            cfg, decision = resolved.config, resolved.decision
        else:
            cfg = await self._config(req.experiment or "")
            try:
                decision = decide_route(cfg, req.unit_id)
            except NotServingError as exc:
                raise _fail(409, str(exc)) from exc
        forced = force_variant is not None
        if forced:
            if cfg is None:
                raise _fail(422, "this request is served by a rule's app, not an experiment; "
                                 "there is no variant to force")  # fmt: skip
            decision = self._forced(cfg, decision, force_variant or "", operator_token)
        request_id = self.ids.new()
        target = decision.target
        served, failure, assigned_failure = await self._serve(
            cfg, decision, req, request_id, forced
        )
        latency_s = time.perf_counter() - started
        record = self._log(
            cfg, decision, req.unit_id, request_id, served, (failure, assigned_failure),
            latency_s, forced, resolved,
        )  # fmt: skip
        mirror = None
        if target.shadow is None or forced:
            self.writer.log_request(record)
        else:  # after the answer is sent: nothing of the shadow is on the live path
            calls = assigned_failure.calls if assigned_failure else served and served.calls
            mirror = BackgroundTask(self.shadows.mirror, target, req.arguments, req.path,
                                    record, calls, self.writer.log_request)  # fmt: skip
        if failure is not None:
            if mirror is not None:
                await mirror()  # an error answer cannot carry a background task
            raise _fail(
                failure.status,
                {"error": failure.detail, "request_id": request_id, "variant": target.key},
                failure.retry_safe,
            )
        assert served is not None
        body = self._tag(served, cfg, decision, request_id, forced, resolved)
        return JSONResponse(body, background=mirror)

    @staticmethod
    def _tag(
        served: Served, cfg: RoutingConfig | None, decision: RouteDecision, request_id: str,
        forced: bool, resolved: Resolved | None,
    ) -> dict[str, Any]:  # fmt: skip
        """The backend's answer tagged with where the request went."""
        result = served.result
        body = result if isinstance(result, dict) else {"output": result}
        body.update(
            model_version=served.variant.model_version,
            experiment=cfg.name if cfg else None,
            variant=served.variant.key if cfg else None,
            assigned_variant=decision.assigned.key if decision.assigned else None,
            in_experiment=decision.in_experiment and not forced,
            request_id=request_id,
        )
        if resolved is not None:
            body.update(route=resolved.route.name, rule=resolved.rule.name, backend_app=served.app)
        if forced:
            body["forced"] = True
        return body

    def _log(
        self,
        cfg: RoutingConfig | None,
        decision: RouteDecision,
        unit_id: str,
        request_id: str,
        served: Served | None,
        failures: tuple[BackendError | None, BackendError | None],
        latency_s: float,
        forced: bool,
        resolved: Resolved | None,
    ) -> RequestRecord:
        """The request's record: ``status`` is the assigned variant's outcome (a
        fallback-served failure stays a failure, with ``fallback`` set); billed seconds and
        cost are those of every call made (a failed one and its fallback)."""
        failure, assigned_failure = failures
        status = assigned_failure.log_status if assigned_failure else RequestStatus.OK.value
        billed: list[tuple[float, float | None]] = []
        if assigned_failure is not None:
            billed.append((assigned_failure.billed_s, assigned_failure.cost_usd))
        if served is not None:
            billed.append((served.billed_s, served.cost_usd))
        elif failure is not None and failure is not assigned_failure:
            billed.append((failure.billed_s, failure.cost_usd))
        costs = [c for _, c in billed]
        calls = assigned_failure.calls if assigned_failure else (served.calls if served else None)
        record = RequestRecord(
            request_id=request_id,
            experiment_id=cfg.experiment_id if cfg else None,
            phase_id=cfg.phase_id if cfg else None,
            unit_id=unit_id,
            assigned_variant_id=decision.assigned.id if decision.assigned else None,
            served_variant_id=served.variant.id if served and cfg else None,
            model_version=served.variant.model_version if served else None,
            latency_ms=latency_s * 1000.0,
            status=status,
            error=_error_text(assigned_failure, failure),
            created_at=datetime.now(UTC),
            fallback=served is not None and assigned_failure is not None,
            forced=forced,
            route_id=resolved.route.id if resolved else None,
            rule=resolved.rule.name if resolved else None,
            backend_app_id=served.app if served else decision.target.backend_app_id,
            billed_s=sum(b for b, _ in billed),
            cost_usd=None if any(c is None for c in costs) else sum(costs),  # type: ignore[arg-type]
            calls=encode(calls),
        )
        scope = cfg.name if cfg else f"route:{resolved.route.name if resolved else '?'}"
        self.metrics.observe(scope, decision.target.key, status, latency_s)
        self.recent[request_id] = (
            cfg.experiment_id if cfg else None, cfg.phase_id if cfg else None, unit_id
        )  # fmt: skip
        if len(self.recent) > RECENT_REQUESTS:
            self.recent.popitem(last=False)
        return record

    async def _serve(
        self,
        cfg: RoutingConfig | None,
        decision: RouteDecision,
        req: RouteRequest,
        request_id: str,
        forced: bool,
    ) -> tuple[Served | None, BackendError | None, BackendError | None]:
        """Call the target (one app or a pipeline), falling back to the control on a 5xx
        when the experiment allows it (not for a QA override). Returns (what served,
        failure to answer with, the target's own failure: set also when the fallback then
        served the request)."""
        target = decision.target
        try:
            return await self.plans.serve(target, req.arguments, req.path, request_id), None, None
        except BackendError as exc:
            fallback = cfg is not None and cfg.fallback_to_control and not forced
            if not (fallback and not target.is_control and exc.status >= 500):
                return None, exc, exc
            first = exc
        assert cfg is not None
        try:
            served = await self.plans.serve(cfg.control, req.arguments, req.path, request_id)
            return served, None, first
        except BackendError as exc:
            return None, exc, first

    @fal.endpoint("/feedback")
    async def feedback(self, fb: FeedbackRequest) -> dict[str, Any]:
        """Record an outcome (``metric``, ``value``) for a ``request_id`` (or for an
        ``experiment`` + ``unit_id``). Any runner accepts feedback on a request another
        runner served; an id no router made gets 404."""
        experiment_id: int | None
        phase_id: int | None
        unit_id: str | None
        if fb.request_id:
            found = self.recent.get(fb.request_id)
            if found is not None:
                experiment_id, phase_id, unit_id = found
                if experiment_id is None:
                    raise _fail(
                        409,
                        f"request '{fb.request_id}' was served by a route's rule outside any "
                        "experiment; feedback is recorded only for experiment requests",
                    )
            elif self.ids.is_ours(fb.request_id):  # served by another runner (or earlier)
                experiment_id = phase_id = unit_id = None
            else:
                raise _fail(
                    404,
                    f"unknown request_id '{fb.request_id}'; use the request_id returned by POST /",
                )
        elif fb.experiment and fb.unit_id:
            cfg = await self._config(fb.experiment)
            experiment_id, phase_id, unit_id = cfg.experiment_id, cfg.phase_id, fb.unit_id
        else:
            raise _fail(
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
        """Write every buffered and spooled log row now (after the shadow calls in flight
        end), for at most ``ABPLATFORM_FLUSH_TIMEOUT_S`` seconds; says what is pending."""
        shadows_done = await self.shadows.drain(self.settings.flush_timeout_s, cancel=False)
        complete = await self.writer.flush(self.settings.flush_timeout_s) and shadows_done
        return {"complete": complete, **self._writer_state()}

    def _writer_state(self) -> dict[str, Any]:
        s = self.writer.stats
        return {
            "requests_written": s.requests_written,
            "outcomes_written": s.outcomes_written,
            "pending": self.writer.pending,
            "spooled_pending": self.writer.spooled_rows(),
            "spooled": s.spooled,
            "replayed": s.replayed,
            "dropped": s.dropped,
            "failed_flushes": s.failed_flushes,
            "last_error": s.last_error,
        }

    def _controller_state(self) -> str:
        if self.controller is None:
            return "off"
        return "acting" if self.controller.acting else "standby"

    @fal.endpoint("/healthz", health_check=fal.HealthCheck(timeout_seconds=5, failure_threshold=3))
    async def healthz(self) -> dict[str, Any]:
        """fal's health check: 200 while the runner serves (a database outage does not make
        it unhealthy: it routes from cached configs and spools its logs), with the state of
        the config listener and the log writer."""
        return {
            "status": "ok",
            "config_listener": self.configs.listening,
            "experiments_cached": self.configs.cached,
            "shadows": {"in_flight": self.shadows.in_flight, "started": self.shadows.started,
                        "shed_full": self.shadows.shed_full, "shed_busy": self.shadows.shed_busy,
                        "loop_lag_ms": round(self.shadows.lag_s * 1000.0, 2)},
            "rollout_controller": self._controller_state(),
            **self._writer_state(),
        }  # fmt: skip
