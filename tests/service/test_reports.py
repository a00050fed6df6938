"""The report on logged requests: the store's sufficient statistics (SQL over the rollups)
feed the analysis; intention to treat, multi-exposure handling, phases and percentiles.
The decision rule itself is tested without a database in ``tests/core/test_analysis.py``.

Rows are written with the router's own writer function (``logstore.write_batch``); the
expected figures are recomputed here from the same raw rows with numpy/scipy.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy.orm import Session

from abplatform import service
from abplatform.core.records import OutcomeRecord, RequestRecord
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.core.stats import RatioStatistic, welch_ttest
from abplatform.service.reports import build_report
from abplatform.store import logstore
from abplatform.store.connection import Database

V1, V2 = "abplatform/model-v1", "abplatform/model-v2"


def create(session: Session, name: str = "exp", **kw) -> service.ExperimentView:
    spec = ExperimentSpec(
        name=name,
        variants=[
            VariantSpec(key="control", model_version="v1", backend_app_id=V1, is_control=True),
            VariantSpec(key="treatment", model_version="v2", backend_app_id=V2),
        ],
        hash_seed=name,
        **kw,
    )
    service.create_experiment(session, spec, actor="t")
    return service.start_experiment(session, name, actor="t")


def request_row(view: service.ExperimentView, unit: str, assigned: str, **kw) -> RequestRecord:
    ids = {v.key: v.id for v in view.variants}
    served = kw.pop("served", assigned)
    return RequestRecord(
        request_id=uuid.uuid4().hex,
        experiment_id=view.id,
        phase_id=kw.pop("phase_id", view.current_phase.id),
        unit_id=unit,
        assigned_variant_id=ids[assigned],
        served_variant_id=ids[served] if served else None,
        model_version={"control": "v1", "treatment": "v2"}.get(served or ""),
        latency_ms=kw.pop("latency_ms", 50.0),
        status=kw.pop("status", "ok"),
        error=kw.pop("error", None),
        created_at=kw.pop("created_at", datetime.now(UTC)),
        fallback=kw.pop("fallback", False),
    )


def outcome_row(
    view: service.ExperimentView, req: RequestRecord, metric: str, value: float
) -> OutcomeRecord:
    return OutcomeRecord(
        outcome_key=uuid.uuid4().hex,
        experiment_id=view.id,
        phase_id=req.phase_id,
        request_id=req.request_id,
        unit_id=req.unit_id,
        metric=metric,
        value=value,
        created_at=datetime.now(UTC),
    )


def simulate(view, rng, *, units=400, p_error=(0.05, 0.02), lat=(3.8, 3.6), thumbs=(0.4, 0.6)):
    """Requests from ``units`` users (alternating variants, 1–8 requests each) with
    per-variant error rate, lognormal latency and thumbs-up probability."""
    reqs, outs = [], []
    for u in range(units):
        arm = u % 2
        key = ("control", "treatment")[arm]
        for _ in range(int(rng.integers(1, 9))):
            failed = rng.random() < p_error[arm]
            r = request_row(
                view, f"u{u}", key,
                status="error" if failed else "ok",
                served=None if failed else key,
                latency_ms=float(rng.lognormal(lat[arm], 0.4)),
            )  # fmt: skip
            reqs.append(r)
            if not failed and rng.random() < 0.5:
                outs.append(outcome_row(view, r, "thumbs_up", float(rng.random() < thumbs[arm])))
    return reqs, outs


def test_error_rate_is_a_unit_level_ratio_metric_matching_an_independent_computation(
    db: Database, session: Session
) -> None:
    view = create(session, primary_metric="thumbs_up")
    reqs, outs = simulate(view, np.random.default_rng(1))
    logstore.write_batch(db.engine, reqs, outs)
    report = build_report(session, "exp", method="fixed", correction="none")

    # Independent path: per-user sums from the raw rows, then the delta-method ratio.
    def ratio(arm: str) -> RatioStatistic:
        by_unit: dict[str, list[float]] = {}
        for r in reqs:
            if r.assigned_variant_id == view.variant(arm).id:
                acc = by_unit.setdefault(r.unit_id, [0.0, 0.0])
                acc[0] += r.status != "ok"
                acc[1] += 1
        m = np.array([v[0] for v in by_unit.values()])
        d = np.array([v[1] for v in by_unit.values()])
        return RatioStatistic(len(m), m.sum(), (m**2).sum(), d.sum(), (d**2).sum(), (m * d).sum())

    expected = welch_ttest(ratio("control"), ratio("treatment"), difference="absolute")
    [comp] = report.metric("error_rate").comparisons
    assert comp.difference == pytest.approx(expected.estimate, abs=1e-12)
    assert comp.ci == pytest.approx(expected.ci, abs=1e-12)
    assert comp.p_value == pytest.approx(expected.p_value, abs=1e-12)
    control = next(v for v in report.variants if v.key == "control")
    n_ctrl = sum(r.assigned_variant_id == view.variant("control").id for r in reqs)
    assert control.requests == n_ctrl and control.units == 200


def test_latency_percentiles_match_numpy_within_histogram_resolution(
    db: Database, session: Session
) -> None:
    view = create(session)
    reqs, _ = simulate(view, np.random.default_rng(2), p_error=(0.0, 0.0))
    logstore.write_batch(db.engine, reqs, [])
    report = build_report(session, "exp")
    for v in report.variants:
        lat = np.array(
            [r.latency_ms for r in reqs if r.assigned_variant_id == view.variant(v.key).id]
        )
        assert v.latency_mean_ms == pytest.approx(lat.mean(), rel=1e-12)
        # 700 log-spaced bins over 0.1 ms..1000 s: one bin spans 2.3 %.
        assert v.latency_p50_ms == pytest.approx(np.quantile(lat, 0.50), rel=0.025)
        assert v.latency_p95_ms == pytest.approx(np.quantile(lat, 0.95), rel=0.025)


def test_analysis_is_by_assigned_variant_when_a_fallback_served_another(
    db: Database, session: Session
) -> None:
    view = create(session)
    reqs = [request_row(view, f"c{i}", "control") for i in range(10)]
    reqs += [request_row(view, f"t{i}", "treatment", served="control") for i in range(10)]
    logstore.write_batch(db.engine, reqs, [])
    report = build_report(session, "exp")
    assert {v.key: v.units for v in report.variants} == {"control": 10, "treatment": 10}
    assert report.multi_exposure_units == 0


def test_units_a_weight_change_moved_count_in_their_new_variant_not_as_multi_exposed(
    db: Database, session: Session
) -> None:
    view = create(session, weights=[80, 20])
    first = [request_row(view, f"u{i}", "control") for i in range(30)]
    logstore.write_batch(db.engine, first, [])
    moved = service.set_weights(session, "exp", [50, 50], actor="t")
    second = [request_row(moved, f"u{i}", "treatment") for i in range(5)]  # moved units
    second += [request_row(moved, f"u{i}", "control") for i in range(5, 30)]
    second += [request_row(moved, f"new{i}", "treatment") for i in range(25)]
    logstore.write_batch(db.engine, second, [])

    report = build_report(session, "exp")
    assert report.phase == 2 and report.multi_exposure_units == 0
    assert {v.key: v.units for v in report.variants} == {"control": 25, "treatment": 30}
    phase1 = build_report(session, "exp", phase=1)
    assert {v.key: v.units for v in phase1.variants} == {"control": 30, "treatment": 0}


def test_units_assigned_two_variants_within_a_phase_are_counted_and_excluded_by_default(
    db: Database, session: Session
) -> None:
    view = create(session)
    rows = [request_row(view, f"c{i}", "control") for i in range(20)]
    rows += [request_row(view, f"t{i}", "treatment") for i in range(20)]
    rows += [request_row(view, f"c{i}", "treatment") for i in range(3)]  # seen in both
    logstore.write_batch(db.engine, rows, [])

    report = build_report(session, "exp")
    assert report.multi_exposure_units == 3
    assert {v.key: v.units for v in report.variants} == {"control": 17, "treatment": 20}
    assert any("3 unit(s) were assigned more than one variant" in n for n in report.notes)
    included = build_report(session, "exp", include_multi_exposure=True)
    assert {v.key: v.units for v in included.variants} == {"control": 20, "treatment": 20}


def test_an_experiment_without_traffic_reports_why_nothing_is_informative(
    session: Session,
) -> None:
    create(session, primary_metric="thumbs_up")
    report = build_report(session, "exp")
    assert all(v.units == 0 for v in report.variants)
    [err] = report.metric("error_rate").comparisons
    assert err.error_message == "NO_UNITS_IN_VARIATION" and err.p_value is None
    assert report.decision.action == "keep running"
    assert "primary metric 'thumbs_up' has no data" in report.notes[0]
    assert report.to_json()  # NaN-free JSON


def test_bad_report_arguments_say_what_is_allowed(session: Session) -> None:
    create(session)
    with pytest.raises(service.InvalidInputError, match=r"has phases 1\.\.1; got phase 3"):
        build_report(session, "exp", phase=3)
    with pytest.raises(service.InvalidInputError, match="allowed: sequential, fixed"):
        build_report(session, "exp", method="bayes")  # type: ignore[arg-type]
    with pytest.raises(service.NotFoundError, match="unknown experiment 'nope'"):
        build_report(session, "nope")
