"""The Streamlit dashboard, page by page and action by action, with Streamlit's AppTest
against a real PostgreSQL (one fresh database per test).

Every write goes through the UI; what was (or was not) saved is checked through the
service. Also here: the data layer the pages read (:mod:`abplatform.service.reports`),
the operator-login rules (:mod:`dashboard.auth`) and the result store.
"""

from __future__ import annotations

import io
import itertools
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from abplatform import service
from abplatform.core import wording
from abplatform.core.records import OutcomeRecord, RequestRecord
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.service import reports as dashboard_data
from abplatform.service.reports import build_report
from abplatform.store import experiments, logstore
from abplatform.store.connection import Database
from dashboard import auth
from dashboard.store import ResultStore
from tests.dashboard.scenarios import SCENARIOS

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
V1, V2 = "abplatform/model-v1", "abplatform/model-v2"
PASSWORD = "correct horse battery staple"
_ids = itertools.count()


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def app_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The dashboard's environment: this test's database, a password, no background."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("ABPLATFORM_DASHBOARD_REFRESH_S", "0")  # recompute synchronously
    monkeypatch.delenv(auth.EMAILS_ENV, raising=False)
    return db_url


def open_app(page: str = "overview", experiment: str | None = None) -> AppTest:
    """The app on ``page`` (deep link), run once."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["page"] = page
    if experiment:
        at.query_params["experiment"] = experiment
    at.run()
    assert not at.exception, at.exception[0].value if at.exception else ""
    return at


def log_in(at: AppTest, name: str = "alice", password: str = PASSWORD) -> AppTest:
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    at.button(key="login_submit").click().run()
    assert not at.exception
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def keys_of(at: AppTest) -> set[str]:
    """Keys of every widget on the page."""
    out = set()
    for kind in ("button", "text_input", "number_input", "checkbox", "selectbox", "radio"):
        out |= {w.key for w in getattr(at, kind) if w.key}
    return out


def make_experiment(
    db: Database,
    name: str,
    *,
    weights: tuple[float, float] = (50, 50),
    start: bool = True,
    primary_metric: str = "error_rate",
) -> service.ExperimentView:
    variants = [
        VariantSpec(key="control", model_version="v1", backend_app_id=V1, is_control=True),
        VariantSpec(key="treatment", model_version="v2", backend_app_id=V2),
    ]
    with db.sessions() as s:
        view = service.create_experiment(
            s,
            ExperimentSpec(
                name=name,
                variants=variants,
                weights=list(weights),
                hash_seed=f"seed-{name}",
                primary_metric=primary_metric,
            ),
            actor="test",
        )
        if start:
            view = service.start_experiment(s, name, actor="test")
    return view


def log_requests(
    db: Database,
    view: service.ExperimentView,
    rows: list[tuple[str, str, str, float]],
    *,
    at: datetime | None = None,
) -> None:
    """Log ``(unit, variant key, status, latency ms)`` rows in the current phase."""
    ids = {v.key: v.id for v in view.variants}
    t = at or datetime.now(UTC)
    logstore.write_batch(
        db.engine,
        [
            RequestRecord(
                request_id=f"req-{next(_ids)}",
                experiment_id=view.id,
                phase_id=view.current_phase.id,
                unit_id=unit,
                assigned_variant_id=ids[key],
                served_variant_id=ids[key] if status == "ok" else None,
                model_version={"control": "v1", "treatment": "v2"}[key],
                latency_ms=latency,
                status=status,
                error=None if status == "ok" else "backend failed",
                created_at=t,
            )
            for unit, key, status, latency in rows
        ],
        [],
    )


def traffic(
    n_control: int, n_treatment: int, err_control: int, err_treatment: int, per_unit: int = 2
) -> list[tuple[str, str, str, float]]:
    """``per_unit`` requests per unit; the first ``err_*`` units fail their first request.
    Latency: control 100 + unit index mod 50 ms, treatment 80 + unit index mod 40 ms."""
    rows = []
    for key, n, errs, base, spread in (
        ("control", n_control, err_control, 100.0, 50),
        ("treatment", n_treatment, err_treatment, 80.0, 40),
    ):
        for u in range(n):
            for r in range(per_unit):
                status = "error" if (u < errs and r == 0) else "ok"
                rows.append((f"{key}-{u}", key, status, base + u % spread))
    return rows


def get(db: Database, name: str) -> service.ExperimentView:
    with db.sessions() as s:
        return service.get_experiment(s, name)


def audit_actions(db: Database, name: str) -> list[tuple[str, str]]:
    with db.sessions() as s:
        return [(e["action"], e["actor"]) for e in service.audit_log(s, name)]


def frame(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first table whose columns are exactly ``columns`` (in order)."""
    for df in at.dataframe:
        if tuple(df.value.columns) == columns:
            return df.value
    raise AssertionError(f"no table with columns {columns}")


VARIANT_COLUMNS = (
    "variant", "model", "weight %", "units", "requests", "rejected", "error rate",
    "latency mean ms", "p50 ms", "p95 ms", "p99 ms", "feedback",
)  # fmt: skip
COMPARISON_COLUMNS = (  # one treatment: the comparator is the table's title
    "metric", "role", "verdict", "difference [CS]", "lift [CS]",
    "p", "adj. p", "control → treatment",
)  # fmt: skip
FIXED_COLUMNS = (
    "metric", "role", "verdict", "difference [CI]", "lift [CI]", "p",
    "adj. p", "control → treatment",
)  # fmt: skip
LATENCY_COLUMNS = ("variant", "requests", "latency mean ms", "p50 ms", "p95 ms", "p99 ms")
AUDIT_COLUMNS = ("at (UTC)", "actor", "action", "before", "after", "why")


