"""The experiment lifecycle in one table: which states serve traffic, which commands are
allowed from which states, and where each command leads.

::

    draft ──start──▶ running ──promote──▶ concluded   (the winner serves 100%)
      │  ╲             │  ╲
      │   promote      │   stop ──▶ stopped          (the router refuses: 409)
      │   stop         set-weights (a new phase, same state)
      set-weights

The service applies these rules before every write; the router serves only
:data:`SERVING` states.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from abplatform.core.errors import ConflictError


class ExperimentStatus(enum.StrEnum):
    """Lifecycle: draft → running → (stopped | concluded)."""

    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"
    CONCLUDED = "concluded"


class Command(enum.StrEnum):
    """A lifecycle command an operator (or the system) can issue."""

    START = "start"
    SET_WEIGHTS = "set_weights"
    PROMOTE = "promote"
    STOP = "stop"
    ROLL_OUT = "roll_out"


@dataclass(frozen=True)
class Transition:
    """From which states a command is allowed, what it leads to (None: the state stays),
    and how an error message names it (``"cannot {verb} experiment 'x'"``)."""

    allowed_from: frozenset[ExperimentStatus]
    to: ExperimentStatus | None
    verb: str


_EDITABLE = frozenset({ExperimentStatus.DRAFT, ExperimentStatus.RUNNING})

TRANSITIONS: dict[Command, Transition] = {
    Command.START: Transition(
        frozenset({ExperimentStatus.DRAFT}), ExperimentStatus.RUNNING, "start"
    ),
    Command.SET_WEIGHTS: Transition(_EDITABLE, None, "change weights of"),
    Command.PROMOTE: Transition(_EDITABLE, ExperimentStatus.CONCLUDED, "promote a winner of"),
    Command.STOP: Transition(_EDITABLE, ExperimentStatus.STOPPED, "stop"),
    Command.ROLL_OUT: Transition(_EDITABLE, ExperimentStatus.RUNNING, "start a safe rollout of"),
}
"""Every allowed transition; anything not listed here is refused."""

SERVING: frozenset[ExperimentStatus] = frozenset(
    {ExperimentStatus.RUNNING, ExperimentStatus.CONCLUDED}
)
"""States in which the router answers requests (a concluded experiment serves its winner)."""


def check_transition(name: str, status: str, command: Command) -> ExperimentStatus:
    """The state ``command`` leads to from ``status``.

    Raises:
        ConflictError: the command is not allowed from ``status``; the message names the
            states from which it is.
    """
    rule = TRANSITIONS[command]
    current = ExperimentStatus(status)
    if current not in rule.allowed_from:
        allowed = " or ".join(sorted(s.value for s in rule.allowed_from))
        raise ConflictError(
            f"cannot {rule.verb} experiment '{name}': it is {current.value}, and this is "
            f"allowed only when it is {allowed}"
        )
    return rule.to or current


def serves(status: str) -> bool:
    """Whether the router answers requests for an experiment in ``status``."""
    return status in SERVING


# ----------------------------------------------------------------------------- rollouts


class RolloutStatus(enum.StrEnum):
    """A safe rollout's lifecycle (see :data:`ROLLOUT_TRANSITIONS`).

    ::

        ramping ──advance──▶ ramping (next step)     ramping ⇄ paused (pause / resume)
           │  ╲                                       ramping|paused ──roll back──▶ rolled_back
           │   promote ──▶ promoted                   ramping|paused ──promote────▶ promoted
           end (the experiment was ended outside the rollout) ──▶ ended
    """

    RAMPING = "ramping"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    PROMOTED = "promoted"
    ENDED = "ended"


class RolloutCommand(enum.StrEnum):
    """What the controller or an operator does to a rollout."""

    ADVANCE = "advance"
    PAUSE = "pause"
    RESUME = "resume"
    ROLL_BACK = "roll_back"
    PROMOTE = "promote"
    END = "end"


_LIVE_ROLLOUT = frozenset({RolloutStatus.RAMPING, RolloutStatus.PAUSED})

ROLLOUT_TRANSITIONS: dict[RolloutCommand, tuple[frozenset[RolloutStatus], RolloutStatus, str]] = {
    RolloutCommand.ADVANCE: (
        frozenset({RolloutStatus.RAMPING, RolloutStatus.PAUSED}),
        RolloutStatus.RAMPING,
        "advance",
    ),
    RolloutCommand.PAUSE: (frozenset({RolloutStatus.RAMPING}), RolloutStatus.PAUSED, "pause"),
    RolloutCommand.RESUME: (frozenset({RolloutStatus.PAUSED}), RolloutStatus.RAMPING, "resume"),
    RolloutCommand.ROLL_BACK: (_LIVE_ROLLOUT, RolloutStatus.ROLLED_BACK, "roll back"),
    RolloutCommand.PROMOTE: (_LIVE_ROLLOUT, RolloutStatus.PROMOTED, "promote"),
    RolloutCommand.END: (_LIVE_ROLLOUT, RolloutStatus.ENDED, "end"),
}
"""Rollout command → (states it is allowed from, state it leads to, verb for messages).
The controller skips paused rollouts; an operator's override may advance one, and it then
ramps again from the new step."""

ACTIVE_ROLLOUT: frozenset[RolloutStatus] = _LIVE_ROLLOUT
"""Rollout states in which it still steers its experiment's weights."""


def check_rollout_transition(name: str, status: str, command: RolloutCommand) -> RolloutStatus:
    """The rollout state ``command`` leads to from ``status``.

    Raises:
        ConflictError: not allowed from ``status``; the message names the allowed states.
    """
    allowed, to, verb = ROLLOUT_TRANSITIONS[command]
    current = RolloutStatus(status)
    if current not in allowed:
        states = " or ".join(sorted(s.value for s in allowed))
        raise ConflictError(
            f"cannot {verb} the rollout of '{name}': it is {current.value.replace('_', ' ')}, "
            f"and this is allowed only when it is {states.replace('_', ' ')}"
        )
    return to


__all__ = [
    "ACTIVE_ROLLOUT",
    "ROLLOUT_TRANSITIONS",
    "SERVING",
    "TRANSITIONS",
    "Command",
    "ExperimentStatus",
    "RolloutCommand",
    "RolloutStatus",
    "Transition",
    "check_rollout_transition",
    "check_transition",
    "serves",
]
