"""A safe rollout's evidence: each guardrail against its margin, the primary metric and
the health checks, over the rollout's phases (pure; see :mod:`abplatform.core.rollout`
for the rule and the statistics in one place).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from abplatform.core import metrics as catalogue
from abplatform.core.analysis import check_phases, pick_phase
from abplatform.core.errors import InvalidInputError
from abplatform.core.metrics import PhaseData
from abplatform.core.rollout import (
    Margin,
    RolloutPlan,
    check_experiment,
    format_regression,
    format_value,
    treatment_key,
)
from abplatform.core.stats import Statistic, messages, stratify
from abplatform.core.stats.onesided import OneSidedResult, one_sided_test
from abplatform.core.views import ExperimentView

GuardrailVerdict = Literal["regressed", "within margin", "not shown yet", "no data"]

MIN_UNITS_TO_TEST = 10
"""Units each arm needs before its guardrails and primary metric are tested: a handful
of units says nothing of a unit-level variance (one unit with one failed request out of
two would otherwise read as a certain 50% error rate)."""


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail against its margin, over the rollout's phases (pooled as strata).

    ``regression`` is how much worse the treatment is, in the margin's terms (a fraction
    of the control for a relative margin, metric units for an absolute one; positive is
    worse); ``lower`` is its always-valid lower bound at ``1 - alpha/k`` (the regression
    test) and ``upper`` its upper bound at ``1 - alpha`` (the non-inferiority test);
    ``p_regressed`` / ``p_within`` their anytime p-values.
    """

    metric: str
    margin: Margin
    control_value: float | None
    treatment_value: float | None
    regression: float | None
    lower: float | None
    upper: float | None
    p_regressed: float
    p_within: float
    verdict: GuardrailVerdict
    note: str | None = None


@dataclass(frozen=True)
class PrimaryCheck:
    """The primary metric: ``difference`` (treatment − control, metric units) and the
    anytime p-values of *better* (at ``alpha``) and *worse* (at ``alpha/k``; None when
    the metric is a guardrail with its own margin)."""

    metric: str
    control_value: float | None
    treatment_value: float | None
    difference: float | None
    p_better: float
    p_worse: float | None
    verdict: Literal["better", "worse", "not significant", "no data"]