def chart_data(at: AppTest, key_fragment: str) -> pd.DataFrame:
    """The data of the Vega-Lite chart whose spec mentions ``key_fragment``."""
    for chart in at.get("vega_lite_chart"):
        if key_fragment in chart.proto.spec:
            frames = [
                pa.ipc.open_stream(io.BytesIO(d.data.data)).read_all().to_pandas()
                for d in chart.proto.datasets
            ]
            return max(frames, key=len)
    raise AssertionError(f"no chart with {key_fragment!r}")


# ----------------------------------------------------------------------------- access


def test_without_login_every_page_is_read_only_and_nothing_can_change(
    app_env: str, db: Database
) -> None:
    make_experiment(db, "ro")
    before = get(db, "ro")
    at = open_app("experiment", "ro")
    assert "Read-only: log in as an operator (sidebar) to change the split, promote or stop." in (
        texts(at, "info")
    )
    write_keys = {"split_apply", "promote_apply", "end_rollback", "end_stop", "start_apply"}
    assert not write_keys & keys_of(at)
    assert not any(k.startswith(("split_", "promote_", "end_")) for k in keys_of(at))
    at = open_app("create")
    assert "Read-only: log in as an operator (sidebar) to create experiments." in texts(at, "info")
    assert not any(k.startswith("create_") for k in keys_of(at))
    assert get(db, "ro").version == before.version
    assert audit_actions(db, "ro") == [("create", "test"), ("start", "test")]


def test_a_wrong_password_is_refused_and_the_right_one_logs_in(app_env: str, db: Database) -> None:
    make_experiment(db, "pw")
    at = log_in(open_app("experiment", "pw"), password="wrong")
    assert "Wrong operator password." in texts(at, "error")
    assert "split_apply" not in keys_of(at) and "promote_apply" not in keys_of(at)
    assert at.text_input(key="login_password").value == ""  # never kept in the page
    at = log_in(at, "alice")
    assert "Logged in as **dashboard:alice**: you can change experiments." in texts(at, "success")
    assert {"split_apply", "promote_apply", "end_rollback", "end_stop"} <= keys_of(at)
    at.button(key="logout").click().run()
    assert "split_apply" not in keys_of(at)


def test_five_wrong_passwords_lock_the_login_even_for_the_right_one(
    app_env: str, db: Database
) -> None:
    at = open_app("create")
    for _ in range(5):
        at = log_in(at, password="guess")
    at = log_in(at, password=PASSWORD)
    assert any(t.startswith("Too many wrong passwords; try again in") for t in texts(at, "error"))
    assert not any(k.startswith("create_") for k in keys_of(at))


