"""The decision rule: ship, keep running or roll back, from the analysed metrics."""

from __future__ import annotations

from abplatform.core.report import Comparison, Decision, Method, MetricResult, SrmCheck


def decide(
    metrics: tuple[MetricResult, ...],
    srm: SrmCheck,
    primary: str,
    control_key: str,
    method: Method,
) -> Decision:
    """Apply the decision rule.

    Ship treatment T when the primary metric is significantly better for T (under the
    report's test and correction), no guardrail is significantly worse for T, and there is
    no SRM. Roll back when every treatment is significantly worse on the primary metric or
    regresses a guardrail. Otherwise keep running.
    """
    rule = (
        f"ship if '{primary}' is significantly better ({method} test), no guardrail "
        "significantly worse, and no SRM; roll back if every treatment is significantly "
        "worse on it or regresses a guardrail; else keep running"
    )
    if srm.flagged:
        return Decision(
            "keep running",
            None,
            rule,
            (f"sample ratio mismatch (p={srm.p_value:.2g}): fix assignment before deciding",),
        )
    prim = next((m for m in metrics if m.metric == primary), None)
    if prim is None:
        return Decision("keep running", None, rule, (f"no data for primary metric '{primary}'",))
    guards = [m for m in metrics if m.role == "guardrail"]
    reasons: list[str] = []
    winners: list[Comparison] = []
    losers = 0
    for comp in prim.comparisons:
        regressed = [
            g.metric
            for g in guards
            for c in g.comparisons
            if c.variant == comp.variant and c.better is False
        ]
        if regressed:
            losers += 1
            reasons.append(f"{comp.variant}: guardrail regressed ({', '.join(regressed)})")
        elif comp.better is True:
            winners.append(comp)
            reasons.append(
                f"{comp.variant}: {primary} significantly better, no guardrail regressed"
            )
        elif comp.better is False:
            losers += 1
            reasons.append(f"{comp.variant}: {primary} significantly worse")
        else:
            reasons.append(f"{comp.variant}: {primary} not significant yet")
    if winners:
        sign = -1.0 if prim.lower_is_better else 1.0
        best = max(winners, key=lambda c: sign * (c.difference or 0.0))
        return Decision("ship", best.variant, rule, tuple(reasons))
    if prim.comparisons and losers == len(prim.comparisons):
        return Decision("roll back", control_key, rule, tuple(reasons))
    return Decision("keep running", None, rule, tuple(reasons))


__all__ = ["decide"]
