"""A real public A/B test (Cookie Cats, 90,189 players), imported with the CLI and
reported, checked against an independent scipy computation on the raw CSV rows.

Data: ../shared/data/cookie_cats.csv (see ../shared/data/README.md); gate_30 is control.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.helpers import fresh_database, run_cli

CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "cookie_cats.csv"


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    if not CSV.exists():
        pytest.fail(f"{CSV} is missing: CI lays ../shared beside the clone")
    frame = pd.read_csv(CSV)
    for col in ("retention_1", "retention_7"):
        frame[col] = frame[col].astype(str).str.upper().eq("TRUE").astype(float)
    return frame


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, template_url: str) -> dict:
    url = fresh_database(pg_server_url, "cookie_cats")
    imported = run_cli(
        url, "import", str(CSV), "--experiment", "cookie-cats", "--unit", "userid",
        "--variant", "version", "--control", "gate_30",
        "--metric", "retention_1", "--metric", "retention_7",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert "imported 90,189 units" in imported.stdout and "no rows rejected" in imported.stdout
    out = run_cli(url, "report", "cookie-cats", "--json", "--fixed-horizon", "--correction", "none")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def welch_proportions(p_a: float, n_a: int, p_b: float, n_b: int, alpha: float = 0.05) -> dict:
    """Independent reference: Welch t on two proportions with variance p(1-p) (gbstats'
    convention), absolute and delta-method relative, via scipy.stats.t."""
    va, vb = p_a * (1 - p_a), p_b * (1 - p_b)
    se = math.sqrt(va / n_a + vb / n_b)
    dof = (va / n_a + vb / n_b) ** 2 / ((va / n_a) ** 2 / (n_a - 1) + (vb / n_b) ** 2 / (n_b - 1))
    q = stats.t.ppf(1 - alpha / 2, dof)
    diff = p_b - p_a
    lift = diff / p_a
    se_rel = math.sqrt(vb / (p_a**2 * n_b) + va * p_b**2 / (p_a**4 * n_a))
    return {
        "diff": diff,
        "ci": (diff - q * se, diff + q * se),
        "p": 2 * stats.t.sf(abs(diff / se), dof),
        "lift": lift,
        "lift_ci": (lift - q * se_rel, lift + q * se_rel),
    }


@pytest.mark.parametrize("metric", ["retention_1", "retention_7"])
def test_report_matches_scipy_on_the_raw_rows(raw: pd.DataFrame, report: dict, metric: str) -> None:
    a = raw.loc[raw.version == "gate_30", metric].to_numpy()
    b = raw.loc[raw.version == "gate_40", metric].to_numpy()
    ref = welch_proportions(a.mean(), a.size, b.mean(), b.size)
    [comp] = next(m for m in report["metrics"] if m["metric"] == metric)["comparisons"]
    assert comp["comparator"] == "gate_40 vs gate_30"
    assert comp["control_value"] == pytest.approx(a.mean(), abs=1e-12)
    assert comp["treatment_value"] == pytest.approx(b.mean(), abs=1e-12)
    assert comp["difference"] == pytest.approx(ref["diff"], abs=1e-10)
    assert comp["ci"] == pytest.approx(ref["ci"], abs=1e-8)
    assert comp["p_value"] == pytest.approx(ref["p"], abs=1e-8)
    assert comp["lift"] == pytest.approx(ref["lift"], abs=1e-10)
    assert comp["lift_ci"] == pytest.approx(ref["lift_ci"], abs=1e-8)
    # And scipy's own Welch test on the 0/1 rows (sample variance, n-1) agrees closely.
    assert comp["p_value"] == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-3)


def test_retention_7_is_significantly_worse_at_gate_40(report: dict) -> None:
    [comp] = next(m for m in report["metrics"] if m["metric"] == "retention_7")["comparisons"]
    assert comp["significant"] and comp["better"] is False and comp["p_value"] < 0.01


def test_srm_check_matches_scipy_chisquare(raw: pd.DataFrame, report: dict) -> None:
    counts = raw.version.value_counts()
    observed = [int(counts["gate_30"]), int(counts["gate_40"])]
    ref = stats.chisquare(observed, f_exp=[sum(observed) / 2] * 2)
    srm = report["srm"]
    assert srm["observed"] == observed == [44700, 45489]
    assert srm["chi2"] == pytest.approx(ref.statistic, rel=1e-12)
    assert srm["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert srm["flagged"] is False  # p ≈ 0.0086 is above the 0.001 threshold


def test_per_variant_units_match_the_file(raw: pd.DataFrame, report: dict) -> None:
    units = {v["key"]: v["units"] for v in report["variants"]}
    assert units == raw.version.value_counts().to_dict()
    assert np.isclose(sum(units.values()), 90_189)


# ---------------------------------------------------------------- issue 8, finding 7


@pytest.fixture(scope="module")
def default_report(report: dict, pg_server_url: str) -> tuple[dict, str]:
    """The report with no options at all (JSON and text), on the database imported above."""
    from tests.helpers import database_url

    url = database_url(pg_server_url, "cookie_cats")
    as_json = run_cli(url, "report", "cookie-cats", "--json")
    as_text = run_cli(url, "report", "cookie-cats")
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr + as_text.stderr
    return json.loads(as_json.stdout), as_text.stdout


@pytest.mark.parametrize("metric", ["retention_1", "retention_7"])
def test_an_imported_test_is_analysed_once_by_default_with_scipys_figures(
    raw: pd.DataFrame, default_report: tuple[dict, str], metric: str
) -> None:
    # An imported, finished test is analysed once: by default the fixed-horizon test,
    # not the always-valid sequential one a live experiment gets.
    report, _ = default_report
    assert report["method"] == "fixed" and report["engine"] == "frequentist"
    a = raw.loc[raw.version == "gate_30", metric].to_numpy()
    b = raw.loc[raw.version == "gate_40", metric].to_numpy()
    ref = welch_proportions(a.mean(), a.size, b.mean(), b.size)
    [comp] = next(m for m in report["metrics"] if m["metric"] == metric)["comparisons"]
    assert comp["difference"] == pytest.approx(ref["diff"], abs=1e-10)
    assert comp["ci"] == pytest.approx(ref["ci"], abs=1e-8)
    assert comp["p_value"] == pytest.approx(ref["p"], abs=1e-8)
    assert comp["lift_ci"] == pytest.approx(ref["lift_ci"], abs=1e-8)
    assert comp["chance_to_win"] is None  # one engine's figures


def test_the_report_header_names_the_method(default_report: tuple[dict, str]) -> None:
    _, text = default_report
    assert "Method: fixed-horizon Welch t-test (valid once, at a horizon fixed in" in text
    assert "always-valid" not in text
