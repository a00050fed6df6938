"""The rollout controller: every few seconds, evaluate every ramping rollout and act.

It runs inside each router runner (:class:`abplatform.router.ABRouter` starts it in
``setup()``) and as ``abplatform controller``, a process of its own. Exactly one acts at a
time: each tick it takes or renews the lease row (:mod:`abplatform.store.rollouts`, on the
database's clock); the others find it held and wait. The acting one proves the lease again
in the transaction of every write, and each write also checks the rollout's version, so a
step is never applied twice, even by a controller that lost its lease mid-tick.

Why a lease row and not a PostgreSQL advisory lock: a session lock is released when the
server notices that its connection is gone, which for a host that vanished without
closing its socket (a killed VM) takes as long as TCP keepalive (two hours by default);
a lease expires on the database's clock after ``lease_s`` whatever became of its holder.
A clean stop releases the lease at once, so the next tick of another controller takes over;
a killed one is replaced within ``lease_s`` plus one interval.

The ticks run in a daemon thread with their own database sessions, so the router's event
loop never waits on them.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from abplatform.core.errors import ServiceError
from abplatform.core.rollout_decision import RolloutAction
from abplatform.service import rollouts
from abplatform.store import rollouts as store
from abplatform.store.connection import Database

log = logging.getLogger("abplatform.controller")


def default_holder() -> str:
    """A name for this controller that is unique across processes and hosts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class ControllerStats:
    """What a controller did: ticks, ticks it acted in (held the lease), actions applied
    (advance, roll back, promote, end), holds recorded, and the last error."""

    ticks: int = 0
    acting_ticks: int = 0
    applied: int = 0
    holds: int = 0
    last_error: str | None = None
    actions: list[tuple[str, str, str]] = field(default_factory=list)


class RolloutController:
    """Evaluates and steps every ramping rollout while it holds the controller lease.

    Args:
        db: the experiment database.
        interval_s: seconds between ticks.
        lease_s: the lease's time to live (renewed every tick; keep it a few intervals).
        holder: this controller's name in the lease (default: host, pid and a random tag).
    """

    def __init__(
        self, db: Database, *, interval_s: float, lease_s: float, holder: str | None = None
    ) -> None:
        if not 0 < interval_s < lease_s:
            raise ValueError(f"need 0 < interval ({interval_s} s) < lease ({lease_s} s)")
        self.db = db
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.holder = holder or default_holder()
        self.token: int | None = None
        self.stats = ControllerStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def acting(self) -> bool:
        """Whether this controller held the lease at its last tick."""
        return self.token is not None

    def tick(self, now: datetime | None = None) -> list[tuple[str, RolloutAction | str]]:
        """Take or renew the lease; if held, step every ramping rollout once. Returns
        ``(experiment, action or reason it ended)`` for each rollout stepped."""
        self.stats.ticks += 1
        with self.db.sessions() as session:
            self.token = store.acquire_lease(session, self.holder, self.lease_s)
            if self.token is None:
                return []
            names = store.ramping_names(session)
        self.stats.acting_ticks += 1
        lease = (self.holder, self.token)
        done: list[tuple[str, RolloutAction | str]] = []
        for name in names:
            try:
                with self.db.sessions() as session:
                    result = rollouts.step_rollout(
                        session, name, lease=lease, interval_s=self.interval_s,
                        now=now or datetime.now(UTC),
                    )  # fmt: skip
            except ServiceError as exc:  # stale, lease lost, or a state that forbids it
                log.info("rollout %s: not applied: %s", name, exc)
                self.stats.last_error = str(exc)
                continue
            done.append((name, result))
            self._count(name, result)
        return done

    def _count(self, name: str, result: RolloutAction | str) -> None:
        if isinstance(result, RolloutAction) and result.kind == "hold":
            self.stats.holds += 1
            return
        kind, reason = ("end", result) if isinstance(result, str) else (result.kind, result.reason)
        self.stats.applied += 1
        self.stats.actions.append((name, kind, reason))
        log.warning("rollout %s: %s: %s", name, kind, reason)

    def run(self) -> None:
        """Tick every ``interval_s`` until :meth:`stop`; then release the lease."""
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the database may be down: try again next tick
                self.token = None
                self.stats.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                log.warning("rollout controller tick failed: %s", self.stats.last_error)
            self._stop.wait(self.interval_s)
        self.release()

    def release(self) -> None:
        """Give the lease up now (if held), so another controller takes over at once."""
        try:
            with self.db.sessions() as session:
                store.release_lease(session, self.holder)
        except Exception as exc:
            log.warning("could not release the controller lease: %s", exc)
        self.token = None

    def start(self) -> RolloutController:
        """Run in a daemon thread; returns ``self``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="abplatform-rollouts", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after its current tick) and release the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


__all__ = ["ControllerStats", "RolloutController", "default_holder"]
