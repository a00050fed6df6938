"""The routing decision: which variant serves a unit's request, and why.

The router app keeps HTTP, fal and logging; the decision itself is this pure function
of a config snapshot and a unit id, so it is tested in-process and is the same wherever
it runs (router, simulations, the dashboard's preview).
"""

from __future__ import annotations

import enum
import functools
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abplatform.core import assignment
from abplatform.core.errors import ConflictError, InvalidInputError
from abplatform.core.lifecycle import serves

MAX_HINT_LENGTH = 200
"""Longest runner hint sent (characters)."""


@dataclass(frozen=True)
class Step:
    """One more app call of a pipeline variant, fed by the previous call's output.

    ``inputs`` maps each argument of this call to a dotted path in the previous output
    (``"image.url"``, ``"images.0.url"``); without ``inputs`` the whole previous output is
    passed on. ``arguments`` are constants added to them (e.g. ``{"scale": 2}``).
    """

    app_id: str
    path: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict, hash=False)
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)
    call_mode: str = "run"


@dataclass(frozen=True)
class Shadow:
    """Mirror ``share`` (a fraction) of a variant's requests to ``app_id``; its answer is
    logged, never served."""

    app_id: str
    share: float
    call_mode: str = "run"


@dataclass(frozen=True)
class RoutingVariant:
    """What the router needs to call one variant.

    ``call_mode`` is "run" (one direct call) or "queue" (fal's queue: submit, status
    stream, result). ``arguments`` are constants merged over the caller's arguments for
    the first call (e.g. ``{"width": 512}``); ``steps`` make it a pipeline (each step's
    output feeds the next; the last one's is served); ``runner_hint`` is a template of
    fal's ``X-Fal-Runner-Hint`` (``"{lora}"`` takes the request's ``lora`` argument);
    ``shadow`` mirrors a share of its requests to another app.
    """

    id: int
    key: str
    model_version: str
    backend_app_id: str
    is_control: bool
    call_mode: str = "run"
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)
    steps: tuple[Step, ...] = ()
    runner_hint: str | None = None
    shadow: Shadow | None = None

    @functools.cached_property
    def plain(self) -> bool:
        """One call, no hint, no shadow, no argument overrides: the fast path."""
        return not (self.steps or self.runner_hint or self.shadow or self.arguments)

    @property
    def apps(self) -> tuple[str, ...]:
        """Every app the variant calls to answer, in order (its shadow aside)."""
        return (self.backend_app_id, *(s.app_id for s in self.steps))


def hint_fields(template: str) -> tuple[str, ...]:
    """The argument names a runner-hint template reads (``"lora-{lora}"`` → ``("lora",)``).

    Raises:
        InvalidInputError: longer than :data:`MAX_HINT_LENGTH`, unbalanced braces, or a
            placeholder that is not a plain argument name (no formats, indexes or dots).
    """
    if len(template) > MAX_HINT_LENGTH or not template.strip():
        raise InvalidInputError(
            f"runner hint {template[:60]!r} must have 1-{MAX_HINT_LENGTH} characters"
        )
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInputError(f"runner hint {template!r}: {exc} (use {{name}})") from None
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise InvalidInputError(
                f"runner hint {template!r}: placeholder {{{name}}} must be a plain argument "
                "name, e.g. {lora}"
            )
        names.append(name)
    return tuple(names)


def render_hint(template: str | None, arguments: Mapping[str, Any]) -> str | None:
    """The runner hint for a request: ``template`` with each ``{name}`` replaced by the
    request's argument ``name``; None without a template or when an argument is missing
    or not a string or number. Cut to :data:`MAX_HINT_LENGTH`; characters an HTTP header
    cannot carry (control characters, beyond latin-1) are dropped."""
    if not template:
        return None
    if "{" not in template:
        return template
    values = {}
    for name in hint_fields(template):
        value = arguments.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None
        values[name] = value
    text = template.format(**values)[:MAX_HINT_LENGTH]
    return "".join(c for c in text if c.isprintable() and ord(c) < 256) or None


