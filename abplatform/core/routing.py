"""The routing decision: which variant serves a unit's request, and why.

The router app keeps HTTP, fal and logging; the decision itself is this pure function
of a config snapshot and a unit id, so it is tested in-process and is the same wherever
it runs (router, simulations, the dashboard's preview).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from abplatform.core import assignment
from abplatform.core.errors import ConflictError
from abplatform.core.lifecycle import serves


@dataclass(frozen=True)
class RoutingVariant:
    """What the router needs to call one variant; ``call_mode`` is "run" (one direct
    call) or "queue" (fal's queue: submit, status stream, result)."""

    id: int
    key: str
    model_version: str
    backend_app_id: str
    is_control: bool
    call_mode: str = "run"


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


__all__ = [
    "NotServingError",
    "RouteDecision",
    "RouteReason",
    "RoutingConfig",
    "RoutingVariant",
    "decide_route",
]