@dataclass(frozen=True)
class HealthCheck:
    """A health check (``srm`` or ``multi_exposure``): passed, and its figure in words."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class RolloutEvidence:
    """Every figure a decision rests on. Units are (control, treatment): in the current
    step, and over the rollout's phases; ``alpha_regression`` is the per-test level of
    the regression family."""

    step_units: tuple[int, int]
    units: tuple[int, int]
    guardrails: tuple[GuardrailCheck, ...]
    primary: PrimaryCheck
    health: tuple[HealthCheck, ...]
    alpha_regression: float


def _arms(config: ExperimentView, datas: Sequence[PhaseData], name: str) -> tuple[Any, Any]:
    """(control, treatment) statistics of ``name`` pooled over ``datas`` as strata."""
    metric, control, treatment = catalogue.metric(name), config.control.key, treatment_key(config)
    pairs = []
    for d in datas:
        stats = metric.statistics(d, [control, treatment])
        pairs.append((stats[control], stats[treatment]))
    return stratify(pairs)


def _value(stat: Statistic) -> float | None:
    if not stat.n or getattr(stat, "unusable_reason", None):
        return None
    return stat.mean if math.isfinite(stat.mean) else None


def _exact_regression(
    margin: Margin, c: Statistic, t: Statistic, sign: float
) -> tuple[float | None, str | None]:
    """The regression when neither arm varies (every unit alike: no errors at all, or all
    failing), where there is nothing to test but the difference is exact."""
    if not (c.n and t.n and c.has_zero_variance and t.has_zero_variance):
        return None, None
    diff = sign * (t.mean - c.mean)
    if margin.kind == "relative":
        if c.mean == 0:
            return (0.0 if diff == 0 else None), None
        diff /= abs(c.mean)
    return diff, "no variation in either arm: the difference is exact"


def _too_few(units: tuple[int, int]) -> str | None:
    if min(units) >= MIN_UNITS_TO_TEST:
        return None
    return (
        f"{units[0]} control and {units[1]} treatment units so far; each arm needs "
        f"{MIN_UNITS_TO_TEST} before a test"
    )


def check_guardrail(
    config: ExperimentView, datas: Sequence[PhaseData], margin: Margin, plan: RolloutPlan, k: int,
    units: tuple[int, int],
) -> GuardrailCheck:  # fmt: skip
    """Test one guardrail against its margin (see :mod:`abplatform.core.rollout`);
    ``units`` (control, treatment) over ``datas``; ``k`` the size of the regression
    family."""
    c, t = _arms(config, datas, margin.metric)
    sign = 1.0 if catalogue.metric(margin.metric).lower_is_better else -1.0
    threshold = sign * margin.value
    worse_dir, within_dir = ("greater", "less") if sign > 0 else ("less", "greater")
    kw: dict[str, Any] = {"difference": margin.kind, "tuning": plan.tuning}
    harm = one_sided_test(
        c, t, threshold=threshold, direction=worse_dir, alpha=plan.alpha / k, **kw
    )
    safe = one_sided_test(c, t, threshold=threshold, direction=within_dir, alpha=plan.alpha, **kw)
    base = GuardrailCheck(
        margin.metric, margin, _value(c), _value(t), None, None, None, harm.p_value,
        safe.p_value, "no data",
    )  # fmt: skip
    if _too_few(units):
        return replace(base, note=_too_few(units))
    if not harm.informative:
        exact, note = _exact_regression(margin, c, t, sign)
        if exact is None:
            return replace(base, note=_why_not(harm))
        verdict: GuardrailVerdict = "regressed" if exact > margin.value else "within margin"
        return replace(base, regression=exact, lower=exact, upper=exact, verdict=verdict, note=note)
    assert harm.estimate is not None
    verdict = (
        "regressed" if harm.rejected else "within margin" if safe.rejected else "not shown yet"
    )
    return replace(
        base,
        regression=sign * harm.estimate,
        lower=None if harm.bound is None else sign * harm.bound,
        upper=None if safe.bound is None else sign * safe.bound,
        verdict=verdict,
    )


def _why_not(result: OneSidedResult) -> str | None:
    """Why a test could not run, in words."""
    return messages.sentence(result.error_message)


def check_primary(
    config: ExperimentView, datas: Sequence[PhaseData], plan: RolloutPlan, k: int,
    units: tuple[int, int],
) -> PrimaryCheck:  # fmt: skip
    """The primary metric: better at ``alpha``; worse (margin 0) at ``alpha / k`` unless
    it is a guardrail with a margin."""
    name = config.primary_metric
    c, t = _arms(config, datas, name)
    lower_is_better = catalogue.metric(name).lower_is_better
    good, bad = ("less", "greater") if lower_is_better else ("greater", "less")
    better = one_sided_test(c, t, direction=good, alpha=plan.alpha, tuning=plan.tuning)
    guarded = any(m.metric == name for m in plan.margins)
    worse = (
        None
        if guarded
        else one_sided_test(c, t, direction=bad, alpha=plan.alpha / k, tuning=plan.tuning)
    )
    verdict: Literal["better", "worse", "not significant", "no data"] = "not significant"
    if not better.informative or _too_few(units):
        verdict = "no data"
    elif better.rejected:
        verdict = "better"
    elif worse is not None and worse.rejected:
        verdict = "worse"
    return PrimaryCheck(
        name, _value(c), _value(t), better.estimate, better.p_value,
        worse.p_value if worse else None, verdict,
    )  # fmt: skip


def check_health(
    config: ExperimentView, datas: Sequence[PhaseData], plan: RolloutPlan
) -> tuple[HealthCheck, ...]:
    """SRM over the rollout's phases and the multi-exposure share."""
    phases = [pick_phase(config, d.phase) for d in datas]
    srm, _ = check_phases(config, phases, datas)
    srm_detail = (
        f"units {'/'.join(str(o) for o in srm.observed)} against weights "
        f"{'/'.join(f'{w:g}' for w in srm.weights)}%: χ² p={srm.p_value:.2g}"
    )
    multi = sum(d.multi_exposure_units for d in datas)
    units = sum(v.units for d in datas for v in d.variants.values())
    total = units + (0 if all(d.multi_exposure_included for d in datas) else multi)
    share = multi / total if total else 0.0
    return (
        HealthCheck("srm", not srm.flagged, srm_detail),
        HealthCheck(
            "multi_exposure",
            share <= plan.max_multi_exposure,
            f"{multi} of {total} units ({share:.1%}) assigned more than one variant within a "
            f"phase (at most {plan.max_multi_exposure:.1%})",
        ),
    )


