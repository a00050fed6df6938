"""Input limits and error bodies that never echo large inputs.

* :class:`BodyLimit`: an ASGI middleware that refuses a request body over ``limit`` bytes
  with 413 and the limit in the message, by its ``Content-Length`` or, for a chunked
  body, as soon as the bytes read pass the limit.
* :func:`scrub`: an error detail with every ``input`` of a validation error dropped and
  long strings cut (``MAX_ECHO`` characters), for the router's own 422s and for errors
  passed through from a backend.
* :func:`plain_text`: the check behind unit ids and names: valid UTF-8, no control
  characters (PostgreSQL refuses NUL in text; a lone surrogate cannot be hashed).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_ECHO = 200
"""Longest string (characters) an error body repeats from a request or a backend."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def too_large(size: int | None, limit: int) -> str:
    """The 413 message."""
    got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return (
        f"request body is {got}; the limit is {limit} bytes (set ABPLATFORM_MAX_BODY_BYTES "
        "to change it)"
    )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 ``{"detail": ...}``."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = None
                if size is None or size > self.limit:
                    await _answer(send, 413 if size else 400, too_large(size, self.limit))
                    return
                await self.app(scope, receive, send)
                return
        # No Content-Length (chunked): read the body here, up to the limit, then replay it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await _answer(send, 413, too_large(None, self.limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"x-fal-needs-retry", b"0"),
                    (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def scrub(detail: Any, depth: int = 0) -> Any:
    """``detail`` without validation-error ``input`` values and with strings cut to
    ``MAX_ECHO`` characters (nested at most 8 deep; deeper parts become "...")."""
    if depth > 8:
        return "..."
    if isinstance(detail, str):
        return (
            detail if len(detail) <= MAX_ECHO else f"{detail[:MAX_ECHO]}... ({len(detail)} chars)"
        )
    if isinstance(detail, dict):
        return {
            str(k)[:MAX_ECHO]: scrub(v, depth + 1)
            for k, v in list(detail.items())[:50]
            if k not in ("input", "url")
        }
    if isinstance(detail, list | tuple):
        return [scrub(v, depth + 1) for v in list(detail)[:50]]
    if isinstance(detail, bool | int | float) or detail is None:
        return detail
    return scrub(str(detail), depth + 1)


def plain_text(value: str, what: str) -> str:
    """``value`` if it is valid UTF-8 without control characters.

    Raises:
        ValueError: it is not (the message names ``what`` and what is allowed).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid UTF-8 text") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def json_depth_ok(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts at most ``limit`` levels deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in item)
    return True


__all__ = ["MAX_ECHO", "BodyLimit", "json_depth_ok", "plain_text", "scrub", "too_large"]
