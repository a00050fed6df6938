"""The demo's safe rollouts: a healthy version ramps and is promoted, a regressed one is
rolled back, each by the controller running inside the router.

Two experiments start side by side, each on a ramp 20% → 50% → promotion with the
guardrails error rate (+1 point) and p95 latency (+20%), and thumbs-up as the primary
metric. The versions are served by the CPU-free echo backend
(:mod:`abplatform.local.echo`) with a lognormal latency (median 40 ms) per request, so
that the two cores go to the router, the gateway and the controller, and the ramp gets
the traffic it needs within the demo's time:

* ``serving-v1``, the control;
* ``serving-v2``, the healthy version (the raters prefer it);
* ``serving-v3``: the same runner behind a route of the local fal gateway that injects a
  regression (:class:`~abplatform.local.queue.Fault`: every call takes twice as long), as
  a slow build of a model would. The regression lives in the stand-in, never in a
  backend's code.

Traffic flows to both until both rollouts have finished; every action of the controller
is printed as it happens, with the guardrail, the step and the figures it acted on.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.markup import escape

from abplatform import service
from abplatform.core.rollout import RolloutPlan, RolloutView, parse_margin
from abplatform.local.echo import VERSION_ENV
from abplatform.local.falcloud import BackendSpec
from abplatform.local.queue import Fault
from abplatform.local.stack import LocalStack
from abplatform.service import rollouts
from abplatform.settings import get_settings

CONTROL_APP, HEALTHY_APP, SLOW_APP = (f"abplatform/serving-v{i}" for i in (1, 2, 3))
"""fal app ids of the rollouts' versions: one echo runner, reached as v2 directly and as
v3 through a 2× slowdown injected in the gateway."""

ECHO = BackendSpec("abplatform.local.echo:EchoBackend", concurrency=64, env={VERSION_ENV: "v1"})
BACKENDS = {CONTROL_APP: ECHO}
"""The backend the demo's stack adds for the rollouts."""

LATENCY_MS = (40.0, 0.35)
"""Median (ms) and log-sd of the echo's per-request latency."""

CONTROLLER_ENV = {"ABPLATFORM_CONTROLLER_INTERVAL_S": "1", "ABPLATFORM_CONTROLLER_LEASE_S": "5"}
"""The router's controller settings for the demo: a check every second."""

PLAN = RolloutPlan(
    steps=(20.0, 50.0),
    min_duration_s=10.0,
    min_units=30,
    margins=(parse_margin("error_rate=1pt"), parse_margin("latency_p95=20%")),
    promote_when="win",
    tuning=1000.0,
)
"""Short steps for the demo (production defaults: 10 minutes and 100 units a step)."""

FINISHED = ("promoted", "rolled_back", "ended")
USERS = 1500


@dataclass
class RolloutDemo:
    """What the rollout part of the demo saw: each experiment's rollout at the end and
    every controller action printed, in order."""

    rollouts: dict[str, RolloutView] = field(default_factory=dict)
    events: list[tuple[float, str, str, str]] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0


def _allow_app(app_id: str) -> None:
    """Let experiments of this (demo) process use ``app_id``."""
    apps = get_settings().known_backend_apps
    if app_id not in apps:
        os.environ["ABPLATFORM_BACKEND_APPS"] = ",".join([*apps, app_id])
        get_settings.cache_clear()


def create_rollouts(stack: LocalStack, stamp: str) -> dict[str, str]:
    """Inject the regression, create both experiments and their rollouts; returns
    ``{experiment: description}``."""
    assert stack.db is not None and stack.fal is not None
    runner = stack.fal.backend_urls[CONTROL_APP]
    stack.fal.add_route(HEALTHY_APP, runner, concurrency=64)
    stack.fal.add_route(SLOW_APP, runner, concurrency=64, fault=Fault(slowdown=2.0))
    for app in (CONTROL_APP, HEALTHY_APP, SLOW_APP):
        _allow_app(app)
    made = {}
    for version, app, what in (
        ("v2", HEALTHY_APP, "serving-v2 (healthy)"),
        ("v3", SLOW_APP, "serving-v3 (2× slower: a fault injected in the local gateway)"),
    ):
        name = f"rollout-{version}-{stamp}"
        spec = service.ExperimentSpec(
            name=name, description=f"safe rollout of {what}",
            variants=[
                service.VariantSpec(key="control", model_version="v1",
                                    backend_app_id=CONTROL_APP, is_control=True),
                service.VariantSpec(key="treatment", model_version=version, backend_app_id=app),
            ],
            primary_metric="thumbs_up", guardrails=["error_rate", "latency_p95"],
        )  # fmt: skip
        with stack.db.sessions() as s:
            service.create_experiment(s, spec, actor="demo")
            rollouts.create_rollout(s, name, PLAN, actor="demo")
        made[name] = what
    return made


def _event_line(elapsed: float, name: str, kind: str, reason: str) -> str:
    colour = {"roll back": "red", "promote": "green", "advance": "cyan"}.get(kind, "yellow")
    return f"[{elapsed:5.1f} s] {escape(name)}: [bold {colour}]{kind}[/] — {escape(reason)}"


