"""A stand-in model backend that costs no CPU: it waits ``delay_ms`` and echoes its input.

The router's benchmarks and fault tests use it where a diffusers backend would eat the
cores they measure: ``LocalStack(..., backends=echo_backends(...))`` serves it under a fal
app id like the real backends. It is a real ``fal.App``, served the same way.

``POST /`` takes ``{"delay_ms": 20, "payload": ..., "adapter": "lora-id", "status": 500}``
(all optional; ``delay_ms`` defaults to ``$ABPLATFORM_ECHO_DELAY_MS``, else 20) and
answers ``{"echo": payload, "inference_ms": waited ms, "timings": {"inference": s},
"model_version": $ABPLATFORM_ECHO_VERSION, "runner": $ABPLATFORM_ECHO_RUNNER or the pid,
"adapter_loaded": ..., "runner_hint": the X-Fal-Runner-Hint received}``. ``status`` makes
it fail with that HTTP status instead (a failing pipeline step). ``adapter`` stands for a
LoRA: a runner that does not hold it yet first "loads" it (waits
``$ABPLATFORM_ECHO_LOAD_MS``, default 200) and from then on lists it in fal's
``provide_hints()``, so requests hinted with it are routed to this runner.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import fal
from fastapi import Header, HTTPException
from pydantic import BaseModel, Field

DELAY_ENV = "ABPLATFORM_ECHO_DELAY_MS"
VERSION_ENV = "ABPLATFORM_ECHO_VERSION"
RUNNER_ENV = "ABPLATFORM_ECHO_RUNNER"
LOAD_ENV = "ABPLATFORM_ECHO_LOAD_MS"


class EchoInput(BaseModel):
    """Body of ``POST /``."""

    delay_ms: float | None = Field(default=None, ge=0, le=60_000, description="Wait (ms).")
    payload: Any = Field(default=None, description="Returned as ``echo``.")
    adapter: str | None = Field(default=None, max_length=200, description="A LoRA id to use.")
    status: int | None = Field(default=None, ge=400, le=599, description="Fail with this.")


class EchoBackend(fal.App, keep_alive=60):
    """Waits, then echoes: a backend whose latency is known and whose CPU cost is nil."""

    max_multiplexing = 1024

    def setup(self) -> None:
        """Read the default delay, the version label and the runner's name."""
        self.default_delay_ms = float(os.environ.get(DELAY_ENV, "20"))
        self.load_ms = float(os.environ.get(LOAD_ENV, "200"))
        self.model_version = os.environ.get(VERSION_ENV, "echo")
        self.runner = os.environ.get(RUNNER_ENV) or str(os.getpid())
        self.adapters: set[str] = set()
        self.loads = 0

    def provide_hints(self) -> list[str]:
        """The adapters this runner holds (fal sends hinted requests to such runners)."""
        return sorted(self.adapters)

    @fal.endpoint("/")
    async def echo(
        self,
        inp: EchoInput,
        x_fal_runner_hint: str | None = Header(default=None, include_in_schema=False),
    ) -> dict[str, Any]:
        """Wait ``delay_ms`` (ms; plus a load for a new ``adapter``), then answer the
        payload and the time waited, or fail with ``status``."""
        started = time.perf_counter()
        loaded = False
        if inp.adapter and inp.adapter not in self.adapters:
            await asyncio.sleep(self.load_ms / 1000.0)
            self.adapters.add(inp.adapter)
            self.loads += 1
            loaded = True
        delay = self.default_delay_ms if inp.delay_ms is None else inp.delay_ms
        await asyncio.sleep(delay / 1000.0)
        if inp.status is not None:
            raise HTTPException(inp.status, f"echo asked to fail with {inp.status}")
        waited_s = time.perf_counter() - started
        return {
            "echo": inp.payload,
            "inference_ms": waited_s * 1000.0,
            "timings": {"inference": waited_s},
            "model_version": self.model_version,
            "runner": self.runner,
            "adapter_loaded": loaded,
            "runner_hint": x_fal_runner_hint,
        }


__all__ = ["DELAY_ENV", "LOAD_ENV", "RUNNER_ENV", "VERSION_ENV", "EchoBackend", "EchoInput"]