def test_without_a_configured_password_writing_is_disabled(
    app_env: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(auth.PASSWORD_ENV)
    at = open_app("create")
    assert "login_submit" not in keys_of(at)
    assert any(
        t.startswith("Writing is disabled: set ABPLATFORM_OPERATOR_PASSWORD")
        for t in texts(at, "info")
    )


def test_the_password_can_come_from_streamlit_secrets(
    app_env: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(auth.PASSWORD_ENV)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["operator_password"] = "from-secrets"
    at.query_params["page"] = "create"
    at.run()
    at = log_in(at, "bea", PASSWORD)
    assert "Wrong operator password." in texts(at, "error")
    at = log_in(at, "bea", "from-secrets")
    assert "create_submit" in keys_of(at)


OIDC_SECRETS = {
    "auth": {
        "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "cookie",
        "client_id": "dashboard",
        "client_secret": "secret",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    },
    "operator_emails": ["ann@example.org"],
}


@pytest.mark.parametrize(
    ("email", "can_write"),
    [("ann@example.org", True), ("mallory@example.org", False), (None, False)],
)
def test_single_sign_on_users_on_the_allow_list_can_write(
    app_env: str, db: Database, email: str, can_write: bool
) -> None:
    make_experiment(db, "sso")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets.update(OIDC_SECRETS)
    at.user = {"is_logged_in": True, "email": email} if email else {"is_logged_in": False}
    at.query_params.update({"page": "experiment", "experiment": "sso"})
    at.run()
    assert not at.exception
    assert ("promote_apply" in keys_of(at)) is can_write
    if can_write:
        at.checkbox(key="end_confirm").check().run()
        at.button(key="end_stop").click().run()
        assert audit_actions(db, "sso")[-1] == ("stop", "dashboard:ann@example.org")
    elif email:
        assert (
            "Signed in as mallory@example.org, who is not on the operator list: read-only."
            in texts(at, "warning")
        )
    else:
        assert "login_sso" in keys_of(at)  # offered to the signed-out visitor
    assert get(db, "sso").status == ("stopped" if can_write else "running")


def test_password_rules_constant_time_compare_secrets_and_oidc() -> None:
    assert auth.check_password("s3cret", "s3cret")
    assert not auth.check_password("s3cre", "s3cret")
    assert not auth.check_password("", "")  # no password configured: nobody gets in
    assert not auth.check_password("x", None)
    assert auth.operator_password({}, {auth.PASSWORD_ENV: "env"}) == "env"
    assert auth.operator_password({"operator_password": "top"}, {}) == "top"
    assert auth.operator_password({"abplatform": {"operator_password": "sec"}}, {}) == "sec"
    assert auth.operator_password({"operator_password": "top"}, {auth.PASSWORD_ENV: "env"}) == "env"
    assert auth.operator_password({}, {}) is None
    oidc = {"auth": {"redirect_uri": "http://x/oauth2callback", "cookie_secret": "c"}}
    assert not auth.oidc_configured(oidc)
    oidc["auth"]["google"] = {"client_id": "id", "client_secret": "s"}
    assert auth.oidc_configured(oidc) and auth.oidc_provider(oidc) == "google"
    assert auth.oidc_provider(OIDC_SECRETS) is None  # the default [auth] provider
    allowed = auth.operator_emails({"operator_emails": ["Ann@x.org"]}, {})
    assert auth.oidc_operator_allowed("ann@x.org", allowed)
    assert not auth.oidc_operator_allowed("bob@x.org", allowed)
    assert auth.oidc_operator_allowed("bob@x.org", frozenset())
    assert auth.actor_name("Alice Smith <a@x>") == "dashboard:AliceSmitha@x"
    assert auth.actor_name("") == "dashboard:operator"
    now = [0.0]
    throttle = auth.LoginThrottle(max_failures=2, lockout_s=30, clock=lambda: now[0])
    assert not throttle.attempt("a", "pw") and not throttle.attempt("b", "pw")
    assert not throttle.attempt("pw", "pw") and throttle.locked_for() == 30
    now[0] = 31.0
    assert throttle.attempt("pw", "pw")


# ----------------------------------------------------------------------------- create


def fill_create_form(at: AppTest, name: str, **over: object) -> AppTest:
    values: dict[str, object] = {
        "create_name": name,
        "create_description": "tiny v2 against v1",
        "create_key_0": "control",
        "create_model_0": "v1",
        "create_key_1": "treatment",
        "create_model_1": "v2",
        "create_weight_0": 30.0,
        "create_weight_1": 70.0,
        "create_coverage": 90.0,
        "create_primary_metric": "thumbs_up",
        **over,
    }
    for key, value in values.items():
        if isinstance(value, str):
            widget = (
                at.text_input(key=key) if key != "create_description" else at.text_area(key=key)
            )
            widget.input(value)
        elif isinstance(value, bool):
            at.checkbox(key=key).set_value(value)
        else:
            at.number_input(key=key).set_value(value)
    return at


def test_create_saves_the_experiment_with_a_random_seed_and_opens_it(
    app_env: str, db: Database
) -> None:
    at = log_in(open_app("create"))
    at.selectbox(key="create_app_1").set_value(V2)
    at.multiselect(key="create_guardrails").set_value(["error_rate", "latency_p99"])
    at = fill_create_form(at, "img-v2")
    at.button(key="create_submit").click().run()
    assert not at.exception
    view = get(db, "img-v2")
    assert view.status == "running" and view.description == "tiny v2 against v1"
    assert [(v.key, v.model_version, v.backend_app_id, v.is_control) for v in view.variants] == [
        ("control", "v1", V1, True),
        ("treatment", "v2", V2, False),
    ]
    assert view.current_phase.weights == pytest.approx((30.0, 70.0))
    assert view.coverage == pytest.approx(90.0)
    assert view.primary_metric == "thumbs_up"
    assert view.guardrails == ("error_rate", "latency_p99")
    assert re.fullmatch(r"[0-9a-f]{16}", view.hash_seed)  # random, from the service
    assert audit_actions(db, "img-v2") == [
        ("create", "dashboard:alice"),
        ("start", "dashboard:alice"),
    ]
    assert at.radio(key="nav").value == "Experiment"
    assert at.selectbox(key="experiment").value == "img-v2"
    assert any("Created experiment **img-v2** (running" in t for t in texts(at, "success"))
    at.radio(key="nav").set_value("Create experiment").run()
    assert at.text_input(key="create_name").value == ""  # the form starts afresh


def test_a_second_form_gets_a_different_random_seed_and_can_stay_a_draft(
    app_env: str, db: Database
) -> None:
    for name in ("seed-a", "seed-b"):
        at = log_in(open_app("create"))
        at = fill_create_form(at, name, create_start=False)
        at.button(key="create_submit").click().run()
    a, b = get(db, "seed-a"), get(db, "seed-b")
    assert a.status == b.status == "draft"
    assert a.hash_seed != b.hash_seed


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"create_weight_0": 60.0, "create_weight_1": 30.0},
            "weights sum to 90%, they must sum to 100% (e.g. 50,50 or 80,20)",
        ),
        ({"create_control_0": False}, "exactly one variant must be the control, got 0"),
        (
            {"create_control_1": True},
            "exactly one variant must be the control, got 2 (control, treatment)",
        ),
        ({"create_key_1": "control"}, "variant keys must be unique; repeated: control"),
        (
            {"create_name": "Bad Name"},
            "the name must be 1–100 characters: lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        ),
        ({"create_model_1": ""}, "variant #2: the model_version label is required"),
        ({"create_coverage": 0.0, "create_primary_metric": ""}, "the primary metric is required"),
    ],
)
def test_invalid_input_shows_inline_errors_and_saves_nothing(
    app_env: str, db: Database, over: dict, message: str
) -> None:
    at = log_in(open_app("create"))
    at = fill_create_form(at, "bad-one", **over)
    at.button(key="create_submit").click().run()
    errors = texts(at, "error")
    assert "Nothing was saved: fix the problems marked below." in errors
    assert any(message in e for e in errors), errors
    with db.sessions() as s:
        assert service.list_experiments(s) == []
    assert at.radio(key="nav").value == "Create experiment"
    assert at.number_input(key="create_coverage").value == over.get("create_coverage", 90.0)


def test_a_duplicate_name_is_refused_and_the_existing_experiment_is_untouched(
    app_env: str, db: Database
) -> None:
    existing = make_experiment(db, "dup")
    at = log_in(open_app("create"))
    at = fill_create_form(at, "dup")
    at.button(key="create_submit").click().run()
    assert "an experiment named 'dup' already exists; names must be unique" in texts(at, "error")
    with db.sessions() as s:
        assert [v.name for v in service.list_experiments(s)] == ["dup"]
    after = get(db, "dup")
    assert after.version == existing.version
    assert after.current_phase.weights == pytest.approx((50.0, 50.0))


