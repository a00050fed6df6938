"""Serving one variant: one call, or a pipeline of calls; runner hints; what it cost.

:meth:`Plans.serve` calls a :class:`~abplatform.core.routing.RoutingVariant`:

* a plain variant: one call of its app (the fast path: no copies, no JSON);
* with ``arguments``: those constants merged over the caller's arguments first;
* with ``runner_hint``: fal's ``X-Fal-Runner-Hint`` on its first call, rendered from the
  request's arguments (``"{lora}"``), so fal prefers runners that hold it;
* with ``steps``: a pipeline: each step's arguments come from the previous output
  (``inputs``: argument ← dotted path; none: the whole output) plus its constants; the
  last step's output is served. Each call's wall time, status, billed seconds and cost
  are recorded (:class:`~abplatform.core.records.CallEntry`); after a failed step the
  rest are ``skipped`` and the request fails with that step's error.

Billing (:mod:`abplatform.core.costs`): a call's billed seconds are the backend's own
timing when it reports one (fal's queue ``metrics.inference_time``, or a ``timings``
object in the answer), else the wall time of the call; a call that never reached the
backend bills nothing. Cost = billed seconds × the app's price per second (None when the
price table has none); a pipeline's are the sums (None when any step has no price).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from abplatform.core.costs import PriceTable, reported_seconds
from abplatform.core.records import CallEntry, CallKind, RequestStatus
from abplatform.core.routing import RoutingVariant, Step, render_hint
from abplatform.serving.calls import BackendCaller, BackendError
from abplatform.serving.guard import scrub


@dataclass
class Served:
    """A variant's answer: the served ``result`` (the last step's), the ``app`` that
    gave it, billed seconds and cost (USD, None: no price), and the pipeline's calls
    (None for a single call)."""

    variant: RoutingVariant
    result: Any
    app: str
    billed_s: float
    cost_usd: float | None
    calls: list[CallEntry] | None = None


class StepInputError(Exception):
    """A step's input path is not in the previous step's output."""


def extract(output: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``output`` (``"images.0.url"``: key, index, key).

    Raises:
        StepInputError: a key or index along the path is missing.
    """
    value = output
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise StepInputError(f"the previous output has no '{path}' (missing '{part}')")
    return value


def step_arguments(step: Step, previous: Any) -> dict[str, Any]:
    """A step's arguments: its ``inputs`` read from ``previous`` (or all of ``previous``
    when it has none) plus its constant ``arguments``.

    Raises:
        StepInputError: an input path is missing, or ``previous`` is not an object and
            the step names no inputs.
    """
    if step.inputs:
        values = {name: extract(previous, path) for name, path in step.inputs.items()}
    elif isinstance(previous, dict):
        values = dict(previous)
    else:
        raise StepInputError("the previous output is not a JSON object; name the step's inputs")
    values.update(step.arguments)
    return values


class Plans:
    """Serves variants with one :class:`BackendCaller` and prices their calls."""

    def __init__(self, caller: BackendCaller, prices: PriceTable) -> None:
        self.caller = caller
        self.prices = prices

    def bill(self, app_id: str, result: Any, reported_s: float | None, wall_s: float) -> float:
        """Billed seconds of a successful call (see the module docstring)."""
        if reported_s is not None:
            return reported_s
        own = reported_seconds(result)
        return wall_s if own is None else own

    async def serve(
        self, variant: RoutingVariant, arguments: dict[str, Any], path: str, request_id: str
    ) -> Served:
        """Call ``variant`` (see the module docstring).

        Raises:
            BackendError: a call failed; its ``billed_s``, ``cost_usd`` and (pipelines)
                ``calls`` are set.
        """
        app = variant.backend_app_id
        if variant.plain:
            started = time.perf_counter()
            try:
                result, reported = await self.caller.call(
                    app, variant.call_mode, arguments, path, request_id
                )
            except BackendError as exc:
                exc.billed_s = 0.0 if exc.retry_safe else time.perf_counter() - started
                exc.cost_usd = self.prices.cost(app, exc.billed_s)
                raise
            billed = self.bill(app, result, reported, time.perf_counter() - started)
            return Served(variant, result, app, billed, self.prices.cost(app, billed))
        return await self._serve_plan(variant, arguments, path, request_id)

    async def _serve_plan(
        self, variant: RoutingVariant, arguments: dict[str, Any], path: str, request_id: str
    ) -> Served:
        args = {**arguments, **variant.arguments} if variant.arguments else arguments
        hint = render_hint(variant.runner_hint, arguments)
        first = Step(variant.backend_app_id, path, call_mode=variant.call_mode)
        plan = (first, *variant.steps)
        entries: list[CallEntry] = []
        result: Any = None
        for i, step in enumerate(plan):
            if i:
                try:
                    args = step_arguments(step, result)
                except StepInputError as exc:
                    error = BackendError(502, "error", scrub({
                        "backend": step.app_id, "step": i, "error": f"step {i} input: {exc}"
                    }))  # fmt: skip
                    entries.append(self._entry(i, step.app_id, 0.0, "error", 0.0, error))
                    raise self._failed(error, entries, plan, i, variant) from exc
            started = time.perf_counter()
            try:
                result, reported = await self.caller.call(
                    step.app_id, step.call_mode, args, step.path, request_id,
                    hint=hint if i == 0 else None,
                )  # fmt: skip
            except BackendError as exc:
                wall = time.perf_counter() - started
                billed = 0.0 if exc.retry_safe else wall
                entries.append(self._entry(i, step.app_id, wall, exc.log_status, billed, exc))
                raise self._failed(exc, entries, plan, i, variant) from None
            wall = time.perf_counter() - started
            billed = self.bill(step.app_id, result, reported, wall)
            entries.append(self._entry(i, step.app_id, wall, RequestStatus.OK.value, billed))
        return Served(
            variant, result, plan[-1].app_id, sum(e.billed_s for e in entries),
            _total_cost(entries), entries if variant.steps else None,
        )  # fmt: skip

    def _entry(
        self, step: int, app: str, wall_s: float, status: str, billed_s: float,
        error: BackendError | None = None, kind: str = CallKind.STEP,
    ) -> CallEntry:  # fmt: skip
        """The log entry of one call."""
        return CallEntry(
            kind=kind, step=step, app=app, ms=wall_s * 1000.0, status=status, billed_s=billed_s,
            cost_usd=self.prices.cost(app, billed_s),
            error=None if error is None else str(error.detail)[:500],
        )  # fmt: skip

    def _failed(
        self, exc: BackendError, entries: list[CallEntry], plan: tuple[Step, ...], failed: int,
        variant: RoutingVariant,
    ) -> BackendError:  # fmt: skip
        """``exc`` with the pipeline's calls (the steps after ``failed`` skipped) and the
        billing of the calls made."""
        for j in range(failed + 1, len(plan)):
            entries.append(CallEntry(CallKind.STEP, j, plan[j].app_id, 0.0, "skipped", 0.0, None))
        exc.billed_s = sum(e.billed_s for e in entries)
        exc.cost_usd = _total_cost(entries)
        exc.calls = entries if variant.steps else None
        return exc


def _total_cost(entries: list[CallEntry]) -> float | None:
    """The summed cost of the calls made, None when one of them has no price."""
    made = [e for e in entries if e.status != "skipped"]
    if any(e.cost_usd is None for e in made):
        return None
    return sum(e.cost_usd or 0.0 for e in made)


__all__ = ["Plans", "Served", "StepInputError", "extract", "step_arguments"]
