"""fal's ``http`` middlewares run by one plain ASGI middleware behave as Starlette's
``BaseHTTPMiddleware`` would run them: same order, headers they set reach the client,
context they set is seen by the endpoint, errors propagate."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from abplatform.serving.middleware import install_fal_middlewares

CONTEXT: contextvars.ContextVar[str] = contextvars.ContextVar("ctx", default="unset")


def register(app: FastAPI) -> None:
    """Like fal's ``_add_extra_middlewares``: three ``@app.middleware("http")`` functions."""

    @app.middleware("http")
    async def inner(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-order"] = response.headers.get("x-order", "") + "inner,"
        return response

    @app.middleware("http")
    async def context(request: Any, call_next: Any) -> Any:
        token = CONTEXT.set(request.headers.get("x-ctx", "none"))
        try:
            return await call_next(request)
        finally:
            CONTEXT.reset(token)

    @app.middleware("http")
    async def outer(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-order"] = response.headers.get("x-order", "") + "outer"
        return response


def make_app(buffered: bool) -> FastAPI:
    app = FastAPI()

    @app.post("/")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return {"body": body, "context": CONTEXT.get()}

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("boom")

    if buffered:
        install_fal_middlewares(app, register)
    else:
        register(app)
    return app


@pytest.mark.parametrize("buffered", [False, True], ids=["BaseHTTPMiddleware", "buffered"])
def test_same_behaviour_as_starlettes_base_http_middleware(buffered: bool) -> None:
    with TestClient(make_app(buffered), raise_server_exceptions=False) as client:
        r = client.post("/", json={"a": [1, 2]}, headers={"x-ctx": "req-7"})
        assert r.status_code == 200
        assert r.json() == {"body": {"a": [1, 2]}, "context": "req-7"}
        assert r.headers["x-order"] == "inner,outer"
        assert int(r.headers["content-length"]) == len(r.content)
        assert client.get("/fail").status_code == 500
        assert client.post("/", content=b"not json").status_code == 422