# ----------------------------------------------------------------------------- overview


def test_overview_shows_status_split_traffic_headline_srm_and_last_change(
    app_env: str, db: Database
) -> None:
    live = make_experiment(db, "live")
    make_experiment(db, "draft-one", start=False, weights=(80, 20))
    log_requests(db, live, traffic(40, 40, 8, 2))
    at = open_app("overview")
    df = at.dataframe(key="overview_table").value
    assert list(df["experiment"]) == ["draft-one", "live"]  # newest first
    rows = df.set_index("experiment")
    assert rows.loc["live", "status"] == "running"
    assert rows.loc["draft-one", "status"] == "draft"
    assert rows.loc["live", "weights %"] == "control 50 / treatment 50"
    assert rows.loc["draft-one", "weights %"] == "control 80 / treatment 20"
    assert (rows.loc["live", "units"], rows.loc["live", "requests"]) == (80, 160)
    assert (rows.loc["draft-one", "units"], rows.loc["draft-one", "requests"]) == (0, 0)
    with db.sessions() as s:
        report = build_report(s, "live")
    c = report.metric("error_rate").comparisons[0]
    assert rows.loc["live", "primary metric"] == (
        f"error_rate: treatment {c.lift:+.1%} [{c.lift_ci[0]:+.1%}, {c.lift_ci[1]:+.1%}], "
        f"p={c.p_value:.2f}, not significant"
    )
    assert "P(better" not in rows.loc["live", "primary metric"]  # one engine per view
    assert rows.loc["live", "phase"] == "1" and rows.loc["live", "recommendation"] == "keep running"
    assert rows.loc["live", "all phases"] == "80 units, 160 requests"
    assert c.lift == pytest.approx(-0.75)  # 2/80 against 8/80 failed requests
    assert rows.loc["draft-one", "primary metric"] == "error_rate: no data yet"
    assert rows.loc["live", "SRM"] == "ok" and rows.loc["draft-one", "SRM"] == "–"
    assert rows.loc["live", "last change"].startswith("start by test, ")
    assert rows.loc["draft-one", "last change"].startswith("create by test, ")
    assert [m.value for m in at.metric] == ["1", "1", "0", "0"]  # running, draft, ...


def test_a_deep_link_opens_the_experiment_page(app_env: str, db: Database) -> None:
    make_experiment(db, "first")
    make_experiment(db, "second")
    at = open_app("experiment", "first")
    assert at.radio(key="nav").value == "Experiment"
    assert at.selectbox(key="experiment").value == "first"
    assert at.title[0].value == "first"
    assert at.query_params == {"page": "experiment", "experiment": "first"}
    at.radio(key="nav").set_value("Overview").run()
    assert at.query_params == {"page": "overview"}  # the URL follows the sidebar


# ----------------------------------------------------------------------------- experiment


def test_the_experiment_page_shows_the_report_with_its_charts(app_env: str, db: Database) -> None:
    view = make_experiment(db, "results")
    log_requests(db, view, traffic(60, 60, 12, 3))
    at = open_app("experiment", "results")
    with db.sessions() as s:
        report = build_report(s, "results")
    variants = frame(at, *VARIANT_COLUMNS)
    assert list(variants["variant"]) == ["control (control)", "treatment"]
    assert list(variants["units"]) == [60, 60] and list(variants["requests"]) == [120, 120]
    assert list(variants["error rate"]) == ["10.00%", "2.50%"]
    assert list(variants["p50 ms"]) == [f"{v.latency_p50_ms:.1f}" for v in report.variants]
    comparisons = frame(at, *COMPARISON_COLUMNS).set_index("metric")
    c = report.metric("error_rate").comparisons[0]
    row = comparisons.loc["error_rate"]
    assert "treatment vs control" in [h.value for h in at.subheader] and row["role"] == "primary"
    assert (
        row["difference [CS]"] == (f"{c.difference:+.4f} [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]")
        and f"{c.difference:+.4f}" == "-0.0750"
    )
    assert row["p"] == f"{c.p_value:.2f}"
    assert row["verdict"] == "not significant"
    assert report.method == "sequential"  # the default, stated on the page
    assert any(
        "Phase 1 · sequential test (always valid, safe to watch), α 0.05, Holm correction" in t
        for t in texts(at, "caption")
    )
    assert (
        "No sample ratio mismatch: observed vs expected units: control 60 vs 60.0, "
        f"treatment 60 vs 60.0 (χ²=0.00, p={report.srm.p_value:.3g})."
    ) in texts(at, "success")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Units in more than one variant"] == "0"
    assert (metrics["Units"], metrics["Requests"]) == ("120", "240")
    latency = frame(at, *LATENCY_COLUMNS)
    assert list(latency["p95 ms"]) == [f"{v.latency_p95_ms:.1f}" for v in report.variants]
    latency_rows = [df.value for df in at.dataframe][-1]
    assert set(latency_rows["metric"]) == {
        "latency_mean", "latency_p50", "latency_p95", "latency_p99"
    }  # fmt: skip
    forest = chart_data(at, "lift vs control")
    expected = {
        (m.metric, c.variant): c.lift for m in report.metrics for c in m.comparisons if c.lift
    }
    drawn = {(m, v): lift for m, v, lift in forest[["metric", "variant", "lift"]].itertuples(False)}
    assert drawn == pytest.approx(expected)
    cumulative = chart_data(at, "lift of error_rate")
    last = cumulative.iloc[-1]
    assert (last["lift"], last["low"], last["high"]) == pytest.approx((c.lift, *c.lift_ci))
    latency_hist = chart_data(at, "latency (ms, log scale)")
    shares = latency_hist.groupby("variant")["share"].sum()
    assert shares.to_dict() == pytest.approx({"control": 1.0, "treatment": 1.0})
    assert latency_hist.groupby("variant")["requests"].sum().to_dict() == {
        "control": 108, "treatment": 117
    }  # fmt: skip


