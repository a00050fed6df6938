"""The ``abplatform`` command line, run as a user runs it (a subprocess) on a real database."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli

cli = run_cli

VARIANTS = [
    "-v",
    "control:v1:abplatform/model-v1:control",
    "-v",
    "treatment:v2:abplatform/model-v2",
]


def test_experiment_lifecycle_through_the_cli(db_url: str) -> None:
    made = cli(db_url, "experiment", "create", "img", *VARIANTS, "--weights", "80,20", "--start")
    assert made.returncode == 0, made.stderr
    moved = cli(db_url, "experiment", "set-weights", "img", "50,50", "--yes")
    assert moved.returncode == 0 and "30.0% of units would change variant" in moved.stdout
    shown = json.loads(cli(db_url, "experiment", "show", "img", "--json").stdout)
    assert shown["status"] == "running" and len(shown["phases"]) == 2
    assert [v["weight"] for v in shown["variants"]] == [50.0, 50.0]
    promoted = cli(db_url, "experiment", "promote", "img", "treatment")
    assert promoted.returncode == 0 and "winner=treatment" in promoted.stdout
    report = json.loads(cli(db_url, "report", "img", "--json").stdout)
    assert report["experiment"] == "img" and report["phase"] == 2
    audit = cli(db_url, "experiment", "audit", "img")
    for action in ("create", "start", "set_weights", "promote"):
        assert action in audit.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment", "create", "x", *VARIANTS, "--weights", "50,60"], "they must sum to 100%"),
        (["experiment", "create", "x", "-v", "bad"], "--variant must be KEY:MODEL_VERSION"),
        (["experiment", "show", "nope"], "unknown experiment 'nope'"),
        (["report", "nope"], "unknown experiment 'nope'"),
        (["report", "x", "--correction", "bonferroni"], "allowed: holm, bh, none"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message_and_changes_nothing(
    db_url: str, args: list[str], message: str
) -> None:
    before = cli(db_url, "experiment", "list", "--json").stdout
    out = cli(db_url, *args)
    assert out.returncode == 2
    assert message in " ".join(out.stderr.split())
    assert cli(db_url, "experiment", "list", "--json").stdout == before


def test_a_database_that_is_down_is_reported_with_exit_3() -> None:
    out = cli("postgresql://postgres@/postgres?host=/nonexistent-socket-dir", "experiment", "list")
    assert out.returncode == 3
    assert "cannot reach PostgreSQL" in out.stderr and "DATABASE_URL" in out.stderr


def test_db_downgrade_and_upgrade(db_url: str) -> None:
    assert cli(db_url, "db", "downgrade", "base").returncode == 0
    assert cli(db_url, "experiment", "list").returncode == 0  # migrates again on use
    up = cli(db_url, "db", "upgrade")
    assert up.returncode == 0 and "head" in up.stdout


def test_power_sizes_the_sequential_test_by_default_and_states_the_level() -> None:
    from scipy.stats import norm

    from abplatform.core.stats import Baseline, sample_size_per_variant

    args = ("power", "--proportion", "0.5", "--mde", "0.1", "--no-relative")
    fixed = cli("postgresql://unused/x", *args, "--method", "fixed")
    p1 = 0.5  # the baseline variance in both arms (GrowthBook's convention)
    z = norm.ppf(0.975) + norm.ppf(0.8)
    expected = z**2 * 2 * p1 * (1 - p1) / 0.1**2
    line = fixed.stdout.splitlines()[0]
    n = int(line.split(": ", 1)[1].split(" ", 1)[0].replace(",", ""))
    assert n == pytest.approx(expected, abs=1.0) and "with the fixed test" in line
    default = cli("postgresql://unused/x", *args)
    sequential = sample_size_per_variant(
        Baseline.for_proportion(0.5), 0.1, difference="absolute", method="sequential"
    )
    assert f"with the sequential test: {sequential:,} (the fixed test: {n:,})" in default.stdout
    assert "not split across treatments (GrowthBook's convention" in default.stdout


def test_import_counts_bad_rows_and_refuses_an_empty_file(db_url: str, tmp_path) -> None:
    csv = tmp_path / "results.csv"
    csv.write_text(
        "user,arm,converted\n"
        "1,a,TRUE\n2,b,false\n3,a,1\n4,b,yes\n"
        "5,,1\n"  # unknown variant
        "6,a,maybe\n"  # non-numeric
        "7,b,1e308\n"  # out of range
        "8,a,0\n8,b,1\n"  # one unit in two variants
    )
    out = cli(db_url, "import", str(csv), "--experiment", "hist", "--unit", "user",
              "--variant", "arm", "--control", "a", "--metric", "converted")  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "imported 4 units" in text
    for reason, rows in [("unknown variant", "5"), ("unit in two variants", "8, 9"),
                         ("non-numeric or out-of-range metric", "6, 7")]:  # fmt: skip
        assert reason in text and rows in text
    report = json.loads(cli(db_url, "report", "hist", "--json").stdout)
    assert {v["key"]: v["units"] for v in report["variants"]} == {"a": 2, "b": 2}
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = cli(db_url, "import", str(empty), "--experiment", "e2", "--unit", "u",
              "--variant", "v", "--control", "a", "--metric", "m")  # fmt: skip
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_up_refuses_a_port_that_is_in_use() -> None:
    import socket

    from abplatform.local.stack import PortInUseError, check_port_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} for the router is in use"):
            check_port_free(port, "router", "--router-port")


def test_operator_errors_say_what_is_allowed_and_never_preview_a_refused_change(
    db_url: str,
) -> None:
    # Issue 8, finding 8 (CLI): a negative weight read as an unknown option, a refused
    # change printed its preview first, a bad name echoed a regex, audit cut its JSON.
    assert cli(db_url, "experiment", "create", "img", *VARIANTS, "--start").returncode == 0
    negative = cli(db_url, "experiment", "set-weights", "img", "-1,101", "--yes")
    assert negative.returncode == 2 and "No such option" not in negative.stderr
    assert "weight #1 is -1.0; each weight must be a number ≥ 0" in negative.stderr
    same = cli(db_url, "experiment", "set-weights", "img", "50,50", "--yes")
    assert same.returncode == 2 and "nothing to change" in " ".join(same.stderr.split())
    assert "would change variant" not in same.stdout
    bad = cli(db_url, "experiment", "create", "Bad Name", *VARIANTS)
    text = " ".join(bad.stderr.split())
    assert bad.returncode == 2 and "experiment name 'Bad Name' is invalid: use 1-100" in text
    assert "^[" not in text and "pattern" not in text
    assert cli(db_url, "experiment", "promote", "img", "treatment").returncode == 0
    concluded = cli(db_url, "experiment", "set-weights", "img", "20,80", "--yes")
    assert concluded.returncode == 2 and "it is concluded" in concluded.stderr
    assert concluded.stdout == ""  # no preview of a change that is refused
    audit = cli(db_url, "experiment", "audit", "img")
    flat = " ".join(audit.stdout.split())
    assert '"backend_app_id": "abplatform/model-v2"' in flat  # nothing cut mid-value
    assert 'status: "running" → "concluded"' in flat and "weights: [0.5, 0.5] → [0.0, 1.0]" in flat
    entries = json.loads(cli(db_url, "experiment", "audit", "img", "--json").stdout)
    assert [e["action"] for e in entries] == ["create", "start", "promote"]


def test_a_rollout_through_the_cli(db_url: str) -> None:
    assert cli(db_url, "experiment", "create", "ramp", *VARIANTS).returncode == 0
    made = cli(db_url, "rollout", "create", "ramp", "--steps", "5,25,50", "--min-duration",
               "2m", "--min-units", "50", "--margin", "latency_p95=15%")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "rollout ramping  step 1/3 at 5%" in made.stdout
    assert "latency_p95 may rise at most 15%" in made.stdout
    assert "each step ≥ 120 s and ≥ 50 treatment units" in made.stdout
    shown = json.loads(cli(db_url, "rollout", "show", "ramp", "--json").stdout)
    assert shown["plan"]["steps"] == [5.0, 25.0, 50.0] and shown["status"] == "ramping"
    paused = cli(db_url, "rollout", "pause", "ramp", "--reason", "incident 42")
    assert paused.returncode == 0 and "paused by cli: incident 42" in paused.stdout
    again = cli(db_url, "rollout", "pause", "ramp")
    assert again.returncode == 2 and "it is paused" in again.stderr
    assert cli(db_url, "rollout", "resume", "ramp").returncode == 0
    back = cli(db_url, "rollout", "override", "ramp", "roll_back", "--reason", "pager")
    assert back.returncode == 0 and "rollout rolled_back" in back.stdout
    exp = json.loads(cli(db_url, "experiment", "show", "ramp", "--json").stdout)
    assert (exp["status"], exp["winner"]) == ("concluded", "control")
    audit = cli(db_url, "experiment", "audit", "ramp").stdout
    for action in ("rollout_create", "rollout_pause", "rollout_resume", "rollout_roll_back"):
        assert action in audit


def test_bad_rollout_input_exits_2_and_changes_nothing(db_url: str) -> None:
    assert cli(db_url, "experiment", "create", "ramp", *VARIANTS).returncode == 0
    for args, message in [
        (["rollout", "create", "ramp", "--steps", "50,5"], "increasing treatment shares"),
        (["rollout", "create", "ramp", "--margin", "latency_p95=2pt"], "points fit rates"),
        (["rollout", "create", "ramp", "--min-duration", "soon"], "duration must look like"),
        (["rollout", "show", "ramp"], "has no rollout; create one with"),
        (["rollout", "override", "ramp", "jump"], "allowed: advance, roll_back, promote"),
    ]:
        result = cli(db_url, *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    shown = json.loads(cli(db_url, "experiment", "show", "ramp", "--json").stdout)
    assert shown["status"] == "draft" and len(shown["phases"]) == 1
