"""Issue 8's three operator scenarios as logged traffic, for the dashboard's tests and
screenshots: a sticky re-split, a control without errors against a regressing treatment,
and an experiment whose treatment times out and falls back to the control.

Each function creates one running experiment and writes its request (and feedback) rows
with the log store, spread over the time since its phase started (so the cumulative
chart has a history), and returns its name with the recommendation an operator should
read on the experiment page.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

from abplatform import service
from abplatform.core import routing
from abplatform.core.records import OutcomeRecord, RequestRecord
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.store import experiments as repo
from abplatform.store import logstore
from abplatform.store.connection import Database

V1, V2 = "abplatform/model-v1", "abplatform/model-v2"
TWO_ARMS = [
    VariantSpec(key="control", model_version="v1", backend_app_id=V1, is_control=True),
    VariantSpec(key="treatment", model_version="v2", backend_app_id=V2),
]


def _create(db: Database, spec: ExperimentSpec) -> service.ExperimentView:
    with db.sessions() as s:
        service.create_experiment(s, spec, actor="scenario")
        service.start_experiment(s, spec.name, actor="scenario")
    return backdate(db, spec.name, hours=2)


def backdate(db: Database, name: str, *, hours: float) -> service.ExperimentView:
    """Start the current phase ``hours`` earlier (ending the one before there), as if it
    had been running that long: the traffic is spread over it, so the cumulative chart
    has a history."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            """UPDATE phases SET started_at = now() - %(h)s * interval '1 hour'
               WHERE id = (SELECT max(p.id) FROM phases p JOIN experiments e
                           ON e.id = p.experiment_id WHERE e.name = %(n)s)""",
            {"h": hours, "n": name},
        )
        conn.exec_driver_sql(
            """UPDATE phases p SET ended_at = now() - %(h)s * interval '1 hour'
               FROM experiments e WHERE e.id = p.experiment_id AND e.name = %(n)s
                 AND p.ended_at IS NOT NULL AND p.number = (
                     SELECT max(number) - 1 FROM phases WHERE experiment_id = e.id)""",
            {"h": hours, "n": name},
        )
    with db.sessions() as s:
        return service.get_experiment(s, name)


def _log(
    db: Database,
    view: service.ExperimentView,
    requests: Iterable[tuple[str, str, str, float, bool]],
    feedback: Iterable[tuple[str, str, float]] = (),
    phase: service.PhaseView | None = None,
) -> None:
    """Write ``(unit, assigned key, status, latency ms, fallback)`` request rows and
    ``(unit, metric, value)`` feedback rows in ``phase`` (default: the current one),
    spread over its time."""
    ids = {v.key: v.id for v in view.variants}
    versions = {v.key: v.model_version for v in view.variants}
    control = view.control.key
    phase = phase or view.current_phase
    rows = list(requests)
    span = (phase.ended_at or datetime.now(UTC)) - phase.started_at
    records = []
    for i, (unit, key, status, latency, fallback) in enumerate(rows):
        served = control if fallback else (key if status == "ok" else None)
        records.append(
            RequestRecord(
                request_id=uuid.uuid4().hex,
                experiment_id=view.id,
                phase_id=phase.id,
                unit_id=unit,
                assigned_variant_id=ids[key],
                served_variant_id=ids[served] if served else None,
                model_version=versions[served] if served else None,
                latency_ms=latency,
                status=status,
                error=None if status == "ok" else f"{status} of {key}",
                created_at=phase.started_at + span * (i + 1) / len(rows),
                fallback=fallback,
            )
        )
    given = list(feedback)
    outcomes = [
        OutcomeRecord(uuid.uuid4().hex, view.id, phase.id, None, unit, metric, value,
                      phase.started_at + span * (i + 1) / len(given))
        for i, (unit, metric, value) in enumerate(given)
    ]  # fmt: skip
    logstore.write_batch(db.engine, records, outcomes)


def resplit(db: Database) -> tuple[str, str]:
    """Three arms at 80/10/10 (a: v1 control, b: v2, c: v1 relabelled), 500 units, then a
    sticky re-split to 60/20/20 and the same units again: no SRM alarm, no unit
    multi-exposed, and (no real difference) keep running."""
    from tests.service.test_verdict_scenarios import _issue_units

    spec = ExperimentSpec(
        name="resplit",
        variants=[
            VariantSpec(key="a", model_version="v1", backend_app_id=V1, is_control=True),
            VariantSpec(key="b", model_version="v2", backend_app_id=V2),
            VariantSpec(key="c", model_version="v1", backend_app_id=V1),
        ],
        weights=[80, 10, 10],
        hash_seed="resplit",
        primary_metric="error_rate",
        description="3 arms 80/10/10 → sticky 60/20/20 (issue 8, finding 1)",
    )
    view = _create(db, spec)
    with db.sessions() as s:
        units = _issue_units(repo.routing_config(s, "resplit"))
    rng = np.random.default_rng(1)

    def traffic(v: service.ExperimentView) -> list[tuple[str, str, str, float, bool]]:
        with db.sessions() as s:
            cfg = repo.routing_config(s, v.name)
        out = []
        for unit in units:
            key = routing.decide_route(cfg, unit).assigned.key  # type: ignore[union-attr]
            for _ in range(3):
                failed = rng.random() < 0.03
                out.append((unit, key, "error" if failed else "ok", rng.lognormal(4.0, 0.3), False))
        return out

    first = traffic(view)
    with db.sessions() as s:
        service.set_weights(s, "resplit", [60, 20, 20], actor="scenario")
    moved = backdate(db, "resplit", hours=1)
    _log(db, moved, first, phase=moved.phases[0])
    _log(db, moved, traffic(moved))
    return "resplit", "keep running"


def zero_error_control(db: Database) -> tuple[str, str]:
    """Control without a single error in 10,000 requests, treatment with 100 (1,000
    units × 10 requests each), equal thumbs-up: the error-rate guardrail rolls back."""
    spec = ExperimentSpec(
        name="zero-error-control",
        variants=TWO_ARMS,
        hash_seed="zero-error-control",
        primary_metric="thumbs_up",
        description="control 0/10,000 errors, treatment 100/10,000 (issue 8, finding 2)",
    )
    view = _create(db, spec)
    rng = np.random.default_rng(2)
    requests, feedback = [], []
    for u in range(1000):
        for key, base in (("control", 4.0), ("treatment", 4.0)):
            unit = f"{key}-{u}"
            for r in range(10):
                failed = key == "treatment" and u < 100 and r == 0
                requests.append(
                    (unit, key, "error" if failed else "ok", rng.lognormal(base, 0.3), False)
                )
            feedback.append((unit, "thumbs_up", float(rng.random() < 0.5)))
    rng.shuffle(requests)
    rng.shuffle(feedback)
    _log(db, view, requests, feedback)
    return "zero-error-control", "roll back to control"


def fallback(db: Database) -> tuple[str, str]:
    """Fallback on; about 1 in 6 treatment requests time out and the control serves them:
    the treatment's error rate and fallback rate regress, and the guardrails roll back."""
    spec = ExperimentSpec(
        name="fallback",
        variants=TWO_ARMS,
        hash_seed="fallback",
        primary_metric="latency_mean",
        fallback_to_control=True,
        description="treatment timeouts served by the control (issue 8, finding 5)",
    )
    view = _create(db, spec)
    rng = np.random.default_rng(3)
    requests = []
    for u in range(300):
        for key in ("control", "treatment"):
            for _ in range(2):
                timed_out = key == "treatment" and rng.random() < 1 / 6
                latency = (
                    60_000.0 + rng.lognormal(4.0, 0.3) if timed_out else rng.lognormal(4.0, 0.3)
                )
                requests.append(
                    (f"{key}-{u}", key, "timeout" if timed_out else "ok", latency, timed_out)
                )
    rng.shuffle(requests)
    _log(db, view, requests)
    return "fallback", "roll back to control"


SCENARIOS = (resplit, zero_error_control, fallback)