@dataclass(frozen=True)
class RoutingConfig:
    """A snapshot of one experiment for the router: assignment inputs and backends.

    ``winner_index`` is set when the experiment is concluded: every request goes there.
    ``allocation`` is in hash space [0, 1) (see :mod:`abplatform.core.assignment`);
    ``coverage`` is a fraction.
    """

    experiment_id: int
    name: str
    status: str
    version: int
    phase_id: int
    hash_seed: str
    hash_version: int
    coverage: float
    allocation: assignment.Allocation
    variants: tuple[RoutingVariant, ...]
    winner_index: int | None
    fallback_to_control: bool
    namespace: tuple[str, float, float] | None = None

    @functools.cached_property
    def enrolled_ranges(self) -> tuple[tuple[tuple[float, float], ...], ...]:
        """Per variant, the hash ranges enrolled at this coverage (computed once per config)."""
        return assignment.covered_intervals(self.allocation, self.coverage)

    @functools.cached_property
    def control_index(self) -> int:
        """Index of the control variant."""
        return next(i for i, v in enumerate(self.variants) if v.is_control)

    @property
    def control(self) -> RoutingVariant:
        """The control variant."""
        return self.variants[self.control_index]


class RouteReason(enum.StrEnum):
    """Why a request goes where it goes."""

    HASHED = "hashed"
    """The unit's hash falls in the variant's enrolled range."""
    WINNER = "winner"
    """The experiment is concluded: every unit gets the promoted winner."""
    NOT_ENROLLED = "not enrolled"
    """The unit is outside the coverage: served the control, not analysed."""
    RULE = "rule"
    """A route's rule sent the request to an app, outside any experiment."""
    OUTSIDE_NAMESPACE = "outside namespace"
    """The unit is outside the experiment's slice of its namespace (a layer of mutually
    exclusive experiments): served the control, not analysed."""


@dataclass(frozen=True)
class RouteDecision:
    """Where one request goes.

    ``assigned`` is the variant the unit is assigned to (None when not enrolled: such
    requests are served by ``target``, the control, and left out of the analysis);
    ``target`` is the variant to call first.
    """

    assigned: RoutingVariant | None
    target: RoutingVariant
    reason: RouteReason

    @property
    def in_experiment(self) -> bool:
        """Whether the request counts in the analysis."""
        return self.assigned is not None


class NotServingError(ConflictError):
    """The experiment is in a state that serves no requests (draft or stopped)."""


def decide_route(config: RoutingConfig, unit_id: str) -> RouteDecision:
    """The variant that serves ``unit_id`` under ``config``.

    Deterministic: the same config and unit always give the same decision.

    Raises:
        NotServingError: the experiment is not running or concluded.
    """
    if not serves(config.status):
        raise NotServingError(
            f"experiment '{config.name}' is {config.status}; only running or concluded "
            "experiments serve requests"
        )
    if config.winner_index is not None:
        winner = config.variants[config.winner_index]
        return RouteDecision(winner, winner, RouteReason.WINNER)
    if config.namespace is not None and not assignment.in_namespace(unit_id, config.namespace):
        return RouteDecision(None, config.control, RouteReason.OUTSIDE_NAMESPACE)
    index = assignment.assign_to_ranges(
        unit_id,
        seed=config.hash_seed,
        hash_version=config.hash_version,
        ranges=config.enrolled_ranges,
    )
    if index is None:
        return RouteDecision(None, config.control, RouteReason.NOT_ENROLLED)
    variant = config.variants[index]
    return RouteDecision(variant, variant, RouteReason.HASHED)


def pick_experiment(configs: Sequence[RoutingConfig], unit_id: str) -> RoutingConfig | None:
    """The experiment of a layer that ``unit_id`` belongs to: the first of ``configs``
    whose namespace slice holds the unit (an experiment without a namespace holds every
    unit), None when the unit is in none of them.

    Experiments that share a namespace with disjoint slices are mutually exclusive: a
    unit's namespace hash (GrowthBook's ``inNamespace``: hash version 1, seed
    ``"__" + namespace``) falls in at most one slice, independently of each
    experiment's own assignment hash.
    """
    for config in configs:
        if config.namespace is None or assignment.in_namespace(unit_id, config.namespace):
            return config
    return None


__all__ = [
    "MAX_HINT_LENGTH",
    "NotServingError",
    "RouteDecision",
    "RouteReason",
    "RoutingConfig",
    "RoutingVariant",
    "Shadow",
    "Step",
    "decide_route",
    "hint_fields",
    "pick_experiment",
    "render_hint",
]
