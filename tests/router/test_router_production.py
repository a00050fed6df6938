"""The router at production grade, on the real local stack: three router processes (fal
runners) behind the gateway, CPU-free echo backends (so load tests do not fight diffusers
for the two cores), real PostgreSQL with LISTEN/NOTIFY. Feedback at any runner, config
pushes within 1 s, exact logs, a database outage under load, a killed backend, a router
stopped under load, input limits, health, metrics and the QA override."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from abplatform import service
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.local.echo import DELAY_ENV, VERSION_ENV
from abplatform.local.falcloud import BackendSpec
from abplatform.local.stack import LocalStack
from abplatform.store.connection import Database
from tests.helpers import admin_execute, fresh_database, settings_env

A, B = "abplatform/echo-a", "abplatform/echo-b"
TOKEN = "qa-secret-token"
DB_NAME = "router_production"


def echo(version: str) -> BackendSpec:
    return BackendSpec(
        target="abplatform.local.echo:EchoBackend",
        concurrency=256,
        env={DELAY_ENV: "5", VERSION_ENV: version},
    )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, template_url: str
) -> Iterator[LocalStack]:
    """Three routers; configs refreshed only every 30 s, so sub-second propagation can
    only come from NOTIFY; logs flushed every 100 ms."""
    url = fresh_database(pg_server_url, DB_NAME)
    env = {
        "ABPLATFORM_BACKEND_APPS": f"{A},{B}",
        "ABPLATFORM_OPERATOR_TOKEN": TOKEN,
        "ABPLATFORM_LOG_FLUSH_INTERVAL_MS": "100",
        "ABPLATFORM_FLUSH_TIMEOUT_S": "3",
    }
    home = Path(tmp_path_factory.mktemp("prod", numbered=True))
    with (
        settings_env(env),
        LocalStack(
            home,
            config_ttl_s=30.0,
            database_url=url,
            routers=3,
            backends={A: echo("a"), B: echo("b")},
            extra_router_env=env,
        ) as s,
    ):
        yield s


@pytest.fixture(scope="module")
def sdb(stack: LocalStack) -> Database:
    assert stack.db is not None
    return stack.db


def experiment(db: Database, name: str, weights: list[float] | None = None, **kw) -> int:
    variants = [
        VariantSpec(key="control", model_version="a", backend_app_id=A, is_control=True),
        VariantSpec(key="treatment", model_version="b", backend_app_id=B, call_mode="queue"),
    ]
    with db.sessions() as s:
        spec = ExperimentSpec(name=name, variants=variants, hash_seed=name, weights=weights, **kw)
        service.create_experiment(s, spec, actor="test")
        return service.start_experiment(s, name, actor="test").id


def body(name: str, unit: str, **args: object) -> dict:
    return {"experiment": name, "unit_id": unit, "arguments": {"payload": unit, **args}}


def flush_all(stack: LocalStack) -> list[dict]:
    out = []
    for url in stack.router_urls:
        r = httpx.post(f"{url}/flush", json={}, timeout=30)
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def count(db: Database, sql: str, **params: object) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


async def load(urls: list[str], name: str, n: int, concurrency: int = 8) -> list[httpx.Response]:
    """``n`` requests spread over ``urls``; every response (exceptions re-raised)."""
    async with httpx.AsyncClient(timeout=60) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> httpx.Response:
            async with sem:
                return await client.post(f"{urls[i % len(urls)]}/", json=body(name, f"u{i % 41}"))

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_feedback_reaches_any_runner_and_rows_are_exact(stack: LocalStack, sdb: Database) -> None:
    exp = experiment(sdb, "runners")
    urls = stack.router_urls
    responses = asyncio.run(load(urls, "runners", 90))
    assert [r.status_code for r in responses] == [200] * 90
    assert {r.json()["variant"] for r in responses} == {"control", "treatment"}
    # feedback on every request, each at the next runner, before the owner flushed
    for i, r in enumerate(responses):
        fb = {"request_id": r.json()["request_id"], "metric": "thumbs_up", "value": i % 2}
        got = httpx.post(f"{urls[(i + 1) % 3]}/feedback", json=fb, timeout=30)
        assert got.status_code == 200, got.text
    deadline = time.monotonic() + 20
    while count(sdb, "SELECT count(*) FROM outcomes WHERE experiment_id = :e", e=exp) < 90:
        flush_all(stack)
        assert time.monotonic() < deadline, "feedback from other runners was not recorded"
        time.sleep(0.2)
    assert count(sdb, "SELECT count(*) FROM requests WHERE experiment_id = :e", e=exp) == 90
    mismatched = count(
        sdb,
        "SELECT count(*) FROM outcomes o JOIN requests r USING (request_id) "
        "WHERE o.experiment_id = :e AND (o.unit_id <> r.unit_id OR o.phase_id <> r.phase_id)",
        e=exp,
    )
    assert mismatched == 0
    assert count(sdb, "SELECT sum(count) FROM unit_outcomes WHERE experiment_id = :e", e=exp) == 90
    unknown = httpx.post(
        f"{urls[2]}/feedback", json={"request_id": "0" * 32, "metric": "m", "value": 1}, timeout=30
    )
    assert unknown.status_code == 404


def test_a_weight_change_reaches_every_runner_within_one_second(
    stack: LocalStack, sdb: Database
) -> None:
    experiment(sdb, "pushed", weights=[100, 0])
    units = [f"p{i}" for i in range(6)]
    for url in stack.router_urls:  # every runner caches the config
        for u in units:
            assert httpx.post(f"{url}/", json=body("pushed", u), timeout=30).json()["variant"] == (
                "control"
            )
    with sdb.sessions() as s:
        service.set_weights(s, "pushed", [0, 100], actor="test")
    changed = time.monotonic()
    seen: dict[str, float] = {}  # runner -> seconds after the commit its answers changed
    while len(seen) < len(stack.router_urls):
        for url in stack.router_urls:
            if url in seen:
                continue
            asked = time.monotonic()
            got = {httpx.post(f"{url}/", json=body("pushed", u), timeout=30).json()["variant"]
                   for u in units[:2]}  # fmt: skip
            if got == {"treatment"}:
                seen[url] = asked - changed
        assert time.monotonic() - changed < 10.0, f"not every runner saw the change: {seen}"
    assert max(seen.values()) < 1.0, seen


def test_database_outage_under_load_fails_no_request_and_loses_no_row(
    stack: LocalStack, sdb: Database, pg_server_url: str
) -> None:
    """The database refuses every connection for 8 s (ALLOW_CONNECTIONS false, sessions
    terminated: what a router sees of a PostgreSQL restart or failover; the issue's 30 s
    outage is longer, the mechanism the same) while clients keep sending."""
    exp = experiment(sdb, "outage")
    urls = stack.router_urls

    async def scenario() -> tuple[list[httpx.Response], float, dict]:
        stop = asyncio.Event()
        answered: list[httpx.Response] = []

        async def client_loop(c: int) -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                i = 0
                while not stop.is_set():
                    url = urls[(c + i) % 3]
                    answered.append(await client.post(f"{url}/", json=body("outage", f"o{c}-{i}")))
                    i += 1
                    await asyncio.sleep(0.02)

        loops = [asyncio.create_task(client_loop(c)) for c in range(4)]
        await asyncio.sleep(1.0)
        down = f"ALTER DATABASE {DB_NAME} ALLOW_CONNECTIONS false"
        await asyncio.to_thread(admin_execute, pg_server_url, down)
        kill = (f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                f"'{DB_NAME}' AND pid <> pg_backend_pid()")  # fmt: skip
        await asyncio.to_thread(admin_execute, pg_server_url, kill)
        await asyncio.sleep(4.0)
        async with httpx.AsyncClient(timeout=30) as client:
            t0 = time.monotonic()
            during = (await client.post(f"{urls[0]}/flush", json={})).json()
            flush_s = time.monotonic() - t0
        await asyncio.sleep(4.0)
        up = f"ALTER DATABASE {DB_NAME} ALLOW_CONNECTIONS true"
        await asyncio.to_thread(admin_execute, pg_server_url, up)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*loops)
        return answered, flush_s, during

    answered, flush_s, during = asyncio.run(scenario())
    assert len(answered) > 100
    assert [r.status_code for r in answered if r.status_code != 200] == []
    assert flush_s < 5.0 and during["complete"] is False and during["last_error"]
    assert during["pending"] + during["spooled_pending"] > 0
    deadline = time.monotonic() + 30
    while True:
        states = flush_all(stack)
        n = count(sdb, "SELECT count(*) FROM requests WHERE experiment_id = :e", e=exp)
        if n == len(answered) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert n == len(answered)  # requests in = rows, each exactly once
    assert sum(s["spooled"] for s in states) > 0 and sum(s["replayed"] for s in states) > 0
    # retries backed off: 8 s of outage cost each runner a handful of attempts, not hundreds
    assert all(s["failed_flushes"] <= 40 for s in states), states
    assert count(sdb, "SELECT sum(requests) FROM unit_totals WHERE experiment_id = :e", e=exp) == n


def test_a_killed_backend_gives_clear_errors_or_fallback_and_is_restarted(
    stack: LocalStack, sdb: Database
) -> None:
    experiment(sdb, "killed", weights=[0, 100])
    experiment(sdb, "killed-fb", weights=[0, 100], fallback_to_control=True)
    assert stack.fal is not None and stack.router is not None
    router_pid = stack.router.process.pid
    backend = stack.fal.services[B.replace("/", "--")]
    backend.process.send_signal(signal.SIGKILL)
    backend.process.wait(10)
    plain = httpx.post(f"{stack.router_url}/", json=body("killed", "k1"), timeout=60)
    fallback = httpx.post(f"{stack.router_url}/", json=body("killed-fb", "k1"), timeout=60)
    assert plain.status_code in (502, 504), plain.text
    assert plain.headers["x-fal-needs-retry"] in ("0", "1") and B in plain.text
    assert fallback.status_code == 200 and fallback.json()["variant"] == "control"
    deadline = time.monotonic() + 60
    while (
        httpx.post(f"{stack.router_url}/", json=body("killed", "k1"), timeout=60).status_code != 200
    ):
        assert time.monotonic() < deadline, "the supervisor did not restart the backend"
        time.sleep(0.5)
    assert backend.restarts >= 1 and stack.router.process.pid == router_pid
    assert stack.dead_services() == []


def test_sigterm_under_load_every_answered_request_has_its_row(
    stack: LocalStack, sdb: Database
) -> None:
    exp = experiment(sdb, "drain")
    runner = stack.routers[2]
    url = stack.router_urls[2]
    old = runner.process  # the supervisor replaces it after it exits

    async def scenario() -> list[str]:
        ids: list[str] = []

        async def client_loop(c: int) -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                for i in range(10_000):
                    try:
                        r = await client.post(f"{url}/", json=body("drain", f"d{c}-{i}"))
                    except httpx.HTTPError:
                        return  # the runner stopped accepting: not answered
                    if r.status_code != 200:
                        return
                    ids.append(r.json()["request_id"])

        loops = [asyncio.create_task(client_loop(c)) for c in range(6)]
        await asyncio.sleep(1.5)
        old.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*loops), 60)
        return ids

    ids = asyncio.run(scenario())
    assert len(ids) > 20
    old.wait(30)  # drained and exited (the supervisor then starts a new one)
    deadline = time.monotonic() + 60
    while runner.restarts < 1:
        assert time.monotonic() < deadline, "the supervisor did not restart the router"
        time.sleep(0.1)
    runner.wait_healthy(120)
    flush_all_live = [u for u in stack.router_urls if u != url]
    for u in flush_all_live:
        httpx.post(f"{u}/flush", json={}, timeout=30)
    with sdb.engine.connect() as conn:
        logged = set(conn.execute(
            sa.text("SELECT request_id FROM requests WHERE experiment_id = :e"), {"e": exp}
        ).scalars())  # fmt: skip
    assert set(ids) <= logged, f"{len(set(ids) - logged)} answered requests have no row"


def test_input_limits_and_error_bodies_that_never_echo_large_inputs(
    stack: LocalStack, sdb: Database
) -> None:
    experiment(sdb, "limits")
    url = f"{stack.router_url}/"
    huge = httpx.post(url, json=body("limits", "u", prompt="x" * (1 << 20)), timeout=30)
    assert huge.status_code == 413
    assert "the limit is 262144 bytes" in huge.json()["detail"]
    chunked = httpx.post(url, content=iter([b"{" + b" " * 300_000]), timeout=30)
    assert chunked.status_code == 413
    long_unit = httpx.post(url, json=body("limits", "u" * 100_000), timeout=30)
    assert long_unit.status_code == 422 and len(long_unit.content) < 2000
    for bad in (b"nul\\u0000unit", b"\\ud800"):  # JSON escapes: NUL, a lone surrogate
        raw = b'{"experiment": "limits", "unit_id": "' + bad + b'", "arguments": {}}'
        r = httpx.post(url, content=raw, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 422, r.text
    deep: dict = {}
    for _ in range(40):
        deep = {"d": deep}
    assert httpx.post(url, json=body("limits", "u", deep=deep), timeout=30).status_code == 422
    sneaky = {**body("limits", "u"), "path": "../../other-app"}
    assert httpx.post(url, json=sneaky, timeout=30).status_code == 422
    missing = httpx.post(url, json={**body("limits", "u"), "path": "no-such-endpoint"}, timeout=30)
    assert missing.status_code == 404 and missing.headers["x-fal-needs-retry"] == "0"


def test_health_check_and_prometheus_metrics(stack: LocalStack, sdb: Database) -> None:
    experiment(sdb, "observed")
    for i in range(5):
        assert httpx.post(f"{stack.router_url}/", json=body("observed", f"m{i}"), timeout=30)
    health = httpx.post(f"{stack.router_url}/healthz", json={}, timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["config_listener"] is True
    text = httpx.get(f"http://127.0.0.1:{stack.metrics_ports[0]}/metrics", timeout=30).text
    assert 'abplatform_router_requests_total{experiment="observed"' in text
    assert "abplatform_router_request_seconds_bucket" in text
    assert "abplatform_router_log_pending_rows" in text
    assert 'abplatform_router_log_rows_total{outcome="spooled"}' in text


def test_qa_override_needs_the_token_is_logged_and_never_analysed(
    stack: LocalStack, sdb: Database
) -> None:
    exp = experiment(sdb, "qa", weights=[100, 0])
    url = f"{stack.router_url}/"
    force = {"x-abplatform-force-variant": "treatment"}
    refused = httpx.post(url, json=body("qa", "tester"), headers=force, timeout=30)
    assert refused.status_code == 403 and "operator token" in refused.text
    wrong = {**force, "x-abplatform-operator-token": "guess"}
    assert httpx.post(url, json=body("qa", "tester"), headers=wrong, timeout=30).status_code == 403
    ok_headers = {**force, "x-abplatform-operator-token": TOKEN}
    forced = httpx.post(url, json=body("qa", "tester"), headers=ok_headers, timeout=30)
    assert forced.status_code == 200, forced.text
    assert forced.json()["variant"] == "treatment" and forced.json()["forced"] is True
    assert forced.json()["in_experiment"] is False
    nokey = {"x-abplatform-force-variant": "nope", "x-abplatform-operator-token": TOKEN}
    assert httpx.post(url, json=body("qa", "tester"), headers=nokey, timeout=30).status_code == 422
    normal = httpx.post(url, json=body("qa", "regular"), timeout=30)
    assert normal.json()["variant"] == "control"
    flush_all(stack)
    sql = "SELECT count(*) FROM requests WHERE experiment_id = :e AND forced"
    assert count(sdb, sql, e=exp) == 1
    totals = "SELECT count(*) FROM unit_totals WHERE experiment_id = :e AND unit_id = :u"
    assert count(sdb, totals, e=exp, u="tester") == 0  # the analysis never sees it
    assert count(sdb, totals, e=exp, u="regular") == 1