def test_the_srm_banner_shows_observed_against_expected(app_env: str, db: Database) -> None:
    view = make_experiment(db, "skewed")
    log_requests(db, view, traffic(600, 400, 0, 0, per_unit=1))
    at = open_app("experiment", "skewed")
    with db.sessions() as s:
        srm = build_report(s, "skewed").srm
    assert srm.flagged
    assert (
        "Sample ratio mismatch: observed vs expected units: control 600 vs 500.0, treatment "
        f"400 vs 500.0 (χ²=40.00, p={srm.p_value:.3g}). Fix assignment first."
    ) in texts(at, "error")


def test_units_seen_in_two_variants_are_counted(app_env: str, db: Database) -> None:
    view = make_experiment(db, "multi")
    rows = traffic(30, 30, 0, 0, per_unit=1)
    rows += [(f"control-{u}", "treatment", "ok", 90.0) for u in range(4)]  # 4 units in both
    log_requests(db, view, rows)
    at = open_app("experiment", "multi")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Units in more than one variant"] == "4"
    assert metrics["Units"] == "56"  # excluded from the analysis


# ----------------------------------------------------------------------------- split


def set_split(at: AppTest, control: float, treatment: float, mode: str = "sticky") -> AppTest:
    at.number_input(key="split_weight_control").set_value(control)
    at.number_input(key="split_weight_treatment").set_value(treatment)
    at.radio(key="split_mode").set_value(mode)
    return at.run()


def test_a_sticky_split_change_previews_the_moving_units_then_starts_a_phase(
    app_env: str, db: Database
) -> None:
    view = make_experiment(db, "ramp")
    log_requests(db, view, traffic(50, 50, 0, 0, per_unit=1))
    at = set_split(log_in(open_app("experiment", "ramp")), 20, 80)
    assert (
        "30.0% of units would change variant (about 30 of the 100 units seen): 50/50 → 20/80. "
        "A new phase starts and the report restarts from it."
    ) in texts(at, "info")
    assert at.button(key="split_apply").disabled  # not confirmed yet
    assert get(db, "ramp").current_phase.number == 1  # a preview changes nothing
    at.checkbox(key="split_confirm").check().run()
    at.button(key="split_apply").click().run()
    after = get(db, "ramp")
    assert after.current_phase.number == 2
    assert after.current_phase.weights == pytest.approx((20.0, 80.0))
    assert after.current_phase.hash_seed == view.current_phase.hash_seed  # sticky
    assert audit_actions(db, "ramp")[-1] == ("set_weights", "dashboard:alice")
    with db.sessions() as s:
        assert service.audit_log(s, "ramp")[-1]["after"]["mode"] == "sticky"
    assert any(
        t.startswith("New split control 20 / treatment 80 (sticky); phase 2")
        for t in texts(at, "success")
    )
    assert at.number_input(key="split_weight_control").value == 20.0
    assert not at.checkbox(key="split_confirm").value  # each change needs a new confirmation


def test_re_randomizing_previews_its_larger_movement_and_draws_a_new_seed(
    app_env: str, db: Database
) -> None:
    view = make_experiment(db, "reshuffle")
    at = set_split(log_in(open_app("experiment", "reshuffle")), 20, 80, "rerandomize")
    assert any(
        t.startswith("50.0% of units would change variant: 50/50 → 20/80.")
        for t in texts(at, "info")
    )
    at.checkbox(key="split_confirm").check().run()
    at.button(key="split_apply").click().run()
    after = get(db, "reshuffle")
    assert after.current_phase.weights == pytest.approx((20.0, 80.0))
    assert after.current_phase.hash_seed != view.current_phase.hash_seed


def test_a_split_that_does_not_sum_to_100_cannot_be_applied(app_env: str, db: Database) -> None:
    before = make_experiment(db, "bad-split")
    at = set_split(log_in(open_app("experiment", "bad-split")), 60, 30)
    assert (
        "Invalid split: weights sum to 90%, they must sum to 100% (e.g. 50,50 or 80,20)"
        in texts(at, "error")
    )
    assert at.button(key="split_apply").disabled and at.checkbox(key="split_confirm").disabled
    after = get(db, "bad-split")
    assert after.version == before.version and len(after.phases) == 1


def test_a_change_made_meanwhile_by_someone_else_is_not_overwritten(
    app_env: str, db: Database
) -> None:
    make_experiment(db, "race")
    at = set_split(log_in(open_app("experiment", "race")), 20, 80)
    at.checkbox(key="split_confirm").check().run()
    with db.sessions() as s:  # another operator changes the split after our page loaded
        service.set_weights(s, "race", [70, 30], actor="bob")
    at.button(key="split_apply").click().run()
    assert any(
        t.startswith("Nothing was changed: experiment 'race' changed since you read it")
        for t in texts(at, "error")
    )
    after = get(db, "race")
    assert after.current_phase.weights == pytest.approx((70.0, 30.0))
    assert [a for a, _ in audit_actions(db, "race")] == ["create", "start", "set_weights"]


# ----------------------------------------------------------------------------- promote


