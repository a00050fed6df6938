"""The decision rule: ship, keep running or roll back, from the analysed metrics."""

from __future__ import annotations

from abplatform.core.report import Comparison, Decision, MetricResult, SrmCheck


def _treatments(metrics: tuple[MetricResult, ...]) -> list[str]:
    """Treatment keys in report order (every metric compares the same treatments)."""
    return list(dict.fromkeys(c.variant for m in metrics for c in m.comparisons))


def _regressions(metrics: tuple[MetricResult, ...], variant: str) -> list[str]:
    """Guardrails on which ``variant`` is significantly worse than the control."""
    return [
        g.metric
        for g in metrics
        if g.role == "guardrail"
        for c in g.comparisons
        if c.variant == variant and c.better is False
    ]


def decide(
    metrics: tuple[MetricResult, ...],
    srm: SrmCheck,
    primary: str,
    control_key: str,
    test: str,
) -> Decision:
    """Apply the decision rule.

    Ship treatment T when the primary metric is significantly better for T (under the
    report's ``test``, e.g. ``"sequential test"``, and correction), no guardrail is
    significantly worse for T, and there is no SRM. Roll back when every treatment is
    significantly worse on the primary metric or regresses a guardrail; a guardrail
    regression counts whatever the primary metric shows, also when it has no data yet.
    Otherwise keep running. An SRM stops every decision until the assignment is fixed.
    """
    rule = (
        f"ship if '{primary}' is significantly better ({test}), no guardrail "
        "significantly worse, and no SRM; roll back if every treatment is significantly "
        "worse on it or regresses a guardrail (whatever the primary metric shows); "
        "else keep running"
    )
    if srm.flagged:
        return Decision(
            "keep running",
            None,
            rule,
            (f"sample ratio mismatch (p={srm.p_value:.2g}): fix assignment before deciding",),
        )
    prim = next((m for m in metrics if m.metric == primary), None)
    by_variant = {c.variant: c for c in prim.comparisons} if prim else {}
    treatments = _treatments(metrics)
    if not treatments:
        return Decision("keep running", None, rule, (f"no data for primary metric '{primary}'",))
    reasons: list[str] = []
    winners: list[Comparison] = []
    losers = 0
    for variant in treatments:
        regressed = _regressions(metrics, variant)
        comp = by_variant.get(variant)
        if regressed:
            losers += 1
            reasons.append(f"{variant}: guardrail regressed ({', '.join(regressed)})")
        elif comp is None:
            reasons.append(f"{variant}: no data for primary metric '{primary}' yet")
        elif comp.better is True:
            winners.append(comp)
            reasons.append(f"{variant}: {primary} significantly better, no guardrail regressed")
        elif comp.better is False:
            losers += 1
            reasons.append(f"{variant}: {primary} significantly worse")
        else:
            undecided = "inconclusive" if test.startswith("Bayesian") else "not significant"
            reasons.append(f"{variant}: {primary} {undecided} yet")
    if winners:
        sign = -1.0 if prim and prim.lower_is_better else 1.0
        best = max(winners, key=lambda c: sign * (c.difference or 0.0))
        return Decision("ship", best.variant, rule, tuple(reasons))
    if losers == len(treatments):
        return Decision("roll back", control_key, rule, tuple(reasons))
    return Decision("keep running", None, rule, tuple(reasons))


__all__ = ["decide"]