def gather_evidence(
    config: ExperimentView, datas: Sequence[PhaseData], plan: RolloutPlan
) -> RolloutEvidence:
    """Every figure of the rollout over ``datas`` (its phases, the current step last).

    Raises:
        InvalidInputError: no data given, or the experiment cannot be rolled out.
    """
    check_experiment(config)
    if not datas:
        raise InvalidInputError("no phase data: a rollout's evidence needs its phases")
    control, treatment = config.control.key, treatment_key(config)
    k = len(plan.margins) + (
        0 if any(m.metric == config.primary_metric for m in plan.margins) else 1
    )
    last = datas[-1]
    units = (
        sum(d.variant(control).units for d in datas),
        sum(d.variant(treatment).units for d in datas),
    )
    return RolloutEvidence(
        step_units=(last.variant(control).units, last.variant(treatment).units),
        units=units,
        guardrails=tuple(check_guardrail(config, datas, m, plan, k, units) for m in plan.margins),
        primary=check_primary(config, datas, plan, k, units),
        health=check_health(config, datas, plan),
        alpha_regression=plan.alpha / k,
    )


def describe_guardrail(g: GuardrailCheck) -> str:
    """One guardrail's figures in words."""
    unit = catalogue.metric(g.metric).unit

    def reg(x: float | None) -> str:
        return format_regression(x, g.margin.kind, unit, signed=True)

    head = (
        f"{g.metric} treatment {format_value(g.treatment_value, unit)} vs control "
        f"{format_value(g.control_value, unit)}, {reg(g.regression)}"
    )
    if g.verdict == "no data":
        return f"{g.metric}: cannot be tested yet ({g.note or 'no data'})"
    if g.note:
        return f"{head} ({g.note}; margin {reg(g.margin.value)})"
    if g.verdict == "regressed":
        return (
            f"{head} (always-valid lower bound {reg(g.lower)} > margin {reg(g.margin.value)}, "
            f"p={g.p_regressed:.2g})"
        )
    if g.verdict == "within margin":
        return f"{head} (upper bound {reg(g.upper)} < margin {reg(g.margin.value)})"
    return f"{head} (upper bound {reg(g.upper)}, margin {reg(g.margin.value)}: not shown yet)"


def describe_primary(p: PrimaryCheck) -> str:
    """The primary metric's figures in words."""
    unit = catalogue.metric(p.metric).unit
    if p.verdict == "no data":
        return f"primary metric {p.metric} has no data yet"
    return (
        f"primary metric {p.metric} treatment {format_value(p.treatment_value, unit)} vs "
        f"control {format_value(p.control_value, unit)} (p better {p.p_better:.2g}"
        + (f", p worse {p.p_worse:.2g}" if p.p_worse is not None else "")
        + f"): {p.verdict}"
    )


__all__ = [
    "MIN_UNITS_TO_TEST",
    "GuardrailCheck",
    "GuardrailVerdict",
    "HealthCheck",
    "PrimaryCheck",
    "RolloutEvidence",
    "check_guardrail",
    "check_health",
    "check_primary",
    "describe_guardrail",
    "describe_primary",
    "gather_evidence",
]