def test_promote_preselects_the_recommended_winner_and_concludes(
    app_env: str, db: Database
) -> None:
    view = make_experiment(db, "winner")
    log_requests(db, view, traffic(400, 400, 160, 8))  # error rate 20% vs 1%
    at = log_in(open_app("experiment", "winner"))
    with db.sessions() as s:
        decision = build_report(s, "winner").decision
    assert (decision.action, decision.variant) == ("ship", "treatment")
    assert at.selectbox(key="promote_variant").value == "treatment"
    assert at.button(key="promote_apply").disabled
    at.checkbox(key="promote_confirm").check().run()
    at.button(key="promote_apply").click().run()
    after = get(db, "winner")
    assert (after.status, after.winner) == ("concluded", "treatment")
    assert after.current_phase.weights == pytest.approx((0.0, 100.0))
    with db.sessions() as s:
        routing = experiments.routing_config(s, "winner")
    assert routing.variants[routing.winner_index].key == "treatment"
    assert audit_actions(db, "winner")[-1] == ("promote", "dashboard:alice")
    assert "Promoted **treatment**: it gets 100% of traffic; the experiment is concluded." in (
        texts(at, "success")
    )
    assert "This experiment is concluded, winner **treatment**: it can no longer be changed." in (
        texts(at, "info")
    )
    assert "promote_apply" not in keys_of(at)


def test_without_a_recommendation_nothing_is_preselected(app_env: str, db: Database) -> None:
    make_experiment(db, "undecided")
    at = log_in(open_app("experiment", "undecided"))
    assert at.selectbox(key="promote_variant").value is None
    at.checkbox(key="promote_confirm").check().run()
    assert at.button(key="promote_apply").disabled
    at.selectbox(key="promote_variant").set_value("control").run()
    at.button(key="promote_apply").click().run()
    assert get(db, "undecided").winner == "control"


def test_roll_back_sends_everything_to_the_control(app_env: str, db: Database) -> None:
    make_experiment(db, "rollback")
    at = log_in(open_app("experiment", "rollback"))
    assert at.button(key="end_rollback").disabled
    at.checkbox(key="end_confirm").check().run()
    at.button(key="end_rollback").click().run()
    after = get(db, "rollback")
    assert (after.status, after.winner) == ("concluded", "control")
    assert after.current_phase.weights == pytest.approx((100.0, 0.0))


def test_stop_ends_the_experiment(app_env: str, db: Database) -> None:
    make_experiment(db, "halt")
    at = log_in(open_app("experiment", "halt"))
    at.checkbox(key="end_confirm").check().run()
    at.button(key="end_stop").click().run()
    assert get(db, "halt").status == "stopped"
    assert audit_actions(db, "halt")[-1] == ("stop", "dashboard:alice")


def test_a_draft_can_be_started(app_env: str, db: Database) -> None:
    make_experiment(db, "later", start=False)
    at = log_in(open_app("experiment", "later"))
    at.button(key="start_apply").click().run()
    assert get(db, "later").status == "running"
    assert "start_apply" not in keys_of(at)


# ----------------------------------------------------------------------------- audit


def test_the_audit_log_lists_every_change_newest_first(app_env: str, db: Database) -> None:
    make_experiment(db, "audited")
    with db.sessions() as s:
        service.set_weights(s, "audited", [20, 80], actor="bob", mode="rerandomize")
        service.promote(s, "audited", "treatment", actor="carol")
    at = open_app("audit", "audited")
    df = frame(at, *AUDIT_COLUMNS)
    assert list(df["action"]) == ["promote", "set_weights", "start", "create"]
    assert list(df["actor"]) == ["carol", "bob", "test", "test"]
    assert df.iloc[1]["before"] == "running, weights 50/50, phase 1"
    assert df.iloc[1]["after"] == "running, weights 20/80, phase 2, rerandomize"
    assert df.iloc[0]["after"] == "concluded, weights 0/100, phase 3, winner treatment"
    assert df.iloc[3]["after"] == "draft, weights 50/50, phase 1"  # spec percents, not 5000
    assert "4 entries for **audited**, newest first." in texts(at, "caption")


# ----------------------------------------------------------------------------- settings


def test_analysis_settings_switch_test_phase_and_chart_metric(app_env: str, db: Database) -> None:
    view = make_experiment(db, "tuned")
    log_requests(db, view, traffic(50, 50, 10, 2))
    at = open_app("experiment", "tuned")
    at.radio(key="an_method").set_value("fixed").run()
    with db.sessions() as s:
        fixed = build_report(s, "tuned", method="fixed").metric("error_rate").comparisons[0]
    row = frame(at, *FIXED_COLUMNS).set_index("metric").loc["error_rate"]
    assert row["p"] == wording.p_value(fixed.p_value)
    assert row["difference [CI]"] == (
        f"{fixed.difference:+.4f} [{fixed.ci[0]:+.4f}, {fixed.ci[1]:+.4f}]"
    )
    assert any("fixed-horizon Welch t-test" in t for t in texts(at, "caption"))
    at.selectbox(key="an_metric").set_value("latency_mean").run()
    with db.sessions() as s:
        mean = build_report(s, "tuned").metric("latency_mean").comparisons[0]
    last = chart_data(at, "lift of latency_mean").iloc[-1]
    assert (last["lift"], last["low"], last["high"]) == pytest.approx((mean.lift, *mean.lift_ci))
    with db.sessions() as s:  # a new phase without traffic; phase 1 stays readable
        service.set_weights(s, "tuned", [40, 60], actor="bob")
    at.run()
    assert list(frame(at, *VARIANT_COLUMNS)["units"]) == [0, 0]
    assert "No traffic in this phase yet." in texts(at, "info")
    # The new phase is announced with the previous phase's result beside it.
    [banner] = [t for t in texts(at, "info") if t.startswith("**Phase 2 started")]
    assert "The previous phase 1: 100 units, recommendation ship treatment" in banner
    at.button(key="an_all_phases").click().run()
    assert at.selectbox(key="an_phase").value == "all"
    assert list(frame(at, *VARIANT_COLUMNS)["units"]) == [50, 50]
    assert any(t.startswith("All phases 1–2, pooled as strata") for t in texts(at, "caption"))
    at.selectbox(key="an_phase").set_value(1).run()
    assert list(frame(at, *VARIANT_COLUMNS)["units"]) == [50, 50]


