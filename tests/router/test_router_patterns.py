"""Every routing pattern of fal's multi-app guide, end to end on the local stack: real HTTP
into the router ``fal.App``, its fal_client calls through the local gateway to real
``fal.App`` backends (CPU-free echo apps, several runners of one for runner hints), and
the log in a real PostgreSQL, read back through the reports an operator reads.

Routes by input size, pipelines as variants, cost per request, shadow traffic, runner
hints, and mutually exclusive experiments on one route."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from abplatform import service
from abplatform.core import assignment
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.local.echo import DELAY_ENV, RUNNER_ENV, VERSION_ENV
from abplatform.local.falcloud import BackendSpec
from abplatform.local.stack import LocalStack
from abplatform.service.reports import build_report
from abplatform.store.connection import Database
from tests.helpers import fresh_database, settings_env

A, H, SLOW = "abplatform/echo-a", "abplatform/echo-h", "abplatform/echo-slow"
LORA = "abplatform/lora"
PRICE_A, PRICE_H = 0.99 / 3600, 1.89 / 3600  # USD per second, fal's public list (A100, H100)
SHADOW_DELAY_MS = 1500


def echo(version: str, delay_ms: float = 5) -> BackendSpec:
    return BackendSpec(
        target="abplatform.local.echo:EchoBackend",
        concurrency=256,
        env={DELAY_ENV: str(delay_ms), VERSION_ENV: version},
    )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, template_url: str
) -> Iterator[LocalStack]:
    """Echo apps on an A100 and an H100 (by the price table), a slow one for shadows, and
    three runners of a LoRA app (started beside the stack, routed as one app)."""
    url = fresh_database(pg_server_url, "router_patterns")
    env = {
        "ABPLATFORM_BACKEND_APPS": f"{A},{H},{SLOW},{LORA}",
        "ABPLATFORM_MACHINE_TYPES": f"{A}=GPU-A100,{H}=GPU-H100,{SLOW}=GPU-H100",
        "ABPLATFORM_LOG_FLUSH_INTERVAL_MS": "100",
        # Every mirror is checked here. With 100% mirrored and 12 requests, shedding when
        # the event loop lags (over 20 ms by default; a loaded CI machine does that now and
        # then) is the only way a mirror goes missing: it is the benchmark's subject.
        "ABPLATFORM_SHADOW_MAX_LOOP_LAG_MS": "10000",
    }
    home = Path(tmp_path_factory.mktemp("patterns", numbered=True))
    backends = {A: echo("a"), H: echo("h"), SLOW: echo("slow", SHADOW_DELAY_MS)}
    with (
        settings_env(env),
        LocalStack(
            home, config_ttl_s=30.0, database_url=url, backends=backends, extra_router_env=env
        ) as s,
    ):
        assert s.fal is not None
        urls = []
        for i in range(3):
            runner = s.fal.start_service(
                "abplatform.local.echo:EchoBackend", name=f"lora-{i}",
                env={DELAY_ENV: "2", RUNNER_ENV: f"runner-{i}"},
            )  # fmt: skip
            urls.append(f"http://127.0.0.1:{runner.port}")
        s.fal.add_route(LORA, urls[0], concurrency=64, replicas=urls[1:])
        yield s


@pytest.fixture(scope="module")
def sdb(stack: LocalStack) -> Database:
    assert stack.db is not None
    return stack.db


def experiment(db: Database, name: str, *variants: VariantSpec, **kw: object) -> int:
    with db.sessions() as s:
        spec = ExperimentSpec(name=name, variants=list(variants), hash_seed=name, **kw)
        service.create_experiment(s, spec, actor="test")
        return service.start_experiment(s, name, actor="test").id


def post(stack: LocalStack, **body: object) -> httpx.Response:
    return httpx.post(f"{stack.router_url}/", json=body, timeout=60)


def flush(stack: LocalStack) -> None:
    r = httpx.post(f"{stack.router_url}/flush", json={}, timeout=60)
    assert r.status_code == 200 and r.json()["complete"], r.text


def rows(db: Database, sql: str, **params: object) -> list[sa.Row]:
    with db.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


ARGS = {"width": {"type": "number", "default": 512}, "height": {"type": "number", "default": 512}}


def test_routes_by_input_size_send_small_and_large_images_to_different_apps(
    stack: LocalStack, sdb: Database
) -> None:
    big = experiment(
        sdb, "big-images",
        VariantSpec(key="control", model_version="h", backend_app_id=H, is_control=True),
        VariantSpec(key="treatment", model_version="h2", backend_app_id=H),
    )  # fmt: skip
    rules = [
        service.RuleSpec(name="small", when="width * height <= 1048576", app=A),
        service.RuleSpec(name="large", experiments=["big-images"]),
    ]
    with sdb.sessions() as s:
        service.create_route(s, service.RouteSpec(name="images", arguments=ARGS, rules=rules),
                             actor="test")  # fmt: skip
    sizes = [(512, 512), (1024, 1024), (2048, 1024), (4096, 4096)] * 10
    answers = [
        post(stack, route="images", unit_id=f"u{i}", arguments={"width": w, "height": h})
        for i, (w, h) in enumerate(sizes)
    ]
    assert [a.status_code for a in answers] == [200] * len(sizes)
    for (w, h), a in zip(sizes, answers, strict=True):
        body = a.json()
        assert body["route"] == "images"
        if w * h <= 1048576:
            assert (body["rule"], body["backend_app"], body["experiment"]) == ("small", A, None)
            assert body["model_version"] == "echo-a" and not body["in_experiment"]
        else:
            assert (body["rule"], body["backend_app"], body["experiment"]) == (
                "large", H, "big-images"
            )  # fmt: skip
            assert body["in_experiment"] and body["variant"] in ("control", "treatment")
    flush(stack)
    logged = rows(sdb, "SELECT rule, experiment_id, backend_app_id, count(*) FROM requests "
                       "WHERE route_id IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1")  # fmt: skip
    assert [tuple(r) for r in logged] == [("large", big, H, 20), ("small", None, A, 20)]
    with sdb.sessions() as s:
        route = service.route_report(s, "images")
        report = build_report(s, "big-images")
    by_rule = {(r.rule, r.experiment): r for r in route.rules}
    assert by_rule[("small", None)].calls == 20 and by_rule[("small", None)].app == A
    assert by_rule[("large", "big-images")].calls == 20
    assert by_rule[("small", None)].cost_per_call is not None
    assert [(r.route, r.rule, r.calls) for r in report.rules] == [("images", "large", 20)]
    assert sum(v.requests for v in report.variants) == 20


def test_a_bad_route_or_request_is_refused_and_changes_nothing(
    stack: LocalStack, sdb: Database
) -> None:
    bad = service.RouteSpec(
        name="typo", arguments=ARGS,
        rules=[service.RuleSpec(name="small", when="widht * height < 10", app=A)],
    )  # fmt: skip
    with sdb.sessions() as s, pytest.raises(service.InvalidInputError, match="unknown argument"):
        service.create_route(s, bad, actor="test")
    assert rows(sdb, "SELECT name FROM routes WHERE name = 'typo'") == []
    with sdb.sessions() as s:
        service.create_route(s, service.RouteSpec(name="only-small", arguments=ARGS, rules=[
            service.RuleSpec(name="small", when="width <= 64", app=A)]), actor="test")  # fmt: skip
    cases = [
        ({"route": "nope", "unit_id": "u", "arguments": {}}, 404, "unknown route 'nope'"),
        ({"route": "only-small", "unit_id": "u", "arguments": {"width": 100}}, 422,
         "no rule of route 'only-small' matches"),
        ({"route": "only-small", "unit_id": "u", "arguments": {"width": "wide"}}, 422,
         "argument 'width' must be a number"),
        ({"route": "only-small", "experiment": "big-images", "unit_id": "u", "arguments": {}},
         422, "give either experiment"),
        ({"unit_id": "u", "arguments": {}}, 422, "give either experiment"),
    ]  # fmt: skip
    for body, status, message in cases:
        r = post(stack, **body)
        assert r.status_code == status and message in r.text, r.text
    # Feedback on a request no experiment served has nothing to count in.
    served = post(stack, route="only-small", unit_id="u", arguments={"width": 10}).json()
    fb = httpx.post(
        f"{stack.router_url}/feedback",
        json={"request_id": served["request_id"], "metric": "thumbs_up", "value": 1},
        timeout=30,
    )
    assert fb.status_code == 409 and "outside any experiment" in fb.text


def test_a_pipeline_variant_chains_apps_and_logs_each_step(
    stack: LocalStack, sdb: Database
) -> None:
    steps = [
        service.StepSpec(app=H, inputs={"payload": "echo"}),
        service.StepSpec(app=A, inputs={"payload": "echo.stage"}, arguments={"delay_ms": 1}),
    ]
    broken = [service.StepSpec(app=H, arguments={"status": 500}), service.StepSpec(app=A)]
    eid = experiment(
        sdb, "chain",
        VariantSpec(key="control", model_version="one", backend_app_id=A, is_control=True,
                    steps=broken),
        VariantSpec(key="treatment", model_version="three", backend_app_id=A, steps=steps,
                    arguments={"delay_ms": 3}),
        weights=[20, 80],
    )  # fmt: skip
    answers = [
        post(stack, experiment="chain", unit_id=f"p{i}", arguments={"payload": {"stage": i}})
        for i in range(30)
    ]
    for i, a in enumerate(answers):
        if a.status_code == 200:  # treatment: the last step's answer, fed by the ones before
            assert a.json()["echo"] == i and a.json()["variant"] == "treatment"
        else:  # control: its second app fails, its third never runs
            assert a.status_code == 502 and a.json()["detail"]["variant"] == "control"
    flush(stack)
    with sdb.sessions() as s:
        report = build_report(s, "chain")
    steps_by = {(c.variant, c.step): c for c in report.steps}
    treated = sum(a.status_code == 200 for a in answers)
    assert {k: (c.app, c.calls, c.errors, c.skipped) for k, c in steps_by.items()} == {
        ("control", 0): (A, 30 - treated, 0, 0),
        ("control", 1): (H, 30 - treated, 30 - treated, 0),
        ("control", 2): (A, 30 - treated, 0, 30 - treated),
        ("treatment", 0): (A, treated, 0, 0),
        ("treatment", 1): (H, treated, 0, 0),
        ("treatment", 2): (A, treated, 0, 0),
    }
    assert all(c.latency_p50_ms and c.latency_p50_ms > 0 for k, c in steps_by.items()
               if k[0] == "treatment")  # fmt: skip
    treatment = next(v for v in report.variants if v.key == "treatment")
    step_costs = sum(c.cost_per_call or 0 for c in report.steps if c.variant == "treatment")
    assert math.isclose(treatment.cost_per_request or 0, step_costs, rel_tol=1e-9)
    calls = rows(sdb, "SELECT calls FROM requests WHERE experiment_id = :e AND status = 'error' "
                      "LIMIT 1", e=eid)[0][0]  # fmt: skip
    assert [(c["step"], c["status"]) for c in calls] == [(0, "ok"), (1, "error"), (2, "skipped")]
    assert "echo asked to fail with 500" in calls[1]["error"]


def test_cost_per_request_is_billed_seconds_times_the_price_and_a_decision_can_use_it(
    stack: LocalStack, sdb: Database
) -> None:
    experiment(
        sdb, "cheaper-gpu",
        VariantSpec(key="control", model_version="h100", backend_app_id=H, is_control=True),
        VariantSpec(key="treatment", model_version="a100", backend_app_id=A),
        primary_metric="cost_per_request", guardrails=["error_rate"],
    )  # fmt: skip
    answers = [post(stack, experiment="cheaper-gpu", unit_id=f"c{i}", arguments={}).json()
               for i in range(160)]  # fmt: skip
    flush(stack)
    logged = {
        r.request_id: r for r in rows(
            sdb, "SELECT request_id, billed_s, cost_usd, backend_app_id FROM requests r "
                 "JOIN experiments e ON e.id = r.experiment_id WHERE e.name = 'cheaper-gpu'")
    }  # fmt: skip
    for a in answers:
        row = logged[a["request_id"]]
        assert row.billed_s == pytest.approx(a["timings"]["inference"])  # the backend's own
        price = PRICE_A if row.backend_app_id == A else PRICE_H
        assert row.cost_usd == pytest.approx(row.billed_s * price)
    with sdb.sessions() as s:
        report = build_report(s, "cheaper-gpu")
    summary = {v.key: v for v in report.variants}
    for key, price in (("control", PRICE_H), ("treatment", PRICE_A)):
        v = summary[key]
        lo, hi = v.cost_per_request_ci or (math.nan, math.nan)
        assert lo <= v.cost_per_request <= hi and v.unpriced == 0
        assert v.cost_per_request == pytest.approx(v.billed_s_per_request * price)
    cost = report.metric("cost_per_request").comparisons[0]
    assert (
        cost.significant
        and cost.better
        and cost.lift == pytest.approx(PRICE_A / PRICE_H - 1, abs=0.1)
    )
    assert (report.decision.action, report.decision.variant) == ("ship", "treatment")


def test_shadow_traffic_is_logged_and_compared_but_never_waited_for(
    stack: LocalStack, sdb: Database
) -> None:
    eid = experiment(
        sdb, "mirror",
        VariantSpec(key="control", model_version="a", backend_app_id=A, is_control=True,
                    shadow=service.ShadowSpec(app=SLOW, percent=100)),
        VariantSpec(key="treatment", model_version="h", backend_app_id=H),
    )  # fmt: skip
    answers = [post(stack, experiment="mirror", unit_id=f"s{i}", arguments={}) for i in range(12)]
    assert [a.status_code for a in answers] == [200] * 12
    assert all(
        a.json()["model_version"] == "a" for a in answers if a.json()["variant"] == "control"
    )  # fmt: skip  (the live answer, not slow's)
    flush(stack)  # waits for the shadows in flight
    mirrored = rows(sdb, "SELECT latency_ms, calls FROM requests WHERE experiment_id = :e AND "
                         "calls IS NOT NULL", e=eid)  # fmt: skip
    controls = sum(a.json()["variant"] == "control" for a in answers)
    assert len(mirrored) == controls > 0
    for live_ms, calls in mirrored:
        (shadow,) = calls
        assert (shadow["kind"], shadow["app"], shadow["status"]) == ("shadow", SLOW, "ok")
        # The caller got its answer before the shadow (which takes 1.5 s) could answer.
        assert live_ms < SHADOW_DELAY_MS <= shadow["ms"]
    with sdb.sessions() as s:
        report = build_report(s, "mirror")
    (sh,) = report.shadows
    assert (sh.variant, sh.app, sh.calls, sh.errors) == ("control", SLOW, controls, 0)
    assert sh.latency_mean_ms >= SHADOW_DELAY_MS > sh.live_latency_mean_ms
    assert sh.cost_per_call > sh.live_cost_per_call > 0  # slower, on a dearer GPU


def test_runner_hints_send_an_adapters_requests_to_the_runner_that_holds_it(
    stack: LocalStack, sdb: Database
) -> None:
    variants = [
        VariantSpec(key="control", model_version="plain", backend_app_id=LORA, is_control=True),
        VariantSpec(key="treatment", model_version="hinted", backend_app_id=LORA,
                    runner_hint="{adapter}"),
    ]  # fmt: skip
    experiment(sdb, "lora-hints", *variants, weights=[0, 100])
    experiment(sdb, "lora-plain", *variants, weights=[100, 0])
    adapters = ["anime", "ink", "pixel", "clay"] * 6
    hinted = [post(stack, experiment="lora-hints", unit_id=f"h{i}", arguments={"adapter": a})
              .json() for i, a in enumerate(adapters)]  # fmt: skip
    plain = [post(stack, experiment="lora-plain", unit_id=f"n{i}", arguments={"adapter": a})
             .json() for i, a in enumerate(reversed(adapters))]  # fmt: skip
    assert {b["runner_hint"] for b in hinted} == set(adapters)
    assert {b["runner_hint"] for b in plain} == {None}
    runners = {a: {b["runner"] for b in hinted if b["echo"] is None and b["runner_hint"] == a}
               for a in set(adapters)}  # fmt: skip
    assert all(len(r) == 1 for r in runners.values()), runners  # one runner per adapter
    assert sum(b["adapter_loaded"] for b in hinted) == len(set(adapters))  # each loaded once
    assert sum(b["adapter_loaded"] for b in plain) > len(set(adapters))  # round-robin reloads


def test_experiments_sharing_a_namespace_on_one_route_are_mutually_exclusive(
    stack: LocalStack, sdb: Database
) -> None:
    variants = [
        VariantSpec(key="control", model_version="a", backend_app_id=A, is_control=True),
        VariantSpec(key="treatment", model_version="h", backend_app_id=H),
    ]
    left = experiment(
        sdb,
        "style-left",
        *variants,
        namespace=service.NamespaceSpec(name="styles", start=0, end=50),
    )
    right = experiment(
        sdb,
        "style-right",
        *variants,
        namespace=service.NamespaceSpec(name="styles", start=50, end=100),
    )
    with sdb.sessions() as s, pytest.raises(service.ConflictError, match="overlaps experiment"):
        service.create_experiment(
            s,
            ExperimentSpec(
                name="style-both",
                variants=variants,
                namespace=service.NamespaceSpec(name="styles", start=40, end=60),
            ),
            actor="test",
        )
    with sdb.sessions() as s:
        service.create_route(s, service.RouteSpec(name="styles", rules=[
            service.RuleSpec(name="all", experiments=["style-left", "style-right"])]),
            actor="test")  # fmt: skip
    units = [f"user-{i}" for i in range(120)]
    for unit in units * 2:
        body = post(stack, route="styles", unit_id=unit, arguments={}).json()
        expected = "style-left" if assignment.in_namespace(unit, ("styles", 0, 0.5)) else (
            "style-right")  # fmt: skip
        assert body["experiment"] == expected and body["in_experiment"]
    flush(stack)
    seen = rows(
        sdb,
        "SELECT unit_id, count(DISTINCT experiment_id) FROM requests "
        "WHERE experiment_id IN (:l, :r) GROUP BY unit_id",
        l=left,
        r=right,
    )
    assert len(seen) == len(units) and all(n == 1 for _, n in seen)  # fmt: skip
    counts = Counter(
        e
        for (e,) in rows(
            sdb,
            "SELECT experiment_id FROM requests WHERE experiment_id IN (:l, :r)",
            l=left,
            r=right,
        )
    )
    assert 0.35 < counts[left] / sum(counts.values()) < 0.65  # fmt: skip


def test_a_route_change_reaches_the_router_by_notify(stack: LocalStack, sdb: Database) -> None:
    rule = service.RuleSpec(name="all", app=A)
    spec = service.RouteSpec(name="switch", rules=[rule])
    with sdb.sessions() as s:
        service.create_route(s, spec, actor="test")
    assert post(stack, route="switch", unit_id="u", arguments={}).json()["backend_app"] == A
    with sdb.sessions() as s:
        view = service.update_route(
            s, spec.model_copy(update={"rules": [rule.model_copy(update={"app": H})]}),
            actor="test", expected_version=1,
        )  # fmt: skip
        audit = service.route_audit(s, "switch")
    assert view.version == 2 and [e["action"] for e in audit] == ["route_create", "route_update"]
    deadline = time.monotonic() + 5  # the periodic refresh is 30 s: only NOTIFY is this fast
    while post(stack, route="switch", unit_id="u", arguments={}).json()["backend_app"] != H:
        assert time.monotonic() < deadline, "the route change did not arrive"
        time.sleep(0.05)
    assert json.loads(service.RouteSpec.model_validate(audit[1]["after"]).model_dump_json())
