"""Calling a variant's backend through ``fal_client``, in the variant's call mode.

* ``run``: one direct HTTP call (``AsyncClient.run``): for backends that answer within a
  request. No queue, no polling: the router adds one local hop.
* ``queue``: fal's queue, for long jobs: ``submit``, then the request's **status stream**
  (``GET {status_url}/stream``, server-sent events; fal closes it after COMPLETED), then
  the result. Nothing polls, so completion is seen at once; ``subscribe``'s fixed polling
  interval added half an interval (25 ms at 50 ms) to every request (issue 10's profile).

Failures become :class:`BackendError` with the status the router answers (never 503:
fal treats a 503 as a dead runner), what the log records, an error detail scrubbed of
large inputs, and whether a retry is safe (``X-Fal-Needs-Retry``).

A call may carry fal's runner hint (``X-Fal-Runner-Hint``), and returns with its answer
the backend's own timing when fal's queue reported one (``metrics.inference_time`` of
the COMPLETED status, seconds), which the billing prefers to the router's wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import fal_client
import httpx
from fal_client.client import FalClientHTTPError, FalClientTimeoutError
from httpx_sse import aconnect_sse

from abplatform.serving.guard import scrub

#: Statuses of a backend's answer that mean the router's own call failed (credentials,
#: routing, throttling), not the caller's arguments: answered as 502.
ROUTER_SIDE = (401, 403, 408, 409, 429)


class BackendError(Exception):
    """A backend call failed.

    Attributes:
        status: HTTP status the router answers (4xx passed through, else 502 or 504).
        log_status: what the request log records: "rejected" when the backend refused the
            caller's arguments (a 4xx passed through: not the variant's error), else
            "error" or "timeout".
        detail: JSON-able error detail (scrubbed).
        retry_safe: whether the request may be retried elsewhere (``X-Fal-Needs-Retry``):
            true when the backend could not be reached or its runner was lost, so nothing
            ran; false for its own errors and for timeouts (work may still be running).
    """

    def __init__(self, status: int, log_status: str, detail: Any, retry_safe: bool = False):
        super().__init__(str(detail))
        self.status = status
        self.log_status = log_status
        self.detail = detail
        self.retry_safe = retry_safe
        # Set by the caller that knows (abplatform.serving.plans): what the failed
        # request was billed, and its pipeline's calls up to the failure.
        self.billed_s = 0.0
        self.cost_usd: float | None = None
        self.calls: list[Any] | None = None


def from_response(app_id: str, status: int, response: httpx.Response, path: str) -> BackendError:
    """The error for a backend's (or the gateway's) answer ``status`` ≥ 400."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:2000]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if 400 <= status < 500 and status not in ROUTER_SIDE:
        out = 404 if status in (404, 405) and path else status
        if status == 404 and not path:
            out = 502  # the app id itself is unknown: a misconfigured variant
        code = out
    else:
        code = 502
    return BackendError(
        code,
        "rejected" if code < 500 else "error",
        scrub({"backend": app_id, "status": status, "error": detail}),
        retry_safe=status in (502, 503),  # unreachable backend, or its runner was lost
    )


def from_exception(exc: BaseException, app_id: str, timeout_s: float, path: str) -> BackendError:
    """The error for an exception raised by a backend call."""
    if isinstance(exc, FalClientTimeoutError | TimeoutError):
        return BackendError(
            504, "timeout", f"backend {app_id} did not answer within {timeout_s:g} s"
        )
    if isinstance(exc, FalClientHTTPError):
        return from_response(app_id, exc.status_code, exc.response, path)
    if isinstance(exc, httpx.TransportError):
        detail = {"backend": app_id, "error": f"unreachable: {type(exc).__name__}: {exc}"}
        return BackendError(502, "error", scrub(detail), retry_safe=True)
    return BackendError(
        502, "error", scrub({"backend": app_id, "error": f"{type(exc).__name__}: {exc}"})
    )