# ----------------------------------------------------------------------------- data layer


def timed_requests(
    db: Database, view: service.ExperimentView, n: int, spacing_s: float, start: datetime
) -> list[str]:
    """Unit ``<arm>-<u>`` sends one request at ``start + u * spacing_s`` (arms alternate
    success patterns: control fails every 5th, treatment every 10th). Returns request ids."""
    ids = {v.key: v.id for v in view.variants}
    requests, out = [], []
    for key in ("control", "treatment"):
        every = 5 if key == "control" else 10
        for u in range(n):
            rid = f"{key}-{u}-r"
            out.append(rid)
            ok = u % every != 0
            requests.append(
                RequestRecord(
                    request_id=rid,
                    experiment_id=view.id,
                    phase_id=view.current_phase.id,
                    unit_id=f"{key}-{u}",
                    assigned_variant_id=ids[key],
                    served_variant_id=ids[key] if ok else None,
                    model_version=key,
                    latency_ms=(100.0 if key == "control" else 80.0) + u % 7,
                    status="ok" if ok else "error",
                    error=None if ok else "failed",
                    created_at=start + timedelta(seconds=u * spacing_s),
                )
            )
    logstore.write_batch(db.engine, requests, [])
    return out


def feedback(
    db: Database,
    view: service.ExperimentView,
    rows: list[tuple[str, str, str, float]],
    at: datetime,
) -> None:
    """Outcomes ``(request id, unit, metric, value)``."""
    logstore.write_batch(
        db.engine,
        [],
        [
            OutcomeRecord(
                outcome_key=f"o-{next(_ids)}",
                experiment_id=view.id,
                phase_id=view.current_phase.id,
                request_id=rid,
                unit_id=unit,
                metric=metric,
                value=value,
                created_at=at,
            )
            for rid, unit, metric, value in rows
        ],
    )


@pytest.fixture
def timed(db: Database) -> tuple[service.ExperimentView, datetime]:
    """A running experiment with 60 units per arm, one request a second from its start,
    thumbs-up (0/1) on every request and ratings (several per unit) on some."""
    view = make_experiment(db, "timed")
    start = view.current_phase.started_at
    timed_requests(db, view, 60, 1.0, start)
    thumbs = [
        (f"{k}-{u}-r", f"{k}-{u}", "thumbs_up", float(u % (3 if k == "control" else 2) == 0))
        for k in ("control", "treatment")
        for u in range(60)
    ]
    ratings = [
        (f"{k}-{u}-r", f"{k}-{u}", "rating", float(u % 5 + (1 if k == "treatment" else 0)))
        for k in ("control", "treatment")
        for u in range(0, 60, 2)
        for _ in range(2)
    ]
    feedback(db, view, thumbs + ratings, start + timedelta(seconds=30))
    return view, start


@pytest.mark.parametrize(
    "metric", ["error_rate", "latency_mean", "latency_p50", "thumbs_up", "rating"]
)
def test_the_cumulative_lift_ends_at_the_report_and_grows_with_the_units(
    db: Database, timed: tuple[service.ExperimentView, datetime], metric: str
) -> None:
    view, start = timed
    with db.sessions() as s:
        series = dashboard_data.cumulative_lift(
            s, view, view.current_phase, metric, buckets=30, now=start + timedelta(seconds=60)
        )
        comp = build_report(s, "timed").metric(metric).comparisons[0]
    assert [p.at for p in series.points] == [
        start + timedelta(seconds=2 * (b + 1)) for b in range(30)
    ]
    last = series.points[-1]
    assert (last.lift, last.ci_low, last.ci_high) == pytest.approx((comp.lift, *comp.lift_ci))
    if metric in ("error_rate", "latency_mean"):  # units: one request a second per arm
        assert [p.units_control for p in series.points] == [2 * (b + 1) for b in range(30)]
    if metric in ("thumbs_up", "rating"):  # all feedback arrives at +30 s
        assert {p.units_treatment for p in series.points[:15]} == {0}
        assert all(p.lift is None for p in series.points[:15])
        assert len({p.lift for p in series.points[15:]}) == 1
    else:
        widths = [p.ci_high - p.ci_low for p in series.points if p.lift is not None]
        assert widths[-1] < widths[0]  # the confidence sequence narrows as data arrive


def test_a_quantile_without_enough_data_has_no_lift_in_the_report_nor_on_the_chart(
    db: Database, timed: tuple[service.ExperimentView, datetime]
) -> None:
    view, _ = timed
    with db.sessions() as s:  # 48 and 54 requests cannot bound a p99
        series = dashboard_data.cumulative_lift(s, view, view.current_phase, "latency_p99")
        comp = build_report(s, "timed").metric("latency_p99").comparisons[0]
    assert comp.lift_ci is None and comp.error_message
    assert all(p.lift is None and p.note for p in series.points)
    assert series.points[-1].note == comp.note == "too few requests for this percentile yet"


def test_without_data_the_cumulative_lift_has_no_points_to_draw(db: Database) -> None:
    view = make_experiment(db, "empty")
    with db.sessions() as s:
        series = dashboard_data.cumulative_lift(s, view, view.current_phase, "error_rate")
    assert len(series.points) == 30
    assert all(p.lift is None and p.note for p in series.points)


