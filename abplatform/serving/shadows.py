"""Shadow traffic: mirror a share of a variant's requests to another app, off the
request path.

:meth:`Shadows.mirror` runs once the live answer has been sent (the router hands it to
the response as a background task): it draws whether the request is mirrored (its
variant's share) and, if so, starts the shadow call as its own asyncio task, so nothing
of the shadow (not even sending it) is on the live answer's path, and the caller never
waits for it. When the shadow call ends (answer, failure, timeout), the request's row is
logged with the shadow's :class:`~abplatform.core.records.CallEntry` in its ``calls``
(latency, status, billed seconds, cost), beside the live answer's figures, so the report
compares both on the same requests.

The live traffic keeps priority. Shadow calls go through their own connection pool (they
never take the live calls' connections), and a mirror is **shed** (not started, counted)
when ``max_in_flight`` shadow calls already run or when the router's event loop lags
more than ``max_lag_s`` behind (it is busy with live work: a shadow would slow it; the
lag is measured every 50 ms). :meth:`drain` waits for the shadows in flight (``POST
/flush``, shutdown) and cancels what is left after its timeout (their rows are logged
with status ``timeout``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from abplatform.core.records import CallEntry, CallKind, RequestRecord, RequestStatus
from abplatform.core.routing import RoutingVariant
from abplatform.serving.calls import BackendError
from abplatform.serving.plans import Plans

log = logging.getLogger("abplatform.router")


LAG_PERIOD_S = 0.05
"""How often the event loop's lag is measured (seconds)."""


class Shadows:
    """Starts, tracks, sheds and drains shadow calls (see the module docstring).

    ``plans`` should have a caller with its own connection pool; ``max_lag_s`` is the
    event-loop lag (seconds) above which new mirrors are shed.
    """

    def __init__(self, plans: Plans, max_in_flight: int = 64, max_lag_s: float = 0.02) -> None:
        self.plans = plans
        self.max_in_flight = max_in_flight
        self.max_lag_s = max_lag_s
        self._tasks: set[asyncio.Task[CallEntry]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self.lag_s = 0.0
        self.started = 0
        self.shed_full = 0
        self.shed_busy = 0

    @property
    def in_flight(self) -> int:
        """Shadow calls running now."""
        return len(self._tasks)

    def start_monitor(self) -> None:
        """Start measuring the event loop's lag (call in the running loop)."""
        self._monitor = asyncio.create_task(self._watch_lag(), name="abplatform-shadow-lag")

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_PERIOD_S)
            self.lag_s = max(0.0, loop.time() - before - LAG_PERIOD_S)

    async def mirror(
        self,
        variant: RoutingVariant,
        arguments: dict[str, Any],
        path: str,
        record: RequestRecord,
        calls: list[CallEntry] | None,
        write: Callable[[RequestRecord], None],
    ) -> None:
        """Mirror this request if drawn and not shed, logging ``record`` (with ``calls``
        and the shadow's entry) when the shadow ends; else log ``record`` now. Meant to
        run after the live answer is sent."""
        task = self.start(variant, arguments, path, record.request_id)
        if task is None:
            write(record)
        else:
            self.log_when_done(task, variant, record, calls, write)

    def start(
        self, variant: RoutingVariant, arguments: dict[str, Any], path: str, request_id: str
    ) -> asyncio.Task[CallEntry] | None:
        """Start ``variant``'s shadow call for this request if it is drawn for mirroring
        (probability ``variant.shadow.share``) and not shed; else None."""
        shadow = variant.shadow
        if shadow is None or random.random() >= shadow.share:
            return None
        if len(self._tasks) >= self.max_in_flight:
            self.shed_full += 1
            return None
        if self.lag_s > self.max_lag_s:
            self.shed_busy += 1
            return None
        self.started += 1
        task = asyncio.create_task(
            self._call(shadow.app_id, shadow.call_mode, arguments, path, request_id),
            name=f"abplatform-shadow-{request_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _call(
        self, app: str, call_mode: str, arguments: dict[str, Any], path: str, request_id: str
    ) -> CallEntry:
        started = time.perf_counter()
        try:
            result, reported = await self.plans.caller.call(
                app, call_mode, arguments, path, request_id
            )
        except BackendError as exc:
            wall = time.perf_counter() - started
            billed = 0.0 if exc.retry_safe else wall
            return self._entry(app, wall, exc.log_status, billed, str(exc.detail)[:500])
        wall = time.perf_counter() - started
        billed = self.plans.bill(app, result, reported, wall)
        return self._entry(app, wall, RequestStatus.OK.value, billed)

    def _entry(
        self, app: str, wall_s: float, status: str, billed_s: float, error: str | None = None
    ) -> CallEntry:
        return CallEntry(
            CallKind.SHADOW, 0, app, wall_s * 1000.0, status, billed_s,
            self.plans.prices.cost(app, billed_s), error,
        )  # fmt: skip

    def log_when_done(
        self,
        task: asyncio.Task[CallEntry],
        variant: RoutingVariant,
        record: RequestRecord,
        calls: list[CallEntry] | None,
        write: Callable[[RequestRecord], None],
    ) -> None:
        """Once ``task`` (``variant``'s shadow call) ends, ``write`` ``record`` with
        ``calls`` and the shadow's entry in its ``calls`` (a cancelled shadow is logged
        as a ``timeout``)."""
        app = variant.shadow.app_id if variant.shadow else "?"

        def done(t: asyncio.Task[CallEntry]) -> None:
            if t.cancelled():
                entry = self._entry(app, 0.0, "timeout", 0.0, "cancelled: the router stopped")
            elif t.exception() is not None:  # a bug, not a backend failure: keep the row
                log.error("shadow call failed: %s", t.exception())
                entry = self._entry(app, 0.0, "error", 0.0, repr(t.exception())[:500])
            else:
                entry = t.result()
            entries = [*(calls or ()), entry]
            write(dataclasses.replace(record, calls=encode(entries)))

        task.add_done_callback(done)

    async def drain(self, timeout_s: float, *, cancel: bool = True) -> bool:
        """Wait up to ``timeout_s`` for the shadow calls in flight; with ``cancel``,
        cancel the rest (their rows are logged as timeouts) and stop the lag monitor.
        True if none is left."""
        if cancel and self._monitor is not None:
            self._monitor.cancel()
        tasks = list(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        if cancel:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await asyncio.sleep(0)  # let the done callbacks log their rows
        return not pending


def encode(entries: list[CallEntry] | None) -> str | None:
    """The ``calls`` column's JSON text of ``entries`` (None for none)."""
    return json.dumps([e.to_json() for e in entries]) if entries else None


__all__ = ["Shadows", "encode"]
