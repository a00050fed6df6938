"""The router end to end: real HTTP into the router ``fal.App``, its unmodified fal_client
calls through the local fal queue stand-in to the real backend ``fal.App`` classes on tiny
pipelines, and its background writer into a real PostgreSQL."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from abplatform import service
from abplatform.core import assignment
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.local.stack import LocalStack
from abplatform.service.reports import build_report
from abplatform.store.connection import Database, make_database
from abplatform.store.models import Outcome, RequestLog
from tests.helpers import fresh_database, settings_env

V1, V2, BROKEN = "abplatform/model-v1", "abplatform/model-v2", "abplatform/model-broken"
ARGS = {"prompt": "a red fox", "num_inference_steps": 1}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, template_url: str
) -> Iterator[LocalStack]:
    """The whole local stack on its own fresh database; the router refreshes every 0.5 s.

    ``abplatform/model-broken`` is a known backend app id that the gateway cannot route
    (it answers 404), standing in for a backend that fails.
    """
    url = fresh_database(pg_server_url, "router_e2e")
    home = Path(tmp_path_factory.mktemp("stack", numbered=True))
    with (
        settings_env({"ABPLATFORM_BACKEND_APPS": f"{V1},{V2},{BROKEN}"}),
        LocalStack(home, config_ttl_s=0.5, database_url=url) as s,
    ):
        yield s


@pytest.fixture(scope="module")
def sdb(stack: LocalStack) -> Database:
    assert stack.db is not None
    return stack.db


def make_experiment(db: Database, name: str, *, start: bool = True, **kw) -> service.ExperimentView:
    variants = kw.pop(
        "variants",
        [
            VariantSpec(key="control", model_version="v1", backend_app_id=V1, is_control=True),
            VariantSpec(key="treatment", model_version="v2", backend_app_id=V2),
        ],
    )
    with db.sessions() as s:
        view = service.create_experiment(
            s, ExperimentSpec(name=name, variants=variants, hash_seed=name, **kw), actor="test"
        )
        if start:
            view = service.start_experiment(s, name, actor="test")
    return view


def route(
    stack: LocalStack, experiment: str, unit: str, args: dict | None = None
) -> httpx.Response:
    body = {"experiment": experiment, "unit_id": unit, "arguments": args or ARGS}
    return httpx.post(f"{stack.router_url}/", json=body, timeout=60)


def flush(stack: LocalStack) -> dict:
    r = httpx.post(f"{stack.router_url}/flush", json={}, timeout=60)
    r.raise_for_status()
    return r.json()


def rows(db: Database, experiment_id: int) -> list[RequestLog]:
    with db.sessions() as s:
        return list(
            s.scalars(sa.select(RequestLog).where(RequestLog.experiment_id == experiment_id)).all()
        )


def test_every_response_is_tagged_and_every_request_logged_exactly_once(
    stack: LocalStack, sdb: Database
) -> None:
    view = make_experiment(sdb, "tagged")
    cfg_alloc = assignment.fresh_allocation([0.5, 0.5])
    units = [f"user-{i}" for i in range(20)] * 2  # each unit twice
    responses = [route(stack, "tagged", u) for u in units]
    assert [r.status_code for r in responses] == [200] * len(units)
    bodies = [r.json() for r in responses]
    for unit, body in zip(units, bodies, strict=True):
        expected = assignment.assign_variant(
            unit, seed="tagged", hash_version=2, allocation=cfg_alloc
        )
        key = ["control", "treatment"][expected]
        assert body["variant"] == key
        assert body["model_version"] == {"control": "v1", "treatment": "v2"}[key]
        assert body["experiment"] == "tagged" and len(body["request_id"]) == 32
        assert body["image"]["url"].startswith("data:image/png;base64,")
    by_unit: dict[str, set[str]] = {}
    for unit, body in zip(units, bodies, strict=True):
        by_unit.setdefault(unit, set()).add(body["variant"])
    assert all(len(v) == 1 for v in by_unit.values()), "same unit, same variant"
    assert {b["variant"] for b in bodies} == {"control", "treatment"}

    flush(stack)
    logged = rows(sdb, view.id)
    assert len(logged) == len(units)
    assert {r.request_id for r in logged} == {b["request_id"] for b in bodies}
    assert all(r.status == "ok" and r.latency_ms > 0 for r in logged)
    assert all(r.served_variant_id == r.assigned_variant_id for r in logged)
    assert all(r.phase_id == view.current_phase.id for r in logged)


def test_bad_requests_get_a_clear_4xx_and_change_nothing(stack: LocalStack, sdb: Database) -> None:
    view = make_experiment(sdb, "strict")
    make_experiment(sdb, "drafty", start=False)
    url = f"{stack.router_url}/"
    unknown = route(stack, "no-such-experiment", "u1")
    assert unknown.status_code == 404 and "unknown experiment 'no-such-experiment'" in unknown.text
    draft = route(stack, "drafty", "u1")
    assert draft.status_code == 409 and "is draft; only running or concluded" in draft.text
    no_unit = httpx.post(url, json={"experiment": "strict", "arguments": ARGS}, timeout=30)
    assert no_unit.status_code == 422 and "unit_id" in no_unit.text
    bad_args = httpx.post(
        url, json={"experiment": "strict", "unit_id": "u1", "arguments": [1, 2]}, timeout=30
    )
    assert bad_args.status_code == 422 and "arguments" in bad_args.text
    empty_unit = route(stack, "strict", "")
    assert empty_unit.status_code == 422
    no_target = httpx.post(url, json={"unit_id": "u1", "arguments": ARGS}, timeout=30)
    assert no_target.status_code == 422 and "neither was given" in no_target.text
    feedback = {"experiment": "strict", "unit_id": "u1", "metric": "error_rate", "value": 1}
    builtin = httpx.post(f"{url}feedback", json=feedback, timeout=30)
    assert builtin.status_code == 422 and "computed from the request log" in builtin.text
    flush(stack)
    assert rows(sdb, view.id) == []  # nothing reached a backend, nothing was logged


def test_arguments_the_backend_rejects_pass_through_as_4xx_and_are_logged_as_rejected(
    stack: LocalStack, sdb: Database
) -> None:
    # Issue 8, finding 6: {"width": 13} made the backend answer 422, which was logged as
    # the variant's error and fed the error-rate guardrail.
    view = make_experiment(sdb, "picky")
    r = route(stack, "picky", "u1", {"prompt": "x", "width": 13})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail["error"]["status"] == 422 and "width" in str(detail["error"]["error"])
    assert route(stack, "picky", "u1").status_code == 200
    flush(stack)
    logged = {row.request_id: row for row in rows(sdb, view.id)}
    rejected = logged[detail["request_id"]]
    assert rejected.status == "rejected" and not rejected.fallback
    with sdb.sessions() as s:
        report = build_report(s, "picky")
    [arm] = [v for v in report.variants if v.requests]
    assert (arm.requests, arm.rejected, arm.errors, arm.error_rate) == (2, 1, 0, 0.0)


def test_a_failing_backend_gives_502_never_503_and_is_logged_as_error(
    stack: LocalStack, sdb: Database
) -> None:
    variants = [
        VariantSpec(key="control", model_version="v1", backend_app_id=V1, is_control=True),
        VariantSpec(key="broken", model_version="vX", backend_app_id=BROKEN),
    ]
    view = make_experiment(sdb, "failing", variants=variants, weights=[0, 100])
    r = route(stack, "failing", "u1")
    assert r.status_code == 502
    assert BROKEN in r.text
    flush(stack)
    [row] = rows(sdb, view.id)
    assert row.status == "error" and row.served_variant_id is None and BROKEN in row.error


def test_fallback_serves_the_control_but_analysis_keeps_the_assigned_variant(
    stack: LocalStack, sdb: Database
) -> None:
    variants = [
        VariantSpec(key="control", model_version="v1", backend_app_id=V1, is_control=True),
        VariantSpec(key="broken", model_version="vX", backend_app_id=BROKEN),
    ]
    view = make_experiment(
        sdb, "fallback", variants=variants, weights=[0, 100], fallback_to_control=True
    )
    r = route(stack, "fallback", "u1")
    assert r.status_code == 200
    body = r.json()
    assert body["variant"] == "control" and body["assigned_variant"] == "broken"
    assert body["model_version"] == "v1"
    flush(stack)
    [row] = rows(sdb, view.id)
    ids = {v.key: v.id for v in view.variants}
    assert (row.assigned_variant_id, row.served_variant_id) == (ids["broken"], ids["control"])
    # Issue 8, finding 5: the assigned variant's failure is logged, not hidden by the
    # fallback's success, and counts as its error (intention to treat).
    assert row.status == "error" and row.fallback and BROKEN in row.error
    with sdb.sessions() as s:
        report = build_report(s, "fallback")
    broken = next(v for v in report.variants if v.key == "broken")
    assert (broken.errors, broken.fallbacks, broken.error_rate, broken.fallback_rate) == (
        1, 1, 1.0, 1.0,
    )  # fmt: skip


def test_promotion_reaches_the_running_router_within_5_seconds(
    stack: LocalStack, sdb: Database
) -> None:
    make_experiment(sdb, "promo")
    units = [f"p-{i}" for i in range(8)]
    assert {route(stack, "promo", u).json()["variant"] for u in units} == {"control", "treatment"}
    with sdb.sessions() as s:
        service.promote(s, "promo", "treatment", actor="test")
    promoted_at = time.monotonic()
    while True:
        variants = {route(stack, "promo", u).json()["variant"] for u in units}
        if variants == {"treatment"}:
            break
        assert time.monotonic() - promoted_at < 5.0, "promotion not picked up within 5 s"
        time.sleep(0.1)
    assert time.monotonic() - promoted_at < 5.0


def test_a_ramp_from_20_to_50_percent_moves_no_treatment_unit(
    stack: LocalStack, sdb: Database
) -> None:
    make_experiment(sdb, "ramp", weights=[80, 20])
    units = [f"r-{i}" for i in range(40)]
    before = {u: route(stack, "ramp", u).json()["variant"] for u in units}
    with sdb.sessions() as s:
        service.set_weights(s, "ramp", [50, 50], actor="test")
    time.sleep(1.5)  # > 2 config refresh periods
    after = {u: route(stack, "ramp", u).json()["variant"] for u in units}
    assert all(after[u] == "treatment" for u in units if before[u] == "treatment")
    assert sum(v == "treatment" for v in after.values()) > sum(
        v == "treatment" for v in before.values()
    )


def test_feedback_is_recorded_for_a_request_or_a_unit(stack: LocalStack, sdb: Database) -> None:
    view = make_experiment(sdb, "fb")
    body = route(stack, "fb", "u-fb").json()
    ok = httpx.post(
        f"{stack.router_url}/feedback",
        json={"request_id": body["request_id"], "metric": "thumbs_up", "value": 1},
        timeout=30,
    )
    assert ok.status_code == 200 and ok.json()["recorded"] is True
    by_unit = httpx.post(
        f"{stack.router_url}/feedback",
        json={"experiment": "fb", "unit_id": "u-fb", "metric": "rating", "value": 4.5},
        timeout=30,
    )
    assert by_unit.status_code == 200
    unknown = httpx.post(
        f"{stack.router_url}/feedback",
        json={"request_id": "f" * 32, "metric": "thumbs_up", "value": 1},
        timeout=30,
    )
    assert unknown.status_code == 404 and "unknown request_id" in unknown.text
    huge = httpx.post(
        f"{stack.router_url}/feedback",
        json={"request_id": body["request_id"], "metric": "thumbs_up", "value": 1e308},
        timeout=30,
    )
    assert huge.status_code == 422 and "less than or equal to 1000000000000" in huge.text
    flush(stack)
    with sdb.sessions() as s:
        outcomes = s.scalars(sa.select(Outcome).where(Outcome.experiment_id == view.id)).all()
    got = sorted((o.metric, o.value, o.unit_id, o.request_id) for o in outcomes)
    assert got == [("rating", 4.5, "u-fb", None), ("thumbs_up", 1.0, "u-fb", body["request_id"])]


def test_n_concurrent_requests_in_gives_exactly_n_rows_out(
    stack: LocalStack, sdb: Database
) -> None:
    import asyncio

    view = make_experiment(sdb, "volume")
    n = 120

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=120) as client:
            sem = asyncio.Semaphore(8)

            async def one(i: int) -> int:
                async with sem:
                    body = {"experiment": "volume", "unit_id": f"v-{i % 37}", "arguments": ARGS}
                    return (await client.post(f"{stack.router_url}/", json=body)).status_code

            return await asyncio.gather(*(one(i) for i in range(n)))

    codes = asyncio.run(burst())
    assert codes == [200] * n
    flush(stack)
    logged = rows(sdb, view.id)
    assert len(logged) == n
    assert all(r.latency_ms > 0 and r.status == "ok" for r in logged)


def test_the_router_app_is_callable_through_fal_client_by_app_id(
    stack: LocalStack, sdb: Database
) -> None:
    import subprocess
    import sys

    make_experiment(sdb, "via-fal")
    script = (
        "import fal_client, json;"
        "r = fal_client.run('abplatform/ab-router', arguments={'experiment': 'via-fal', "
        "'unit_id': 'u1', 'arguments': {'prompt': 'hi', 'num_inference_steps': 1}});"
        "print(json.dumps({k: r[k] for k in ('model_version', 'variant', 'experiment')}))"
    )
    assert stack.fal is not None
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **stack.fal.client_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    import json

    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert body["experiment"] == "via-fal" and body["model_version"] in ("v1", "v2")


def test_writer_keeps_rows_while_the_database_is_down_and_writes_them_when_it_is_back(
    pg_server_url: str,
) -> None:
    """Losing nothing: a flush against a missing database fails and is retried later."""
    import asyncio
    from datetime import UTC, datetime

    from abplatform.core.records import RequestRecord
    from abplatform.store import logstore
    from abplatform.store.writer import BatchWriter
    from tests.helpers import TEMPLATE, admin_execute, database_url

    name = "writer_outage"
    admin_execute(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    db = make_database(database_url(pg_server_url, name))  # does not exist yet: "down"

    async def scenario() -> BatchWriter:
        writer = BatchWriter(
            lambda r, o: logstore.write_batch(db.engine, r, o), batch_size=10, flush_interval_s=0.05
        )
        await writer.start()
        for i in range(25):
            writer.log_request(
                RequestRecord(
                    request_id=f"req-{i}", experiment_id=1, phase_id=1, unit_id="u",
                    assigned_variant_id=1, served_variant_id=1, model_version="v1",
                    latency_ms=1.0, status="ok", error=None, created_at=datetime.now(UTC),
                )
            )  # fmt: skip
        await asyncio.sleep(0.5)
        assert writer.pending == 25 and writer.stats.failed_flushes >= 1
        admin_execute(pg_server_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        with db.engine.begin() as conn:  # parents of the rows
            conn.exec_driver_sql(
                "INSERT INTO experiments (id, name, description, status, hash_seed, hash_version,"
                " coverage, primary_metric, guardrails, fallback_to_control, version) OVERRIDING"
                " SYSTEM VALUE VALUES (1, 'e', '', 'running', 's', 2, 1, 'm', '[]', false, 1);"
                "INSERT INTO variants (id, experiment_id, position, key, model_version,"
                " backend_app_id, is_control) OVERRIDING SYSTEM VALUE VALUES"
                " (1, 1, 0, 'c', 'v1', 'a/b', true);"
                "INSERT INTO phases (id, experiment_id, number, weights, allocation, hash_seed,"
                " coverage, reason) OVERRIDING SYSTEM VALUE VALUES"
                " (1, 1, 1, '[1]', '[[[0, 1]]]', 's', 1, '')"
            )
        await asyncio.wait_for(writer.flush(), 30)
        await writer.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.pending == 0 and writer.stats.requests_written == 25
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM requests").scalar() == 25
    db.dispose()
