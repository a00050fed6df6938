"""The state and logic of the local fal queue stand-in: routes, queued requests, their
results, cancellation and expiry. :mod:`abplatform.local.gateway` serves it over HTTP
(its module docstring lists the routes and the behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi.responses import JSONResponse

__all__ = ["QUEUE_CONFIG_ENV", "Fault", "QueueStandIn", "RouteSpec"]

log = logging.getLogger("abplatform.local.queue")

#: Environment variable read by ``queue_app_from_env``: JSON ``{"routes": {app_id: url},
#: "concurrency": {app_id: n}}``.
QUEUE_CONFIG_ENV = "ABPLATFORM_LOCALFAL_QUEUE"

REQUEST_ID_HEADER = "x-fal-request-id"
RUNNER_HINT_HEADER = "x-fal-runner-hint"
RUNNER_HINTS_HEADER = "x-fal-runner-hints"
START_TIMEOUT_HEADER = "x-fal-request-timeout"
TIMEOUT_TYPE_HEADER = "x-fal-request-timeout-type"

#: Request headers forwarded to the app (besides every ``x-fal-*`` header).
_FORWARD_REQUEST_HEADERS = ("content-type", "accept", "user-agent")
#: Response headers passed back from the app (besides every ``x-fal-*`` header).
_FORWARD_RESPONSE_HEADERS = ("content-type",)

State = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


@dataclass(frozen=True)
class Fault:
    """A regression injected into an app id's route, for demos and tests (never into a
    backend's code): ``fail_rate`` (a fraction) of its calls answer 500 without reaching
    the app; the others take ``slowdown`` times as long (the gateway waits the extra time
    after the app has answered)."""

    fail_rate: float = 0.0
    slowdown: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0 or not 1.0 <= self.slowdown <= 100.0:
            raise ValueError(f"need 0 <= fail_rate <= 1 and 1 <= slowdown <= 100, got {self}")


@dataclass
class RouteSpec:
    """Where an app id is served: ``url`` (e.g. ``http://127.0.0.1:8101``), more runners
    of the same app (``replicas``: requests go round-robin over all, as fal spreads them
    over an app's runners), how many queued requests may run at once, and an injected
    :class:`Fault` (None: none)."""

    url: str
    concurrency: int = 1
    replicas: tuple[str, ...] = ()
    fault: Fault | None = None

    @property
    def urls(self) -> tuple[str, ...]:
        """Every runner's base URL."""
        return (self.url, *self.replicas)


@dataclass
class _Record:
    """One queued request and, once done, its result."""

    request_id: str
    app_id: str
    path: str
    body: bytes
    headers: dict[str, str]
    submitted_at: float
    start_timeout_s: float | None
    state: State = "IN_QUEUE"
    started_at: float | None = None
    completed_at: float | None = None
    fetched_at: float | None = None
    status_code: int | None = None
    response_body: bytes = b""
    response_headers: dict[str, str] = field(default_factory=dict)
    cancel_requested: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


def _json(status: int, content: Any, request_id: str | None = None) -> JSONResponse:
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return JSONResponse(content, status_code=status, headers=headers)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _bad_gateway(app_id: str, url: str, exc: Exception) -> tuple[int, bytes, dict[str, str]]:
    payload = {"detail": f"app {app_id} at {url} failed: {type(exc).__name__}: {exc}"}
    return 502, json.dumps(payload).encode(), {"content-type": "application/json"}


def _join(base: str, path: str) -> str:
    path = path.lstrip("/")
    return base.rstrip("/") + "/" + path


class QueueStandIn:
    """The queue's state and logic; :func:`abplatform.local.gateway.create_queue_app`
    wraps it in HTTP routes.

    Must be used from one event loop. Call ``start()`` before use and ``aclose()`` after.
    """

    def __init__(
        self,
        routes: Mapping[str, str | RouteSpec],
        *,
        concurrency: int | Mapping[str, int] = 1,
        result_ttl_s: float = 600.0,
        fetched_ttl_s: float = 30.0,
        max_records: int = 10_000,
        app_timeout_s: float = 600.0,
    ) -> None:
        """See ``create_queue_app`` for the arguments."""
        self.routes: dict[str, RouteSpec] = {}
        for app_id, target in routes.items():
            if isinstance(target, RouteSpec):
                spec = target
            else:
                n = concurrency if isinstance(concurrency, int) else concurrency.get(app_id, 1)
                spec = RouteSpec(url=target, concurrency=n)
            self.set_route(app_id, spec)
        self.result_ttl_s = result_ttl_s
        self.fetched_ttl_s = fetched_ttl_s
        self.max_records = max_records
        self.app_timeout_s = app_timeout_s
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._waiting: dict[str, deque[str]] = {}
        self._running: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        self._turn: dict[str, itertools.count[int]] = {}
        self._hints: dict[str, frozenset[str]] = {}  # runner URL -> hints it last reported

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP client to the apps and start the periodic sweep of old results."""
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.app_timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            trust_env=False,  # app URLs are explicit: never go through an HTTP proxy
        )
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="localfal-queue-sweep")

    async def aclose(self) -> None:
        """Cancel in-flight work and close the HTTP client."""
        self._closing = True
        tasks = [*self._tasks, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client used to call apps (open between ``start`` and ``aclose``)."""
        if self._client is None:
            raise RuntimeError("QueueStandIn.start() was not called")
        return self._client

    # -- routes --------------------------------------------------------------------------

    def set_route(self, app_id: str, spec: RouteSpec) -> None:
        """Serve ``app_id`` ("owner/alias") from ``spec.url``; replaces an existing route.

        Raises:
            ValueError: ``app_id`` is not "owner/alias" or ``spec`` is invalid.
        """
        owner, sep, alias = app_id.partition("/")
        if not sep or not owner or not alias or "/" in alias:
            raise ValueError(f"app id must look like 'owner/alias', got {app_id!r}")
        bad_url = any(not u.startswith(("http://", "https://")) for u in spec.urls)
        if bad_url or spec.concurrency < 1:
            raise ValueError(f"invalid route for {app_id}: {spec}")
        self.routes[app_id] = RouteSpec(
            url=spec.url.rstrip("/"),
            concurrency=spec.concurrency,
            replicas=tuple(u.rstrip("/") for u in spec.replicas),
            fault=spec.fault,
        )

    def unknown_app(self, app_id: str) -> JSONResponse:
        """The 404 answered for an app id with no route."""
        known = sorted(self.routes)
        return _json(
            404,
            {
                "detail": f"Application {app_id!r} not found; known app ids: {', '.join(known)}",
                "known_app_ids": known,
            },
        )

    # -- forwarding ----------------------------------------------------------------------

    @staticmethod
    def forwarded_headers(headers: Mapping[str, str], request_id: str) -> dict[str, str]:
        """Headers sent to the app: content headers, ``x-fal-*``, and the request id."""
        out = {
            k: v
            for k, v in headers.items()
            if k.lower() in _FORWARD_REQUEST_HEADERS or k.lower().startswith("x-fal-")
        }
        out[REQUEST_ID_HEADER] = request_id
        return out

    async def call_app(
        self, app_id: str, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """Send one request to the app; return (status, body, headers to pass back).

        A transport failure becomes 502 with a JSON ``detail``.
        """
        spec = self.routes.get(app_id)
        if spec is None:
            payload = {"detail": f"Application {app_id!r} is no longer routed"}
            return 502, json.dumps(payload).encode(), {"content-type": "application/json"}
        fault = spec.fault
        if fault is not None and random.random() < fault.fail_rate:
            payload = {"detail": f"injected failure (a fault on the route of {app_id})"}
            return 500, json.dumps(payload).encode(), {"content-type": "application/json"}
        started = time.monotonic()
        result = await self._call_runner(app_id, spec, method, path, body, headers)
        if fault is not None and fault.slowdown > 1.0:
            await asyncio.sleep((fault.slowdown - 1.0) * (time.monotonic() - started))
        return result

    async def _call_runner(
        self, app_id: str, spec: RouteSpec, method: str, path: str, body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, bytes, dict[str, str]]:  # fmt: skip
        urls = self._runner_order(app_id, spec.urls, headers)
        for attempt in range(len(urls)):
            base = urls[attempt]
            try:
                resp = await self.client.request(
                    method, _join(base, path), content=body, headers=headers
                )
                break
            except httpx.ConnectError as exc:  # nothing was sent: another runner may answer
                if attempt + 1 < len(urls):
                    continue
                return _bad_gateway(app_id, base, exc)
            except httpx.HTTPError as exc:
                return _bad_gateway(app_id, base, exc)
        provided = resp.headers.get(RUNNER_HINTS_HEADER)
        if provided is not None:
            self._hints[base] = frozenset(h for h in provided.split(",") if h)
        passed = {
            k: v
            for k, v in resp.headers.items()
            if k.lower() in _FORWARD_RESPONSE_HEADERS
            or (k.lower().startswith("x-fal-") and k.lower() != REQUEST_ID_HEADER)
        }
        return resp.status_code, resp.content, passed

    def _runner_order(
        self, app_id: str, urls: tuple[str, ...], headers: Mapping[str, str]
    ) -> list[str]:
        """The app's runners in the order to try them: round-robin, except that a request
        with a runner hint goes first to a runner whose last answer listed that hint in
        ``X-Fal-Runner-Hints`` (fal's ``provide_hints()``): exact match, best effort."""
        first = next(self._turn.setdefault(app_id, itertools.count())) % len(urls)
        order = [urls[(first + i) % len(urls)] for i in range(len(urls))]
        hint = next((v for k, v in headers.items() if k.lower() == RUNNER_HINT_HEADER), None)
        if hint:
            order.sort(key=lambda url: hint not in self._hints.get(url, frozenset()))
        return order

    # -- queue ---------------------------------------------------------------------------

    def submit(self, app_id: str, path: str, body: bytes, headers: Mapping[str, str]) -> _Record:
        """Enqueue a request for ``app_id`` (which must be routed) and return its record."""
        request_id = str(uuid.uuid4())
        timeout = headers.get(START_TIMEOUT_HEADER)
        try:
            start_timeout_s = float(timeout) if timeout else None
        except ValueError:
            start_timeout_s = None
        rec = _Record(
            request_id=request_id,
            app_id=app_id,
            path=path,
            body=body,
            headers=self.forwarded_headers(headers, request_id),
            submitted_at=time.monotonic(),
            start_timeout_s=start_timeout_s,
        )
        self._records[request_id] = rec
        self._waiting.setdefault(app_id, deque()).append(request_id)
        self._sweep()
        self._pump(app_id)
        return rec

    def get(self, app_id: str, request_id: str) -> _Record | None:
        """The record of ``request_id`` if it exists and belongs to ``app_id``."""
        rec = self._records.get(request_id)
        return rec if rec is not None and rec.app_id == app_id else None

    def queue_position(self, rec: _Record) -> int:
        """0-based position of a queued request among its app's waiting requests."""
        try:
            return self._waiting[rec.app_id].index(rec.request_id)
        except (KeyError, ValueError):
            return 0

    def _pump(self, app_id: str) -> None:
        """Start queued requests of ``app_id`` while it has free slots."""
        if self._closing:
            return
        spec = self.routes.get(app_id)
        limit = spec.concurrency if spec is not None else 1
        waiting = self._waiting.get(app_id)
        while waiting and self._running.get(app_id, 0) < limit:
            rec = self._records.get(waiting.popleft())
            if rec is None or rec.state != "IN_QUEUE":
                continue
            now = time.monotonic()
            if rec.start_timeout_s is not None and now - rec.submitted_at > rec.start_timeout_s:
                detail = f"Request timed out after waiting {rec.start_timeout_s:g} s to start"
                self._complete(
                    rec, 504, {"detail": detail}, extra_headers={TIMEOUT_TYPE_HEADER: "user"}
                )
                continue
            self._running[app_id] = self._running.get(app_id, 0) + 1
            rec.state = "IN_PROGRESS"
            rec.started_at = now
            task = asyncio.create_task(self._run(rec), name=f"localfal-{rec.request_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, rec: _Record) -> None:
        try:
            status, body, headers = await self.call_app(
                rec.app_id, "POST", rec.path, rec.body, rec.headers
            )
            rec.status_code, rec.response_body, rec.response_headers = status, body, headers
        except asyncio.CancelledError:
            rec.status_code = 499
            rec.response_body = json.dumps({"detail": "Request cancelled"}).encode()
            rec.response_headers = {"content-type": "application/json"}
            raise
        except Exception as exc:  # a bug here must not leave the request hanging
            log.exception("forwarding %s failed", rec.request_id)
            rec.status_code = 502
            detail = f"gateway error: {type(exc).__name__}: {exc}"
            rec.response_body = json.dumps({"detail": detail}).encode()
            rec.response_headers = {"content-type": "application/json"}
        finally:
            rec.body = b""
            rec.state = "COMPLETED"
            rec.completed_at = time.monotonic()
            rec.done.set()
            self._running[rec.app_id] = max(0, self._running.get(rec.app_id, 1) - 1)
            self._pump(rec.app_id)

    def _complete(
        self,
        rec: _Record,
        status: int,
        content: Any,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        rec.status_code = status
        rec.response_body = json.dumps(content).encode()
        rec.response_headers = {"content-type": "application/json", **(extra_headers or {})}
        rec.body = b""
        rec.state = "COMPLETED"
        rec.completed_at = time.monotonic()
        rec.done.set()

    def cancel(self, rec: _Record) -> tuple[int, dict[str, str]]:
        """Cancel ``rec``: (HTTP status, body) as fal's queue answers them."""
        if rec.state == "IN_QUEUE":
            with contextlib.suppress(KeyError, ValueError):
                self._waiting[rec.app_id].remove(rec.request_id)
            self._complete(rec, 499, {"detail": "Request cancelled before it started"})
            return 200, {"status": "OK"}
        if rec.state == "IN_PROGRESS":
            if not rec.cancel_requested:
                rec.cancel_requested = True
                task = asyncio.create_task(self._signal_cancel(rec))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return 202, {"status": "CANCELLATION_REQUESTED"}
        return 400, {"status": "ALREADY_COMPLETED", "detail": "Request already completed"}

    async def _signal_cancel(self, rec: _Record) -> None:
        """Tell the app, as fal does: ``POST {path}/cancel`` with the same request id.
        Apps without such an endpoint answer 404/405, which is ignored: the request then
        runs to completion."""
        path = _join(rec.path, "cancel").lstrip("/") if rec.path else "cancel"
        headers = {REQUEST_ID_HEADER: rec.request_id}
        status, _, _ = await self.call_app(rec.app_id, "POST", path, b"", headers)
        log.info("cancel signal for %s: app answered %s", rec.request_id, status)

    def mark_fetched(self, rec: _Record) -> None:
        """Note the first fetch of a result (it expires ``fetched_ttl_s`` later)."""
        if rec.fetched_at is None:
            rec.fetched_at = time.monotonic()

    # -- memory bound --------------------------------------------------------------------

    def _sweep(self) -> None:
        """Drop expired results, then the oldest finished ones past ``max_records``."""
        now = time.monotonic()
        expired = [
            rid
            for rid, rec in self._records.items()
            if rec.state == "COMPLETED"
            and rec.completed_at is not None
            and (
                (rec.fetched_at is not None and now - rec.fetched_at > self.fetched_ttl_s)
                or now - rec.completed_at > self.result_ttl_s
            )
        ]
        for rid in expired:
            del self._records[rid]
        if len(self._records) > self.max_records:
            finished = [rid for rid, rec in self._records.items() if rec.state == "COMPLETED"]
            for rid in finished[: len(self._records) - self.max_records]:
                del self._records[rid]

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(5.0, self.fetched_ttl_s)))
            self._sweep()

    def __len__(self) -> int:
        """Number of requests held (queued, running, or finished and not yet dropped)."""
        return len(self._records)
