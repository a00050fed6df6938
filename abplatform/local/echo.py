"""A stand-in model backend that costs no CPU: it waits ``delay_ms`` and echoes its input.

The router's benchmarks and fault tests use it where a diffusers backend would eat the
cores they measure: ``LocalStack(..., backends=echo_backends(...))`` serves it under a fal
app id like the real backends. It is a real ``fal.App``, served the same way.

``POST /`` takes ``{"delay_ms": 20, "payload": ...}`` (both optional; ``delay_ms`` defaults
to ``$ABPLATFORM_ECHO_DELAY_MS``, else 20) and answers ``{"echo": payload,
"inference_ms": waited ms, "model_version": $ABPLATFORM_ECHO_VERSION}``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import fal
from pydantic import BaseModel, Field

DELAY_ENV = "ABPLATFORM_ECHO_DELAY_MS"
VERSION_ENV = "ABPLATFORM_ECHO_VERSION"


class EchoInput(BaseModel):
    """Body of ``POST /``."""

    delay_ms: float | None = Field(default=None, ge=0, le=60_000, description="Wait (ms).")
    payload: Any = Field(default=None, description="Returned as ``echo``.")


class EchoBackend(fal.App, keep_alive=60):
    """Waits, then echoes: a backend whose latency is known and whose CPU cost is nil."""

    max_multiplexing = 1024

    def setup(self) -> None:
        """Read the default delay and the version label from the environment."""
        self.default_delay_ms = float(os.environ.get(DELAY_ENV, "20"))
        self.model_version = os.environ.get(VERSION_ENV, "echo")

    @fal.endpoint("/")
    async def echo(self, inp: EchoInput) -> dict[str, Any]:
        """Wait ``delay_ms`` (ms), then answer the payload and the time waited."""
        started = time.perf_counter()
        delay = self.default_delay_ms if inp.delay_ms is None else inp.delay_ms
        await asyncio.sleep(delay / 1000.0)
        waited_ms = (time.perf_counter() - started) * 1000.0
        return {"echo": inp.payload, "inference_ms": waited_ms, "model_version": self.model_version}


__all__ = ["DELAY_ENV", "VERSION_ENV", "EchoBackend", "EchoInput"]
