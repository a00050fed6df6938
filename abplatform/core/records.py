"""The event records: one routed request, one outcome (feedback) value.

These frozen dataclasses are the one definition of a log row. The router builds them, the
batch writer buffers and spills them, the log store copies them into PostgreSQL (their
field names are the table's columns, in order), the rollups aggregate them, and the
importer writes imported outcomes with them.
"""

from __future__ import annotations

import enum
import functools
import operator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar, Self


class RequestStatus(enum.StrEnum):
    """Outcome of the call to a request's assigned variant (whatever a fallback then did).

    ``ok``: the assigned variant answered. ``error`` / ``timeout``: it failed (these are
    the variant's errors, also when the control then served the request as a fallback).
    ``rejected``: the backend refused the caller's arguments (a 4xx such as 422): the
    caller's mistake, not the variant's, so it is left out of the error rate.
    """

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    REJECTED = "rejected"


@functools.cache
def _columns(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@functools.cache
def _row_getter(cls: type) -> operator.attrgetter[Any]:
    return operator.attrgetter(*_columns(cls))


class _Record:
    """JSON round trip for the spill files (datetimes as ISO 8601 strings)."""

    __slots__ = ()
    TIME_FIELDS: ClassVar[tuple[str, ...]] = ("created_at",)

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """Field names, in order: the log table's columns this record fills."""
        return _columns(cls)

    def as_row(self) -> tuple[Any, ...]:
        """Values in :meth:`columns` order (for ``COPY``; one C-level attrgetter call, as
        the log writer calls it for every row)."""
        return _row_getter(type(self))(self)  # type: ignore[no-any-return]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (timestamps ISO 8601 with their UTC offset)."""
        out = {name: getattr(self, name) for name in self.columns()}
        for name in self.TIME_FIELDS:
            out[name] = out[name].isoformat()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_json`."""
        values = dict(data)
        for name in cls.TIME_FIELDS:
            values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RequestRecord(_Record):
    """One routed request (a row of ``requests``).

    ``assigned_variant_id`` is None for a unit outside the coverage (it is served the
    control and not analysed); ``served_variant_id`` is the variant whose answer the
    caller got (the control when a fallback served it), None when no backend answered.
    ``status`` is the outcome of the call to the assigned variant
    (:class:`RequestStatus`), so a timeout that the control rescued is still logged as
    ``timeout``, with ``fallback`` True. ``latency_ms`` is the router's wall time for the
    backend call(s), in milliseconds. ``created_at`` is timezone-aware (UTC).
    ``forced``: an operator forced the variant (QA override); the row is logged and
    never analysed.

    Routing patterns: ``experiment_id``/``phase_id`` are None for a request a route's
    rule sent straight to an app (no experiment); ``route_id`` and ``rule`` name the route
    and the rule that matched (None when the caller named an experiment).
    ``backend_app_id`` is the app that answered (the last step of a pipeline).
    ``billed_s`` is the backend time the request was billed for (seconds; see
    :mod:`abplatform.core.costs`), ``cost_usd`` its cost (None: an app without a price).
    ``calls`` is None for a single call, else JSON text of a list of :class:`CallEntry`
    objects: each step of a pipeline variant and the shadow call of a mirrored request.
    """

    request_id: str
    experiment_id: int | None
    phase_id: int | None
    unit_id: str
    assigned_variant_id: int | None
    served_variant_id: int | None
    model_version: str | None
    latency_ms: float
    status: str
    error: str | None
    created_at: datetime
    fallback: bool = False
    forced: bool = False
    route_id: int | None = None
    rule: str | None = None
    backend_app_id: str | None = None
    billed_s: float | None = None
    cost_usd: float | None = None
    calls: str | None = None


class CallKind(enum.StrEnum):
    """What a logged call of a request was: a step of a pipeline, or a shadow call."""

    STEP = "step"
    SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class CallEntry:
    """One backend call of a request beyond a plain single call, as logged in
    :attr:`RequestRecord.calls`: ``kind`` (:class:`CallKind`), ``step`` (0-based position
    in the pipeline; 0 for a shadow), ``app`` id, wall time ``ms``, ``status`` (a
    :class:`RequestStatus` value, or ``"skipped"`` for a step after a failed one),
    ``billed_s`` and ``cost_usd`` (None: no price), ``error`` text (at most 500
    characters)."""

    kind: str
    step: int
    app: str
    ms: float
    status: str
    billed_s: float
    cost_usd: float | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the ``calls`` array."""
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class OutcomeRecord(_Record):
    """One outcome value for a unit (a row of ``outcomes``): ``metric`` = ``value``,
    optionally tied to the request it rates. ``outcome_key`` makes a retried write
    idempotent.

    ``experiment_id`` and ``unit_id`` are None for feedback on a request that another
    router runner served: the log store takes them (and ``phase_id``) from the request's
    row when it writes the outcome, and keeps the outcome back until that row exists.
    """

    outcome_key: str
    experiment_id: int | None
    phase_id: int | None
    request_id: str | None
    unit_id: str | None
    metric: str
    value: float
    created_at: datetime


__all__ = ["CallEntry", "CallKind", "OutcomeRecord", "RequestRecord", "RequestStatus"]
