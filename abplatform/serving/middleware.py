"""fal's HTTP middlewares, run without Starlette's ``BaseHTTPMiddleware`` machinery.

fal's ``App._add_extra_middlewares`` registers three ``@app.middleware("http")``
functions (runner hints, the request context, the log context). Starlette runs each one
as a ``BaseHTTPMiddleware``, which spawns an anyio task group and memory streams per
request: in the router's profile (issue 10, py-spy, 8 clients) anyio alone was a quarter
of the router's CPU. :func:`install_fal_middlewares` lets fal register them as usual,
collects the functions instead, and runs the same functions from one plain ASGI
middleware whose ``call_next`` runs the inner app in the same task and buffers its
response. fal's own code decides what each middleware does; only how ``call_next`` is
carried changes. Buffering suits the router, whose endpoints answer small JSON bodies; an
app with streaming responses must not use this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from abplatform.serving.guard import ASGIApp, Message, Receive, Scope, Send

Dispatch = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


class BufferedHTTPMiddlewares:
    """Run Starlette-style ``dispatch(request, call_next)`` functions, outermost first,
    around ``app``; ``call_next`` runs the inner app to completion and returns its
    (buffered) response."""

    def __init__(self, app: ASGIApp, dispatches: Sequence[Dispatch]) -> None:
        self.app = app
        self.dispatches = tuple(dispatches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.dispatches:
            await self.app(scope, receive, send)
            return

        async def call(i: int, request: Request) -> Response:
            if i == len(self.dispatches):
                return await self._inner(scope, receive)
            return await self.dispatches[i](request, lambda req: call(i + 1, req))

        response = await call(0, Request(scope, receive))
        await response(scope, receive, send)

    async def _inner(self, scope: Scope, receive: Receive) -> Response:
        start: Message = {}
        body: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        response = Response(b"".join(body), status_code=start.get("status", 500))
        response.raw_headers = list(start.get("headers", ()))
        return response


@contextmanager
def collecting_http_middlewares(app: Any) -> Any:
    """While active, ``app.middleware("http")`` collects the decorated functions (in
    registration order, innermost first) instead of adding ``BaseHTTPMiddleware``s."""
    collected: list[Dispatch] = []
    original = app.middleware

    def middleware(kind: str) -> Callable[[Dispatch], Dispatch]:
        if kind != "http":
            return original(kind)  # type: ignore[no-any-return]

        def register(func: Dispatch) -> Dispatch:
            collected.append(func)
            return func

        return register

    app.middleware = middleware
    try:
        yield collected
    finally:
        app.middleware = original


def install_fal_middlewares(app: Any, add_extra_middlewares: Callable[[Any], None]) -> None:
    """Call fal's ``_add_extra_middlewares(app)`` and run its ``http`` middlewares with
    :class:`BufferedHTTPMiddlewares`, in the same order (the last registered outermost)
    and at the same place in the stack."""
    with collecting_http_middlewares(app) as collected:
        add_extra_middlewares(app)
    app.add_middleware(BufferedHTTPMiddlewares, dispatches=list(reversed(collected)))


__all__ = ["BufferedHTTPMiddlewares", "collecting_http_middlewares", "install_fal_middlewares"]
