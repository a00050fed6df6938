"""A local stand-in for fal's queue (``queue.fal.run``) and run (``fal.run``) gateways.

Unmodified ``fal_client`` reaches local apps through it: serve it over HTTPS and start the
client process with ``FAL_RUN_HOST=127.0.0.1:PORT``, ``FAL_QUEUE_RUN_HOST=127.0.0.1:PORT/queue``
and ``SSL_CERT_FILE`` trusting the certificate (see ``abplatform.local.falcloud``).

Routes, as fal_client 1.0.3 calls them (``{app}`` is ``owner/alias``; ``[/{path}]`` is the
endpoint path, e.g. ``""`` for ``POST /`` of the app):

===========================================  ===============================================
``POST /queue/{app}[/{path}]``               submit: ``{request_id, response_url, status_url,
                                             cancel_url, queue_position}`` (absolute URLs)
``GET /queue/{app}/requests/{id}/status``    ``{"status": IN_QUEUE|IN_PROGRESS|COMPLETED,
                                             "queue_position" (IN_QUEUE), "logs": [] | null,
                                             "metrics" (COMPLETED), ...}``; ``?logs=1|true``
``GET /queue/{app}/requests/{id}/status/stream``  the same status objects as server-sent
                                             events, one per change; closed after COMPLETED
``GET /queue/{app}/requests/{id}``           the app's status code and body, once COMPLETED
``PUT /queue/{app}/requests/{id}/cancel``    200 ``OK`` (removed from the queue), 202
                                             ``CANCELLATION_REQUESTED`` (running: the app's
                                             ``{path}/cancel`` is called), 400
                                             ``ALREADY_COMPLETED``, 404 ``NOT_FOUND``
``ANY /{app}[/{path}]``                      direct run: proxied straight to the app
``GET /health``                              ``{"status": "ok", "apps": [...]}``
``GET|PUT|DELETE /_localfal/routes[/{app}]``  inspect / add / remove routes at run time
                                             (``fail_rate``, ``slowdown``: inject a
                                             regression, :class:`~abplatform.local.queue.Fault`)
===========================================  ===============================================

Behaviour:

* Every request to an app carries ``x-fal-request-id``; responses carry it back, which
  also tells fal_client that a 5xx came from the app, not from an ingress (no retry).
* Runner hints, as fal routes them: a request with ``X-Fal-Runner-Hint`` goes to a runner
  of the app whose last answer listed that hint in ``X-Fal-Runner-Hints`` (what the
  app's ``provide_hints()`` returns); without a match, round-robin over its runners.
* Queued requests of one app run first-in first-out, at most ``concurrency`` at a time
  (default 1: one runner with ``max_multiplexing = 1``). Direct runs bypass the queue.
* ``X-Fal-Request-Timeout`` (fal_client's ``start_timeout``): a request still queued
  after that many seconds completes with 504 and ``X-Fal-Request-Timeout-Type: user``.
* An unreachable app gives 502 ``{"detail": ...}``; an unknown app id 404 with the
  known ids. A request cancelled while queued completes with 499.
* Memory is bounded: a result is dropped ``fetched_ttl_s`` after it is first fetched, or
  ``result_ttl_s`` after completion if never fetched, and the oldest finished records
  go first past ``max_records``. Request bodies are dropped once forwarded.
* Not implemented: webhooks (``fal_webhook``), priorities, logs (always empty), streaming,
  realtime/websockets, retries of failed runners, authentication (any key is accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from abplatform.local.queue import (
    QUEUE_CONFIG_ENV,
    REQUEST_ID_HEADER,
    Fault,
    QueueStandIn,
    RouteSpec,
    _json,
    _Record,
    _truthy,
)

__all__ = [
    "QUEUE_CONFIG_ENV",
    "QueueStandIn",
    "RouteSpec",
    "create_queue_app",
    "queue_app_from_env",
]


class RouteBody(BaseModel):
    """Body of ``PUT /_localfal/routes/{owner}/{alias}``."""

    url: str = Field(min_length=1, description="Base URL of the app, e.g. http://127.0.0.1:8101")
    concurrency: int = Field(default=1, ge=1, le=1024, description="Queued requests at once.")
    replicas: list[str] = Field(default_factory=list, description="More runners' base URLs.")
    fail_rate: float = Field(default=0.0, ge=0, le=1, description="Injected failures (fraction).")
    slowdown: float = Field(default=1.0, ge=1, le=100, description="Injected slowdown factor.")


def create_queue_app(
    routes: Mapping[str, str],
    *,
    concurrency: int | Mapping[str, int] = 1,
    result_ttl_s: float = 600.0,
    fetched_ttl_s: float = 30.0,
    max_records: int = 10_000,
    app_timeout_s: float = 600.0,
) -> FastAPI:
    """Build the FastAPI app of the queue/run stand-in (see the module docstring).

    Args:
        routes: fal app id ("owner/alias", e.g. "abplatform/model-v1") -> base URL of the
            locally served app (e.g. "http://127.0.0.1:8101").
        concurrency: queued requests run at once per app: one number for all, or per app
            id (default 1 for ids not listed).
        result_ttl_s: seconds a finished, never fetched result is kept.
        fetched_ttl_s: seconds a result is kept after its first fetch.
        max_records: requests held at most (oldest finished dropped first).
        app_timeout_s: read timeout of one call to an app, in seconds.

    Returns:
        The app; ``app.state.queue`` is its ``QueueStandIn``. Its lifespan opens the HTTP
        client, so serve it (uvicorn, or ``with TestClient(app)``).

    Raises:
        ValueError: an app id is not "owner/alias" or a URL is not http(s).
    """
    queue = QueueStandIn(
        routes,
        concurrency=concurrency,
        result_ttl_s=result_ttl_s,
        fetched_ttl_s=fetched_ttl_s,
        max_records=max_records,
        app_timeout_s=app_timeout_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await queue.start()
        try:
            yield
        finally:
            await queue.aclose()

    app = FastAPI(title="abplatform local fal queue stand-in", lifespan=lifespan)
    app.state.queue = queue
    _add_admin_routes(app, queue)
    _add_status_routes(app, queue)
    _add_queue_routes(app, queue)
    _add_run_routes(app, queue)
    return app


def _urls(request: Request, app_id: str, request_id: str) -> dict[str, str]:
    base = f"{str(request.base_url).rstrip('/')}/queue/{app_id}/requests/{request_id}"
    return {
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
    }


def _not_found(request_id: str) -> JSONResponse:
    return _json(
        404, {"status": "NOT_FOUND", "detail": f"Request {request_id} not found"}, request_id
    )


def _add_admin_routes(app: FastAPI, queue: QueueStandIn) -> None:
    """Health and the route table (``/_localfal/routes``)."""

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "apps": sorted(queue.routes), "requests": len(queue)}

    @app.get("/_localfal/routes")
    async def list_routes() -> dict[str, Any]:
        return {k: {"url": v.url, "concurrency": v.concurrency} for k, v in queue.routes.items()}

    @app.put("/_localfal/routes/{owner}/{alias}")
    async def put_route(owner: str, alias: str, body: RouteBody) -> Response:
        try:
            fault = None
            if body.fail_rate > 0 or body.slowdown > 1:
                fault = Fault(body.fail_rate, body.slowdown)
            spec = RouteSpec(body.url, body.concurrency, tuple(body.replicas), fault)
            queue.set_route(f"{owner}/{alias}", spec)
        except ValueError as exc:
            return _json(422, {"detail": str(exc)})
        return _json(200, {"app_id": f"{owner}/{alias}", "url": body.url})

    @app.delete("/_localfal/routes/{owner}/{alias}")
    async def delete_route(owner: str, alias: str) -> Response:
        if queue.routes.pop(f"{owner}/{alias}", None) is None:
            return queue.unknown_app(f"{owner}/{alias}")
        return _json(200, {"deleted": f"{owner}/{alias}"})


def _add_status_routes(app: FastAPI, queue: QueueStandIn) -> None:
    """Status of a queued request: polled, or streamed as server-sent events."""

    def status_body(rec: _Record, request: Request, app_id: str) -> dict[str, Any]:
        request_id = rec.request_id
        logs: list[Any] | None = [] if _truthy(request.query_params.get("logs")) else None
        body: dict[str, Any] = {
            "status": rec.state,
            "request_id": request_id,
            "logs": logs,
            **_urls(request, app_id, request_id),
        }
        if rec.state == "IN_QUEUE":
            body["queue_position"] = queue.queue_position(rec)
        elif rec.state == "COMPLETED":
            started = rec.started_at if rec.started_at is not None else rec.completed_at
            assert rec.completed_at is not None and started is not None
            body["metrics"] = {"inference_time": round(rec.completed_at - started, 6)}
            if rec.status_code is not None and rec.status_code >= 400:
                body["error"] = f"Request failed with status {rec.status_code}"
                body["error_type"] = rec.response_headers.get("x-fal-error-type")
        return body

    @app.get("/queue/{owner}/{alias}/requests/{request_id}/status")
    async def status(owner: str, alias: str, request_id: str, request: Request) -> Response:
        app_id = f"{owner}/{alias}"
        rec = queue.get(app_id, request_id)
        if rec is None:
            return _not_found(request_id)
        return _json(200, status_body(rec, request, app_id), request_id)

    @app.get("/queue/{owner}/{alias}/requests/{request_id}/status/stream")
    async def status_stream(owner: str, alias: str, request_id: str, request: Request) -> Response:
        app_id = f"{owner}/{alias}"
        rec = queue.get(app_id, request_id)
        if rec is None:
            return _not_found(request_id)

        async def events() -> AsyncIterator[bytes]:
            last = None
            while True:
                if rec.state != last:
                    last = rec.state
                    yield f"data: {json.dumps(status_body(rec, request, app_id))}\n\n".encode()
                if last == "COMPLETED":
                    return
                try:  # a comment line every 15 s keeps the connection open, as fal's does
                    await asyncio.wait_for(rec.done.wait(), 15.0)
                except TimeoutError:
                    yield b": keep-alive\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={REQUEST_ID_HEADER: request_id, "cache-control": "no-cache"},
        )


def _add_queue_routes(app: FastAPI, queue: QueueStandIn) -> None:
    """Submit, result and cancel of queued requests."""

    @app.get("/queue/{owner}/{alias}/requests/{request_id}")
    async def result(owner: str, alias: str, request_id: str) -> Response:
        rec = queue.get(f"{owner}/{alias}", request_id)
        if rec is None:
            return _not_found(request_id)
        if rec.state != "COMPLETED" or rec.status_code is None:
            return _json(400, {"detail": "Request is still in progress"}, request_id)
        queue.mark_fetched(rec)
        return Response(
            content=rec.response_body,
            status_code=rec.status_code,
            headers={**rec.response_headers, REQUEST_ID_HEADER: request_id},
        )

    @app.put("/queue/{owner}/{alias}/requests/{request_id}/cancel")
    async def cancel(owner: str, alias: str, request_id: str) -> Response:
        rec = queue.get(f"{owner}/{alias}", request_id)
        if rec is None:
            return _not_found(request_id)
        code, body = queue.cancel(rec)
        return _json(code, body, request_id)

    async def submit(request: Request, owner: str, alias: str, path: str = "") -> Response:
        app_id = f"{owner}/{alias}"
        if app_id not in queue.routes:
            return queue.unknown_app(app_id)
        rec = queue.submit(app_id, path, await request.body(), request.headers)
        body: dict[str, Any] = {
            "request_id": rec.request_id,
            **_urls(request, app_id, rec.request_id),
            "queue_position": queue.queue_position(rec) if rec.state == "IN_QUEUE" else 0,
        }
        return _json(200, body, rec.request_id)

    app.add_api_route("/queue/{owner}/{alias}", submit, methods=["POST"])
    app.add_api_route("/queue/{owner}/{alias}/{path:path}", submit, methods=["POST"])


def _add_run_routes(app: FastAPI, queue: QueueStandIn) -> None:
    """Direct runs, proxied straight to the app."""

    async def run(request: Request, owner: str, alias: str, path: str = "") -> Response:
        app_id = f"{owner}/{alias}"
        if app_id not in queue.routes:
            return queue.unknown_app(app_id)
        request_id = str(uuid.uuid4())
        status_code, content, headers = await queue.call_app(
            app_id,
            request.method,
            path,
            await request.body(),
            queue.forwarded_headers(request.headers, request_id),
        )
        return Response(
            content=content,
            status_code=status_code,
            headers={**headers, REQUEST_ID_HEADER: request_id},
        )

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app.add_api_route("/{owner}/{alias}", run, methods=methods)
    app.add_api_route("/{owner}/{alias}/{path:path}", run, methods=methods)


def queue_app_from_env() -> FastAPI:
    """``create_queue_app`` configured from ``$ABPLATFORM_LOCALFAL_QUEUE`` (JSON
    ``{"routes": {app_id: url}, "concurrency": {app_id: n}}``): the factory that
    ``python -m abplatform.local.serve abplatform.local.gateway:queue_app_from_env``
    serves.

    Raises:
        RuntimeError: the variable is unset or not valid JSON.
    """
    raw = os.environ.get(QUEUE_CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{QUEUE_CONFIG_ENV} is not set")
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise RuntimeError(f"{QUEUE_CONFIG_ENV} is not valid JSON: {exc}") from exc
    return create_queue_app(config.get("routes", {}), concurrency=config.get("concurrency", {}))
