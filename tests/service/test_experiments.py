"""The experiment service: validation, lifecycle, phases, audit and optimistic locking."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from abplatform import service
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.store import experiments
from abplatform.store.connection import Database
from abplatform.store.models import AuditEntry, Experiment, Phase, Variant

V1, V2 = "abplatform/model-v1", "abplatform/model-v2"


def spec(name: str = "exp-a", **kw) -> ExperimentSpec:
    base = dict(
        name=name,
        variants=[
            VariantSpec(key="control", model_version="v1", backend_app_id=V1, is_control=True),
            VariantSpec(key="treatment", model_version="v2", backend_app_id=V2),
        ],
        weights=[50, 50],
        hash_seed="seed-1",
    )
    base.update(kw)
    return ExperimentSpec(**base)


def row_counts(session: Session) -> dict[str, int]:
    return {
        m.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(m))
        for m in (Experiment, Variant, Phase, AuditEntry)
    }


def test_create_stores_variants_first_phase_and_audit_entry(session: Session) -> None:
    view = service.create_experiment(session, spec(weights=[20, 80]), actor="alice")
    assert view.status == "draft"
    assert [v.key for v in view.variants] == ["control", "treatment"]
    assert view.control.key == "control"
    assert view.current_phase.number == 1
    assert view.current_phase.weights == pytest.approx((20.0, 80.0))
    assert [v.weight for v in view.variants] == pytest.approx([20.0, 80.0])
    log = service.audit_log(session, "exp-a")
    assert [e["action"] for e in log] == ["create"]
    assert log[0]["actor"] == "alice"


def test_default_split_is_equal_and_seed_is_random(session: Session) -> None:
    a = service.create_experiment(session, spec("a", weights=None, hash_seed=None), actor="t")
    b = service.create_experiment(session, spec("b", weights=None, hash_seed=None), actor="t")
    assert a.current_phase.weights == pytest.approx((50.0, 50.0))
    assert a.hash_seed != b.hash_seed and len(a.hash_seed) >= 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [60, 60]}, "sum to 120%, they must sum to 100%"),
        ({"weights": [100]}, "got 1 weights for 2 variants"),
        ({"weights": [-10, 110]}, "must be a number ≥ 0"),
        ({"coverage": 150}, "must be a percent in [0, 100]"),
        (
            {
                "variants": [
                    VariantSpec(key="a", model_version="v1", backend_app_id=V1),
                    VariantSpec(key="b", model_version="v2", backend_app_id=V2),
                ]
            },
            "exactly one variant must be the control, got 0",
        ),
        (
            {
                "variants": [
                    VariantSpec(key="a", model_version="v1", backend_app_id=V1, is_control=True),
                    VariantSpec(key="b", model_version="v2", backend_app_id=V2, is_control=True),
                ]
            },
            "exactly one variant must be the control, got 2",
        ),
        (
            {
                "variants": [
                    VariantSpec(key="a", model_version="v1", backend_app_id=V1, is_control=True)
                ],
                "weights": [100],
            },
            "at least 2 variants",
        ),
        (
            {
                "variants": [
                    VariantSpec(key="a", model_version="v1", backend_app_id=V1, is_control=True),
                    VariantSpec(key="a", model_version="v2", backend_app_id=V2),
                ]
            },
            "variant keys must be unique; repeated: a",
        ),
        (
            {
                "variants": [
                    VariantSpec(key="a", model_version="v1", backend_app_id=V1, is_control=True),
                    VariantSpec(key="b", model_version="v9", backend_app_id="someone/model-v9"),
                ]
            },
            "unknown backend app id 'someone/model-v9'; known: abplatform/model-v1",
        ),
    ],
)
def test_invalid_create_says_what_is_allowed_and_changes_nothing(
    session: Session, kwargs: dict, message: str
) -> None:
    before = row_counts(session)
    with pytest.raises(service.InvalidInputError, match=None) as err:
        service.create_experiment(session, spec(**kwargs), actor="t")
    assert message in str(err.value)
    session.rollback()
    assert row_counts(session) == before


def test_duplicate_name_is_a_conflict_and_changes_nothing(session: Session) -> None:
    service.create_experiment(session, spec(), actor="t")
    before = row_counts(session)
    with pytest.raises(service.ConflictError, match="already exists; names must be unique"):
        service.create_experiment(session, spec(), actor="t")
    session.rollback()
    assert row_counts(session) == before


def test_unknown_experiment_lists_the_known_ones(session: Session) -> None:
    service.create_experiment(session, spec("known-one"), actor="t")
    with pytest.raises(service.NotFoundError, match=r"unknown experiment 'nope'.*known-one"):
        service.get_experiment(session, "nope")


def test_weight_change_starts_a_new_phase_with_sticky_allocation(session: Session) -> None:
    service.create_experiment(session, spec(weights=[80, 20]), actor="t")
    service.start_experiment(session, "exp-a", actor="t")
    preview = service.preview_weight_change(session, "exp-a", [50, 50])
    assert preview.moved_fraction == pytest.approx(0.30, abs=1e-9)  # half L1: |0.8-0.5|
    view = service.set_weights(session, "exp-a", [50, 50], actor="bob")
    assert [p.number for p in view.phases] == [1, 2]
    assert view.phases[0].ended_at is not None
    assert view.current_phase.weights == pytest.approx((50.0, 50.0))
    assert view.current_phase.hash_seed == view.phases[0].hash_seed  # sticky keeps the seed
    entry = service.audit_log(session, "exp-a")[-1]
    assert entry["action"] == "set_weights" and entry["actor"] == "bob"
    assert entry["before"]["weights"] == [0.8, 0.2] and entry["after"]["weights"] == [0.5, 0.5]


def test_rerandomize_draws_a_new_seed(session: Session) -> None:
    service.create_experiment(session, spec(), actor="t")
    preview = service.preview_weight_change(session, "exp-a", [50, 50], mode="rerandomize")
    assert preview.moved_fraction == pytest.approx(0.5)
    view = service.set_weights(session, "exp-a", [50, 50], actor="t", mode="rerandomize")
    assert view.current_phase.hash_seed != view.phases[0].hash_seed


def test_invalid_weight_change_changes_nothing(session: Session) -> None:
    service.create_experiment(session, spec(), actor="t")
    before = service.get_experiment(session, "exp-a")
    with pytest.raises(service.InvalidInputError, match="must sum to 100%"):
        service.set_weights(session, "exp-a", [10, 10], actor="t")
    with pytest.raises(service.InvalidInputError, match="allowed: sticky, rerandomize"):
        service.set_weights(session, "exp-a", [50, 50], actor="t", mode="shuffle")  # type: ignore[arg-type]
    session.rollback()
    after = service.get_experiment(session, "exp-a")
    assert after.version == before.version and len(after.phases) == 1
    assert len(service.audit_log(session, "exp-a")) == 1


def test_stale_write_is_refused(db: Database) -> None:
    with db.sessions() as s:
        v = service.create_experiment(s, spec(), actor="t")
    with db.sessions() as s:
        service.set_weights(s, "exp-a", [30, 70], actor="first", expected_version=v.version)
    with db.sessions() as s, pytest.raises(service.StaleWriteError, match="changed since you read"):
        service.set_weights(s, "exp-a", [90, 10], actor="second", expected_version=v.version)
    with db.sessions() as s:
        assert service.get_experiment(s, "exp-a").current_phase.weights == pytest.approx((30, 70))


def test_promote_gives_the_winner_everything_and_concludes(session: Session) -> None:
    service.create_experiment(session, spec(), actor="t")
    service.start_experiment(session, "exp-a", actor="t")
    view = service.promote(session, "exp-a", "treatment", actor="carol")
    assert view.status == "concluded" and view.winner == "treatment"
    assert view.current_phase.weights == pytest.approx((0.0, 100.0))
    cfg = experiments.routing_config(session, "exp-a")
    assert cfg.variants[cfg.winner_index].key == "treatment"
    with pytest.raises(service.ConflictError, match="it is concluded"):
        service.set_weights(session, "exp-a", [50, 50], actor="t")
    assert service.audit_log(session, "exp-a")[-1]["action"] == "promote"


def test_promote_unknown_variant_lists_variants(session: Session) -> None:
    service.create_experiment(session, spec(), actor="t")
    with pytest.raises(service.InvalidInputError, match="no variant 'v3'; variants: control"):
        service.promote(session, "exp-a", "v3", actor="t")
    session.rollback()
    assert service.get_experiment(session, "exp-a").status == "draft"


def test_stop_and_lifecycle_rules(session: Session) -> None:
    service.create_experiment(session, spec(), actor="t")
    with pytest.raises(
        service.ConflictError,
        match="cannot start experiment 'exp-a': it is running, and this is allowed only "
        "when it is draft",
    ):
        service.start_experiment(session, "exp-a", actor="t")
        service.start_experiment(session, "exp-a", actor="t")
    session.rollback()
    view = service.stop_experiment(session, "exp-a", actor="t")
    assert view.status == "stopped"
    assert [e["action"] for e in service.audit_log(session, "exp-a")] == [
        "create",
        "start",
        "stop",
    ]


def test_setting_the_same_weights_again_is_refused_as_a_no_op(session: Session) -> None:
    service.create_experiment(session, spec(weights=[20, 80]), actor="t")
    with pytest.raises(service.InvalidInputError, match="weights are already 20/80"):
        service.set_weights(session, "exp-a", [20, 80], actor="t")
    session.rollback()
    assert len(service.get_experiment(session, "exp-a").phases) == 1
    view = service.set_weights(session, "exp-a", [20, 80], actor="t", mode="rerandomize")
    assert len(view.phases) == 2  # a new seed is a real change