async def _watch(stack: LocalStack, names: list[str], seen: RolloutDemo, console: Console,
                 started: float, done: asyncio.Event) -> None:  # fmt: skip
    """Print every new action of the controller; set ``done`` when all rollouts ended."""
    assert stack.db is not None
    last: dict[str, int] = {}

    def read() -> dict[str, tuple[RolloutView, list[dict[str, Any]]]]:
        assert stack.db is not None
        with stack.db.sessions() as s:
            return {n: (rollouts.get_rollout(s, n), service.audit_log(s, n)) for n in names}

    while not done.is_set():
        for name, (view, audit) in (await asyncio.to_thread(read)).items():
            seen.rollouts[name] = view
            actions = [e for e in audit if e["action"].startswith("rollout_")
                       and "reason" in (e["after"] or {}).get("rollout", {})]  # fmt: skip
            for entry in actions[last.get(name, 0) :]:
                record = entry["after"]["rollout"]
                elapsed = time.monotonic() - started
                seen.events.append((elapsed, name, record["kind"], record["reason"]))
                console.print(_event_line(elapsed, name, record["kind"], record["reason"]),
                              highlight=False)  # fmt: skip
            last[name] = len(actions)
        if all(v.status in FINISHED for v in seen.rollouts.values()) and seen.rollouts:
            done.set()
            return
        await asyncio.sleep(1.0)


async def _traffic(stack: LocalStack, names: list[str], rng: np.random.Generator,
                   concurrency: int, seen: RolloutDemo, done: asyncio.Event) -> None:  # fmt: skip
    """Requests (and thumbs-up feedback from the simulated raters) to every rollout that
    has not finished, from :data:`USERS` users, until ``done``."""
    from abplatform.local.demo import PROMPTS, THUMBS_UP_PROBABILITY

    async def one(client: httpx.AsyncClient, i: int) -> None:
        live = [n for n in names if seen.rollouts.get(n) is None
                or seen.rollouts[n].status not in FINISHED]  # fmt: skip
        name = live[i % len(live)] if live else names[0]
        unit = f"rollout-user-{int(rng.integers(USERS)):04d}"
        delay = float(rng.lognormal(np.log(LATENCY_MS[0]), LATENCY_MS[1]))
        body = {"experiment": name, "unit_id": unit,
                "arguments": {"delay_ms": delay, "payload": PROMPTS[i % len(PROMPTS)]}}  # fmt: skip
        r = await client.post(f"{stack.router_url}/", json=body)
        seen.requests += 1
        if r.status_code == 200 and rng.random() < 0.8:
            data = r.json()
            liked = float(rng.random() < THUMBS_UP_PROBABILITY.get(data["model_version"], 0.5))
            fb = {"request_id": data["request_id"], "metric": "thumbs_up", "value": liked}
            await client.post(f"{stack.router_url}/feedback", json=fb)

    async def worker(w: int, client: httpx.AsyncClient) -> None:
        i = w
        while not done.is_set():
            await one(client, i)
            i += concurrency

    async with httpx.AsyncClient(timeout=120.0) as client:
        await asyncio.gather(*(worker(w, client) for w in range(concurrency)))


def run_rollout_demo(
    stack: LocalStack, console: Console, *, rng: np.random.Generator, concurrency: int = 6,
    budget_s: float = 180.0,
) -> RolloutDemo:  # fmt: skip
    """Run both rollouts to their end (or ``budget_s``), printing the controller's actions.

    Raises:
        RuntimeError: the regressed version was not rolled back on a guardrail, or the
            healthy one not promoted, within the budget.
    """
    stamp = f"{datetime.now(UTC):%H%M%S}"
    made = create_rollouts(stack, stamp)
    names = list(made)
    console.rule("[bold]safe rollouts: the controller in the router ramps, rolls back, promotes")
    p = PLAN
    console.print(
        f"ramp {' → '.join(f'{s:g}%' for s in p.steps)} → 100%, each step ≥ "
        f"{p.min_duration_s:g} s and ≥ {p.min_units} treatment units; guardrails: "
        + "; ".join(m.describe() for m in p.margins)
        + "; promote when thumbs_up wins",
        highlight=False,
    )
    for name, what in made.items():
        console.print(f"  {name}: {what}, starts at {p.steps[0]:g}%", highlight=False)
    seen = RolloutDemo()
    started = time.monotonic()

    async def main() -> None:
        done = asyncio.Event()
        watcher = asyncio.create_task(_watch(stack, names, seen, console, started, done))
        traffic = asyncio.create_task(_traffic(stack, names, rng, concurrency, seen, done))
        try:
            await asyncio.wait_for(done.wait(), budget_s)
        except TimeoutError:
            done.set()
        await asyncio.gather(watcher, traffic, return_exceptions=True)

    asyncio.run(main())
    seen.seconds = time.monotonic() - started
    check_rollouts(seen, names)
    return seen


def check_rollouts(seen: RolloutDemo, names: list[str]) -> None:
    """Raise :class:`RuntimeError` unless model-v2 was promoted and model-v3 rolled back on
    a guardrail, both by the controller."""
    healthy, slow = (seen.rollouts.get(n) for n in names)
    problems = []
    if healthy is None or healthy.status != "promoted":
        problems.append(f"the healthy rollout is {healthy.status if healthy else 'missing'}, "
                        "not promoted")  # fmt: skip
    code = (slow.last_action or {}).get("code", "") if slow else ""
    if slow is None or slow.status != "rolled_back" or not code.startswith("regressed:"):
        problems.append(f"the slow rollout is {slow.status if slow else 'missing'} ({code}), "
                        "not rolled back on a guardrail")  # fmt: skip
    if problems:
        raise RuntimeError("demo check failed: " + "; ".join(problems))


__all__ = [
    "BACKENDS", "CONTROL_APP", "HEALTHY_APP", "PLAN", "SLOW_APP", "RolloutDemo",
    "check_rollouts", "create_rollouts", "run_rollout_demo",
]  # fmt: skip
