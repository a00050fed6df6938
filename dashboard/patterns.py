"""Tables of the routing patterns, as pandas DataFrames: traffic per route rule, pipeline
steps, shadow traffic against the live answers, and the price table.

Words and number formats from :mod:`abplatform.core.wording`, shared with the CLI: costs
per 1,000 requests, latencies in ms, "–" for a figure that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from abplatform.core import wording as w
from abplatform.core.report import CallSummary


def _calls(c: CallSummary) -> dict[str, Any]:
    errors = f"{c.errors:,}" + (f" (+{c.skipped} skipped)" if c.skipped else "")
    return {
        "calls": c.calls, "errors": errors, "error rate": w.pct(c.error_rate),
        "latency mean ms": w.num(c.latency_mean_ms), "p50 ms": w.num(c.latency_p50_ms),
        "p95 ms": w.num(c.latency_p95_ms), "billed s": w.num(c.billed_s_per_call, "{:.3f}"),
        "cost $/1k": w.usd_k(c.cost_per_call),
    }  # fmt: skip


def rules_table(rules: Sequence[CallSummary]) -> pd.DataFrame:
    """Per route rule and what served it (an experiment or an app): requests, errors,
    latency, billed seconds and cost per request."""
    return pd.DataFrame([
        {"route": c.route or w.DASH, "rule": c.rule or w.DASH,
         "served by": f"experiment {c.experiment}" if c.experiment else (c.app or "experiment"),
         **_calls(c)}
        for c in rules
    ])  # fmt: skip


def steps_table(steps: Sequence[CallSummary]) -> pd.DataFrame:
    """Per pipeline step of each variant: where errors happen, latency, billed seconds and
    cost per call (the steps after a failed one are skipped)."""
    return pd.DataFrame([
        {"variant": c.variant or w.DASH, "step": c.step + 1, "app": c.app, **_calls(c)}
        for c in steps
    ])  # fmt: skip


def shadows_table(shadows: Sequence[CallSummary]) -> pd.DataFrame:
    """Per mirroring variant: the shadow app against the live answers of the same
    requests (errors, mean latency, cost)."""
    return pd.DataFrame([
        {"variant": c.variant or w.DASH, "shadow app": c.app, "mirrored": c.calls,
         "error rate shadow": w.pct(c.error_rate), "error rate live": w.pct(c.live_error_rate),
         "latency mean shadow ms": w.num(c.latency_mean_ms),
         "latency mean live ms": w.num(c.live_latency_mean_ms),
         "shadow p95 ms": w.num(c.latency_p95_ms),
         "cost $/1k shadow": w.usd_k(c.cost_per_call),
         "cost $/1k live": w.usd_k(c.live_cost_per_call)}
        for c in shadows
    ])  # fmt: skip


def route_rules(rules: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """A route's rules in order: name, condition ("else": every request) and target."""
    from abplatform.core.routes import RuleSpec

    return pd.DataFrame([
        {"#": i, "rule": r["name"], "when": r.get("when") or "else",
         "target": RuleSpec(**r).target_text}
        for i, r in enumerate(rules, 1)
    ])  # fmt: skip


def prices_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Machine type and price of each backend app, with where the price comes from."""
    return pd.DataFrame([
        {"app": r["app"], "machine": r["machine"] or w.DASH,
         "USD / hour": w.num(r["usd_per_hour"], "{:.2f}"),
         "USD / second": w.num(r["usd_per_second"], "{:.6f}"), "source": r["source"]}
        for r in rows
    ])  # fmt: skip


__all__ = ["prices_table", "route_rules", "rules_table", "shadows_table", "steps_table"]