def test_activity_watermark_last_change_and_latency_histogram(db: Database) -> None:
    view = make_experiment(db, "counted")
    with db.sessions() as s:
        assert dashboard_data.watermark(s, view.id) == (0, 0)
    start = view.current_phase.started_at
    ids = timed_requests(db, view, 20, 0.5, start)
    feedback(db, view, [(ids[0], "control-0", "thumbs_up", 1.0)], start)
    with db.sessions() as s:
        act = dashboard_data.activity(s)[view.id]
        mark = dashboard_data.watermark(s, view.id)
        change = dashboard_data.last_changes(s)[view.id]
        bins = dashboard_data.latency_distribution(s, view, view.current_phase)
    assert (act.units, act.requests, act.feedback) == (40, 40, 1)
    assert mark == act.watermark == (40, 1)
    assert (change.action, change.actor) == ("start", "test")
    for key, ok, lo, hi in (("control", 16, 100.0, 106.0), ("treatment", 18, 80.0, 86.0)):
        rows = [b for b in bins if b.variant == key]
        assert sum(b.requests for b in rows) == ok  # successful requests only
        assert sum(b.share for b in rows) == pytest.approx(1.0)
        assert all(b.high_ms / b.low_ms == pytest.approx(10 ** (1 / 20)) for b in rows)
        filled = [b for b in rows if b.requests]
        assert filled[0].low_ms <= lo and filled[-1].high_ms > hi
    assert [b.low_ms for b in bins if b.variant == "control"] == [
        b.low_ms for b in bins if b.variant == "treatment"
    ]  # one common range of bins


# ----------------------------------------------------------------------------- store


def test_the_store_reuses_current_results_and_refreshes_stale_ones_in_the_background() -> None:
    store = ResultStore(max_entries=2)
    calls: list[str] = []
    gate = threading.Event()

    def compute(tag: str, wait: bool = False):
        def run() -> str:
            if wait:
                gate.wait(5)
            calls.append(tag)
            return tag

        return run

    assert store.get("k", compute("a"), watermark=1, refresh_s=0).value == "a"
    assert store.get("k", compute("b"), watermark=1, refresh_s=0).value == "a"  # same data
    assert store.get("k", compute("c"), watermark=2, refresh_s=0).value == "c"  # synchronous
    not_due = store.get("k", compute("never"), watermark=3, refresh_s=60)
    assert (not_due.value, not_due.stale) == ("c", True)  # at most one refresh per 60 s
    time.sleep(0.01)
    stale = store.get("k", compute("d", wait=True), watermark=3, refresh_s=0.005)
    assert (stale.value, stale.stale) == ("c", True)  # served at once, recomputed behind
    gate.set()
    deadline = time.monotonic() + 5
    while store.get("k", compute("e"), watermark=3, refresh_s=60).value != "d":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert calls == ["a", "c", "d"]
    with pytest.raises(ZeroDivisionError):
        store.get("boom", lambda: 1 / 0, watermark=1, refresh_s=0)
    assert store.get("boom", lambda: "ok", watermark=1, refresh_s=0).value == "ok"  # retried
    store.get("x", compute("x"), watermark=1, refresh_s=0)  # evicts "k" (two entries kept)
    assert store.get("k", compute("f"), watermark=3, refresh_s=0).value == "f"


def test_an_imported_experiment_shows_its_report_without_request_charts(
    app_env: str, db: Database, tmp_path: Path
) -> None:
    from abplatform.service.imports import import_csv

    csv = tmp_path / "old.csv"
    lines = ["user,group,retained"]
    lines += [f"a{i},A,{'TRUE' if i % 3 else 'FALSE'}" for i in range(90)]
    lines += [f"b{i},B,{'TRUE' if i % 4 else 'FALSE'}" for i in range(90)]
    csv.write_text("\n".join(lines) + "\n")
    with db.sessions() as s:
        import_csv(
            s, csv, experiment="old", unit_col="user", variant_col="group", control="A",
            metrics=["retained"],
        )  # fmt: skip
    at = open_app("experiment", "old")
    with db.sessions() as s:
        comp = build_report(s, "old").metric("retained").comparisons[0]
    row = frame(at, *FIXED_COLUMNS).set_index("metric").loc["retained"]
    assert row["lift [CI]"].startswith(f"{comp.lift:+.1%} [") and row["role"] == "primary"
    assert row["p"] == wording.p_value(comp.p_value)
    assert any("fixed-horizon Welch t-test" in t for t in texts(at, "caption"))
    assert list(frame(at, *VARIANT_COLUMNS)["units"]) == [90, 90]
    assert "Imported results have no request log: no lift over time." in texts(at, "caption")
    assert len(at.get("vega_lite_chart")) == 1  # the forest plot only


# ----------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_each_issue_8_scenario_reads_as_the_operator_expects(
    app_env: str, db: Database, scenario
) -> None:
    name, expected = scenario(db)
    at = open_app("experiment", name)
    recommendation = [t for t in texts(at, "success") + texts(at, "info") + texts(at, "error")
                      if t.startswith("**Recommendation:")]  # fmt: skip
    assert len(recommendation) == 1
    assert recommendation[0].startswith(f"**Recommendation: {expected}.**")
    shown = " ".join(texts(at, "success") + texts(at, "info") + texts(at, "error"))
    assert "Sample ratio mismatch:" not in shown and "ZERO_NEGATIVE" not in shown
    if name == "resplit":
        assert "No sample ratio mismatch: observed vs expected units: a 302 vs 300.0" in shown
        assert "**Phase 2 started" in shown and "The previous phase 1: 500 units" in shown
        assert {m.label: m.value for m in at.metric}["Units in more than one variant"] == "0"
    if name == "zero-error-control":
        assert "treatment: guardrail regressed (error_rate)" in recommendation[0]
    if name == "fallback":
        assert "treatment: guardrail regressed (error_rate, fallback_rate)" in recommendation[0]
        variants = frame(at, *VARIANT_COLUMNS[:7], "fallback rate", *VARIANT_COLUMNS[7:])
        assert variants.loc[1, "fallback rate"] == variants.loc[1, "error rate"] != "0.00%"