def pooled_client(timeout_s: float, keepalive: int = 256) -> fal_client.AsyncClient:
    """A ``fal_client.AsyncClient`` on aiohttp's connection pool, keeping up to
    ``keepalive`` connections.

    Same client as fal_client's own otherwise (its transport with the backup domains,
    headers, key and timeout); only the innermost HTTP transport changes, through
    ``httpx-aiohttp`` (the aiohttp transport the OpenAI and Anthropic SDKs ship):

    * fal_client's inner client keeps 20 connections, so past 20 concurrent calls every
      call opened a new TLS connection (``SSLObject.do_handshake`` in issue 10's profile);
    * httpcore's pool checks every idle connection with a ``poll`` syscall on each request
      (``_assign_requests_to_connections``), so its cost per request grows with the pool:
      router CPU per request with the echo backend, httpcore against aiohttp, 5.16 against
      3.49 ms at 8 clients and 10.87 against 3.75 ms at 64 clients (one run each, same
      session; ``/tmp`` scratch script over ``benchmarks.bench_router``'s stack).
    """
    from asyncstdlib import cached_property as async_cached_property
    from fal_client.client import USER_AGENT, AsyncBackupDomainTransport

    class PooledAsyncClient(fal_client.AsyncClient):
        @async_cached_property(asyncio.Lock)
        async def _client(self) -> httpx.AsyncClient:
            auth = await self._auth
            from httpx_aiohttp import AiohttpTransport

            limits = httpx.Limits(max_connections=keepalive, max_keepalive_connections=keepalive)
            transport = AsyncBackupDomainTransport(transport=AiohttpTransport(limits=limits))
            return httpx.AsyncClient(
                transport=transport,
                headers={"Authorization": auth.header_value, "User-Agent": USER_AGENT},
                timeout=self.default_timeout,
            )

    return PooledAsyncClient(default_timeout=timeout_s)


class BackendCaller:
    """Calls backends with one shared ``fal_client.AsyncClient`` (its connection pool)."""

    def __init__(self, client: fal_client.AsyncClient, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s

    async def call(
        self,
        app_id: str,
        call_mode: str,
        arguments: dict[str, Any],
        path: str,
        request_id: str,
        hint: str | None = None,
    ) -> tuple[Any, float | None]:
        """The backend's JSON answer, and its own timing (seconds) when fal's queue
        reported one (else None). ``hint`` is sent as ``X-Fal-Runner-Hint``.

        Raises:
            BackendError: it failed, timed out or refused the arguments.
        """
        headers = {"x-abplatform-request-id": request_id}
        if hint is not None:
            headers[RUNNER_HINT_HEADER] = hint
        try:
            async with asyncio.timeout(self.timeout_s):
                if call_mode == "queue":
                    return await self._queue(app_id, arguments, path, headers)
                result = await self.client.run(
                    app_id, arguments, path=path, timeout=self.timeout_s, headers=headers
                )
                return result, None
        except BackendError:
            raise
        except Exception as exc:
            raise from_exception(exc, app_id, self.timeout_s, path) from exc

    async def _queue(
        self, app_id: str, arguments: dict[str, Any], path: str, headers: dict[str, str]
    ) -> tuple[Any, float | None]:
        handle = await self.client.submit(
            app_id, arguments, path=path, headers=headers, start_timeout=self.timeout_s
        )
        try:
            completed = await self._await_completion(handle.client, handle.status_url)
            if completed is None:  # the stream ended early: fall back to polling
                return await handle.get(interval=0.05), None
            response = await handle.client.get(handle.response_url, timeout=self.timeout_s)
        except (asyncio.CancelledError, TimeoutError):
            task = asyncio.ensure_future(_quiet(handle.cancel()))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
            raise
        if response.status_code >= 400:
            raise from_response(app_id, response.status_code, response, path)
        return response.json(), _inference_time(completed)

    @staticmethod
    async def _await_completion(
        client: httpx.AsyncClient, status_url: str
    ) -> dict[str, Any] | None:
        """Follow the status stream until it ends; the COMPLETED status object, or None
        when it never said COMPLETED.

        The stream is read to its end (fal closes it right after COMPLETED) rather than
        left at COMPLETED: a response closed early takes its connection with it, and the
        next call paid a new TLS handshake (``SSLObject.do_handshake`` was 9% of the
        router's CPU in queue mode, issue 10's profile)."""
        completed: dict[str, Any] | None = None
        async with aconnect_sse(client, "GET", status_url + "/stream", timeout=None) as events:
            if events.response.status_code >= 400:
                await events.response.aread()
                return None
            async for event in events.aiter_sse():
                if event.data:
                    status = json.loads(event.data)
                    if status.get("status") == "COMPLETED":
                        completed = status
        return completed


RUNNER_HINT_HEADER = "X-Fal-Runner-Hint"


def _inference_time(status: dict[str, Any]) -> float | None:
    """fal's own timing of a completed queued request (``metrics.inference_time``, s)."""
    metrics = status.get("metrics")
    value = metrics.get("inference_time") if isinstance(metrics, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


_BACKGROUND: set[asyncio.Task[None]] = set()


async def _quiet(coro: Any) -> None:
    with contextlib.suppress(Exception):
        await coro


__all__ = [
    "RUNNER_HINT_HEADER",
    "BackendCaller",
    "BackendError",
    "from_exception",
    "from_response",
    "pooled_client",
]
