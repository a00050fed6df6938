"""The routing patterns on the dashboard (Streamlit's AppTest on a real PostgreSQL): the
Routes page (rules, traffic per rule, prices) and, on an experiment's page, the cost per
request with its interval, the rule its traffic came through, its pipeline steps with
where errors happen, and its shadow traffic against the live answers."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest

from abplatform import service
from abplatform.core.records import CallEntry, RequestRecord
from abplatform.core.specs import ExperimentSpec, StepSpec, VariantSpec
from abplatform.store import logstore
from abplatform.store.connection import Database
from tests.dashboard.test_dashboard_apptest import app_env, open_app  # noqa: F401

V1, V2, UP = "abplatform/model-v1", "abplatform/model-v2", "abplatform/upscale"
A100 = 0.99 / 3600
_ids = itertools.count()


def setup_patterns(db: Database) -> service.ExperimentView:
    """A route (small → model-v1, else → experiment "big"), "big" with a pipeline treatment
    and a shadow on its control, and logged traffic through both rules."""
    variants = [
        VariantSpec(key="control", model_version="v2", backend_app_id=V2, is_control=True,
                    shadow=service.ShadowSpec(app=V1, percent=50)),
        VariantSpec(key="treatment", model_version="v1-up", backend_app_id=V1,
                    steps=[StepSpec(app=UP, inputs={"image_url": "image.url"})]),
    ]  # fmt: skip
    with db.sessions() as s:
        service.create_experiment(s, ExperimentSpec(name="big", variants=variants,
                                                    hash_seed="big"), actor="test")  # fmt: skip
        view = service.start_experiment(s, "big", actor="test")
        route = service.create_route(
            s,
            service.RouteSpec(
                name="images",
                arguments={"width": {"type": "number", "default": 64}},
                rules=[
                    service.RuleSpec(name="small", when="width <= 64", app=V1),
                    service.RuleSpec(name="large", experiments=["big"]),
                ],
            ),
            actor="test",
        )
    ids = {v.key: v.id for v in view.variants}
    rows = []
    for i in range(40):
        key = "control" if i % 2 else "treatment"
        calls = None
        if key == "treatment":
            ok = i % 10 != 0
            calls = [
                CallEntry("step", 0, V1, 40.0, "ok", 0.04, 0.04 * A100),
                CallEntry(
                    "step",
                    1,
                    UP,
                    10.0,
                    "ok" if ok else "error",
                    0.01,
                    0.01 * A100,
                    None if ok else "upscale failed",
                ),
            ]
        elif i % 4 == 1:
            calls = [CallEntry("shadow", 0, V1, 45.0, "ok", 0.045, 0.045 * A100)]
        status = "error" if calls and calls[-1].status == "error" else "ok"
        cost = (
            sum(c.cost_usd or 0 for c in calls if c.kind == "step")
            if key == "treatment"
            else 0.06 * 1.89 / 3600
        )
        rows.append(
            RequestRecord(
                request_id=f"p{next(_ids)}",
                experiment_id=view.id,
                phase_id=view.current_phase.id,
                unit_id=f"u{i}",
                assigned_variant_id=ids[key],
                served_variant_id=ids[key] if status == "ok" else None,
                model_version=key,
                latency_ms=60.0,
                status=status,
                error=None,
                created_at=datetime.now(UTC),
                route_id=route.id,
                rule="large",
                backend_app_id=UP if key == "treatment" else V2,
                billed_s=0.05,
                cost_usd=cost,
                calls=json.dumps([c.to_json() for c in calls]) if calls else None,
            )
        )
    rows += [RequestRecord(
        request_id=f"p{next(_ids)}", experiment_id=None, phase_id=None, unit_id=f"s{i}",
        assigned_variant_id=None, served_variant_id=None, model_version="model-v1",
        latency_ms=30.0, status="ok", error=None, created_at=datetime.now(UTC),
        route_id=route.id, rule="small", backend_app_id=V1, billed_s=0.03,
        cost_usd=0.03 * A100) for i in range(10)]  # fmt: skip
    logstore.write_batch(db.engine, rows, [])
    return view


def table(at: object, *columns: str):
    """The first table holding every one of ``columns``."""
    for df in at.dataframe:  # type: ignore[attr-defined]
        if set(columns) <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no table with columns {columns}")


def test_the_routes_page_shows_rules_traffic_per_rule_and_prices(
    app_env: str,  # noqa: F811
    db: Database,
) -> None:
    setup_patterns(db)
    at = open_app("routes")
    rules = table(at, "#", "rule", "when", "target")
    assert list(rules["rule"]) == ["small", "large"]
    assert list(rules["when"]) == ["width <= 64", "else"]
    assert list(rules["target"]) == [f"app {V1}", "experiment big"]
    traffic = table(at, "rule", "served by", "calls").set_index("rule")
    assert traffic.loc["small", "calls"] == 10 and traffic.loc["large", "calls"] == 40
    assert traffic.loc["small", "served by"] == V1
    assert traffic.loc["large", "served by"] == "experiment big"
    small_cost = float(traffic.loc["small", "cost $/1k"][1:])
    assert small_cost == pytest.approx(0.03 * A100 * 1e3, abs=1e-4)
    prices = table(at, "machine", "USD / hour").set_index("app")
    assert prices.loc[V2, "machine"] == "GPU-H100" and prices.loc[V2, "USD / hour"] == "1.89"


def test_the_experiment_page_shows_cost_rules_steps_and_shadows(
    app_env: str,  # noqa: F811
    db: Database,
) -> None:
    setup_patterns(db)
    at = open_app("experiment", "big")
    variants = table(at, "variant", "cost $/1k req [CI]").set_index("variant")
    treatment_cost = variants.loc["treatment", "cost $/1k req [CI]"]
    assert float(treatment_cost[1:].split()[0]) == pytest.approx(0.05 * A100 * 1e3, abs=1e-4)
    assert variants.loc["treatment", "billed s/req"] == "0.050"
    rules = table(at, "rule", "served by")
    assert list(zip(rules["rule"], rules["calls"], strict=True)) == [("large", 40)]
    steps = table(at, "step", "app")
    assert list(zip(steps["step"], steps["app"], steps["calls"], steps["errors"],
                    strict=True)) == [(1, V1, 20, "0"), (2, UP, 20, "4")]  # fmt: skip
    shadows = table(at, "shadow app", "mirrored")
    assert list(shadows["shadow app"]) == [V1] and list(shadows["mirrored"]) == [10]
    assert list(shadows["latency mean shadow ms"]) == ["45.0"]
    assert list(shadows["latency mean live ms"]) == ["60.0"]
    captions = " ".join(str(c.value) for c in at.caption)
    assert f"{V1} → {UP}" in captions and f"shadow 50% → {V1}" in captions
    metrics = table(at, "metric", "verdict")
    assert "cost_per_request ($/1k)" in list(metrics["metric"])
