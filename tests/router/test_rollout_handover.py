"""The rollout controller inside the router, on the real local stack: two router
processes (fal runners) behind the gateway with echo backends, both running the
controller; one acts at a time. The acting runner is killed (SIGKILL) mid-rollout: the
other takes the role over within seconds, the ramp goes on to its promotion, and no step
is applied twice."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from abplatform import service
from abplatform.core.rollout import RolloutPlan, parse_margin
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.local.echo import DELAY_ENV, VERSION_ENV
from abplatform.local.falcloud import BackendSpec
from abplatform.local.stack import LocalStack
from abplatform.service import rollouts
from abplatform.store import rollouts as store
from tests.helpers import fresh_database, settings_env

A, B = "abplatform/echo-a", "abplatform/echo-b"
LEASE_S = 1.5


def echo(version: str) -> BackendSpec:
    return BackendSpec(target="abplatform.local.echo:EchoBackend", concurrency=64,
                       env={DELAY_ENV: "2", VERSION_ENV: version})  # fmt: skip


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, template_url: str
) -> Iterator[LocalStack]:
    url = fresh_database(pg_server_url, "rollout_handover")
    env = {
        "ABPLATFORM_BACKEND_APPS": f"{A},{B}",
        "ABPLATFORM_LOG_FLUSH_INTERVAL_MS": "100",
        "ABPLATFORM_CONTROLLER_INTERVAL_S": "0.3",
        "ABPLATFORM_CONTROLLER_LEASE_S": str(LEASE_S),
    }
    home = Path(tmp_path_factory.mktemp("handover", numbered=True))
    backends = {A: echo("a"), B: echo("b")}
    with (
        settings_env(env),
        LocalStack(home, database_url=url, routers=2, backends=backends, extra_router_env=env) as s,
    ):
        yield s


def _traffic(urls: list[str], stop: threading.Event) -> None:
    """Requests from 300 units, spread over the runners, until ``stop``."""
    with httpx.Client(timeout=30) as client:
        i = 0
        while not stop.is_set():
            body = {"experiment": "handover", "unit_id": f"u{i % 300}", "arguments": {}}
            with contextlib.suppress(httpx.HTTPError):  # the killed runner's requests fail
                client.post(f"{urls[i % len(urls)]}/", json=body)
            i += 1


def _wait(what: str, check, timeout_s: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while (value := check()) in (None, False):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_killing_the_acting_runner_hands_the_role_over_and_no_step_is_applied_twice(
    stack: LocalStack,
) -> None:
    db = stack.db
    assert db is not None
    plan = RolloutPlan(steps=(10.0, 30.0, 50.0), min_duration_s=2.0, min_units=5,
                       margins=(parse_margin("error_rate=5pt"),), promote_when="safe")  # fmt: skip
    variants = [
        VariantSpec(key="control", model_version="a", backend_app_id=A, is_control=True),
        VariantSpec(key="treatment", model_version="b", backend_app_id=B),
    ]
    with db.sessions() as s:
        spec = ExperimentSpec(name="handover", hash_seed="handover", variants=variants)
        service.create_experiment(s, spec, actor="test")
        rollouts.create_rollout(s, "handover", plan, actor="test")
    stop = threading.Event()
    sender = threading.Thread(target=_traffic, args=(stack.router_urls, stop), daemon=True)
    sender.start()
    try:

        def rollout():  # type: ignore[no-untyped-def]
            with db.sessions() as s:
                return rollouts.get_rollout(s, "handover")

        def lease():  # type: ignore[no-untyped-def]
            with db.sessions() as s:
                return store.lease_holder(s)

        _wait("the first advance", lambda: rollout().step >= 1)
        held = lease()
        assert held is not None and held["live"]
        pids = {r.process.pid: r for r in stack.routers}
        acting = pids[int(held["holder"].split(":")[1])]  # host:pid:tag
        killed_at = time.monotonic()
        acting.process.send_signal(signal.SIGKILL)
        new = _wait("another holder", lambda: (
            (h := lease()) and h["live"] and h["holder"] != held["holder"] and h
        ))  # fmt: skip
        handover_s = time.monotonic() - killed_at
        assert new["token"] > held["token"]
        assert handover_s < LEASE_S + 5, f"handover took {handover_s:.1f} s"
        done = _wait("the promotion", lambda: rollout().status == "promoted" and rollout())
        print(f"\nhandover after SIGKILL: {handover_s:.2f} s (lease {LEASE_S} s); {done.note}")
    finally:
        stop.set()
        sender.join(30)
    with db.sessions() as s:
        audit = service.audit_log(s, "handover")
        exp = service.get_experiment(s, "handover")
    steps = [e["after"]["rollout"]["step"] for e in audit if e["action"] == "rollout_advance"]
    assert steps == [0, 1]  # step 1 → 2 once, step 2 → 3 once
    assert Counter(e["action"] for e in audit)["rollout_promote"] == 1
    assert [p.weights for p in exp.phases] == [(50, 50), (90, 10), (70, 30), (50, 50), (0, 100)]
    assert (exp.status, exp.winner) == ("concluded", "treatment")
