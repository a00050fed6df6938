"""``abplatform demo --scenario patterns`` on the real local stack (diffusers backends,
image tools, gateway, router, PostgreSQL), with a short burst of traffic: small images
go to model-v1, large ones into the experiment, the pipeline's three steps are reported,
and the cheaper variant is the one the cost says."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from abplatform.local.demo_patterns import run_patterns_demo
from abplatform.settings import get_settings


def test_the_patterns_demo_routes_by_size_runs_the_pipeline_and_prices_it(
    tmp_path: Path, pg_server_url: str, template_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import fresh_database

    monkeypatch.setenv("DATABASE_URL", fresh_database(pg_server_url, "demo_patterns"))
    get_settings.cache_clear()
    out = io.StringIO()
    try:
        result = run_patterns_demo(
            tmp_path, requests=40, units=20, concurrency=2, console=Console(file=out, width=200)
        )
    finally:
        get_settings.cache_clear()
    text = out.getvalue()
    rules = {rule for rule, _ in result["by_rule"]}
    assert rules == {"small", "large"} and result["requests"] == 40
    assert {s for r, s in result["by_rule"] if r == "small"} == {"abplatform/model-v1"}
    assert {s for r, s in result["by_rule"] if r == "large"} <= {"control", "treatment"}
    costs = result["costs"]
    assert 0 < costs["treatment"] < costs["control"]  # an A100 at 64×64 beats an H100 at 128
    for expected in ("Pipeline steps", "abplatform/remove-background", "Cost per request:",
                     "per 1k requests", "verdict:", "patterns demo complete"):  # fmt: skip
        assert expected in text
