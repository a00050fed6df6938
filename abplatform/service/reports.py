"""The stats report: per-variant summaries, treatment-vs-control tests and a decision.

:func:`build_report` reads sufficient statistics from PostgreSQL
(:mod:`abplatform.store.queries`), feeds them to the pure engine (:mod:`abplatform.core.stats`)
and returns a typed :class:`Report`. The CLI renders it as a table or JSON; the dashboard
draws it. Defaults are the safe ones for a report that is watched continuously: the
always-valid sequential test (Waudby-Smith et al. 2021), Holm correction across
treatments × non-guardrail metrics, multi-exposure units excluded, current phase only.

Metrics:
    ``error_rate`` (failed / all requests, per unit; lower is better),
    ``latency_mean`` (ms per successful request, per unit; lower is better),
    ``latency_p50|p95|p99`` (ms, request-level quantiles from a log-spaced histogram with
    Woodruff intervals; lower is better), and every feedback metric (mean value per
    feedback, per unit; higher is better, 0/1 single values per unit are proportions).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from abplatform.core.stats import (
    FrequentistResult,
    LatencyHistogram,
    ProportionStatistic,
    RatioStatistic,
    Statistic,
    bayesian_test,
    correct_family,
    sequential_test,
    srm_test,
    welch_ttest,
)
from abplatform.service import experiments as service
from abplatform.store import queries as q
from abplatform.store.rollups import BINS

Method = Literal["sequential", "fixed"]
Correction = Literal["holm", "bh", "none"]
LATENCY_QUANTILES = {"latency_p50": 0.50, "latency_p95": 0.95, "latency_p99": 0.99}
BUILTIN_METRICS = ("error_rate", "latency_mean", *LATENCY_QUANTILES)
LOWER_IS_BETTER = frozenset(BUILTIN_METRICS)


@dataclass(frozen=True)
class VariantSummary:
    """Descriptive figures of one variant in the analysed phase.

    Latencies in ms over successful requests; rates are fractions; ``weight`` in percent.
    """

    key: str
    model_version: str
    is_control: bool
    weight: float
    units: int
    requests: int
    errors: int
    error_rate: float | None
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    feedback_count: int
    feedback_rate: float | None


@dataclass(frozen=True)
class Comparison:
    """One treatment against the control on one metric.

    ``difference`` is in metric units (ms, fraction of requests, feedback value),
    ``lift`` is relative (a fraction of the control's value). ``ci``/``lift_ci`` are the
    confidence intervals (sequences, for the sequential method) of each. ``p_value`` is
    raw, ``adjusted_p_value`` after the family correction (guardrails are not corrected).
    ``chance_to_win`` is the Bayesian P(treatment better than control) under a flat prior,
    in the metric's good direction.
    """

    metric: str
    variant: str
    comparator: str
    control_value: float | None
    treatment_value: float | None
    difference: float | None
    ci: tuple[float, float] | None
    lift: float | None
    lift_ci: tuple[float, float] | None
    p_value: float
    adjusted_p_value: float | None
    chance_to_win: float
    significant: bool
    better: bool | None
    error_message: str | None


@dataclass(frozen=True)
class MetricResult:
    """All comparisons for one metric; ``role`` is primary, guardrail or secondary."""

    metric: str
    role: Literal["primary", "guardrail", "secondary"]
    lower_is_better: bool
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class SrmCheck:
    """Sample-ratio-mismatch check of the phase's units against its weights (percent)."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    weights: tuple[float, ...]
    chi2: float
    p_value: float
    flagged: bool
    error_message: str | None


@dataclass(frozen=True)
class Decision:
    """ship / keep running / roll back, the variant concerned, and the rule applied."""

    action: Literal["ship", "keep running", "roll back"]
    variant: str | None
    rule: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """The full stats report of one phase of one experiment."""

    experiment: str
    status: str
    phase: int
    phase_started_at: datetime
    generated_at: datetime
    method: Method
    alpha: float
    correction: Correction
    primary_metric: str
    guardrails: tuple[str, ...]
    variants: tuple[VariantSummary, ...]
    metrics: tuple[MetricResult, ...]
    srm: SrmCheck
    multi_exposure_units: int
    multi_exposure_excluded: bool
    decision: Decision
    notes: tuple[str, ...] = field(default_factory=tuple)

    def metric(self, name: str) -> MetricResult:
        """The :class:`MetricResult` for ``name`` (KeyError if absent)."""
        for m in self.metrics:
            if m.metric == name:
                return m
        raise KeyError(name)

    def to_json(self) -> str:
        """The report as JSON (timestamps ISO 8601 UTC, NaN as null)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            if isinstance(x, datetime):
                return x.isoformat()
            return x

        return json.dumps(clean(asdict(self)), indent=2)


# ----------------------------------------------------------------------------- statistics


def _ratio(n: int, m: float, mss: float, d: float, dss: float, md: float) -> RatioStatistic:
    return RatioStatistic(
        n=n, m_sum=m, m_sum_squares=mss, d_sum=d, d_sum_squares=dss, m_d_sum_of_products=md
    )


def _with_correction(comp: Comparison, adjusted: FrequentistResult | None) -> Comparison:
    """``comp`` with the family-adjusted p-value and the significance it implies."""
    if adjusted is None:  # guardrails are tested alone, uncorrected
        return comp
    better = comp.better if adjusted.significant else None
    return dataclasses.replace(
        comp,
        adjusted_p_value=adjusted.adjusted_p_value,
        significant=adjusted.significant,
        better=better,
    )


def _value(stat: Statistic) -> float | None:
    """A statistic's value for display, or None when it has none (no units, unusable)."""
    if not stat.n or getattr(stat, "unusable_reason", None):
        return None
    return _finite(stat.mean)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def compare(
    metric: str,
    variant: str,
    control_key: str,
    control: Statistic,
    treatment: Statistic,
    *,
    method: Method,
    alpha: float,
    lower_is_better: bool,
) -> tuple[Comparison, FrequentistResult]:
    """Test one treatment against control on one metric (absolute and relative).

    Returns the :class:`Comparison` and the raw absolute-difference result (used for the
    multiple-testing family). Never raises on degenerate data.
    """
    test = sequential_test if method == "sequential" else welch_ttest
    comparator = f"{variant} vs {control_key}"
    absolute = test(control, treatment, difference="absolute", alpha=alpha, comparator=comparator)
    relative = test(control, treatment, difference="relative", alpha=alpha, comparator=comparator)
    bayes = bayesian_test(control, treatment, difference="absolute", comparator=comparator)
    ctw = bayes.chance_to_win if bayes.informative else 0.5
    if lower_is_better and bayes.informative:
        ctw = 1.0 - ctw
    comp = _comparison(
        metric, variant, comparator, control, treatment, absolute, relative, ctw, lower_is_better
    )
    return comp, absolute


def _comparison(
    metric: str,
    variant: str,
    comparator: str,
    control: Statistic,
    treatment: Statistic,
    absolute: FrequentistResult,
    relative: FrequentistResult,
    ctw: float,
    lower_is_better: bool,
) -> Comparison:
    informative = absolute.informative
    better = None
    if informative and absolute.significant:
        better = (absolute.estimate < 0) if lower_is_better else (absolute.estimate > 0)
    return Comparison(
        metric=metric,
        variant=variant,
        comparator=comparator,
        control_value=_value(control),
        treatment_value=_value(treatment),
        difference=_finite(absolute.estimate) if informative else None,
        ci=absolute.ci,
        lift=_finite(relative.estimate) if relative.informative else None,
        lift_ci=relative.ci,
        p_value=absolute.p_value,
        adjusted_p_value=absolute.adjusted_p_value,
        chance_to_win=ctw,
        significant=absolute.significant,
        better=better,
        error_message=absolute.error_message,
    )


# ----------------------------------------------------------------------------- builder


def _metric_statistics(
    variants: tuple[service.VariantView, ...],
    unit_by_variant: dict[int, q.UnitAggregates],
    feedback: list[q.MetricAggregates],
    hists: dict[int, LatencyHistogram],
) -> tuple[dict[str, dict[int, Statistic]], list[str]]:
    """``{metric: {variant_id: statistic}}`` for every metric, and the feedback metrics.

    Request metrics are unit-level ratios (delta method); latency quantiles come from the
    histograms; a feedback metric is a proportion when every unit has one 0/1 value, else
    a ratio (sum of values / number of values per unit).
    """
    stats: dict[str, dict[int, Statistic]] = {m: {} for m in BUILTIN_METRICS}
    for v in variants:
        u = unit_by_variant.get(v.id) or q.UnitAggregates(v.id, 0, *([0.0] * 10))
        stats["error_rate"][v.id] = _ratio(
            u.units, u.errs, u.errs_ss, u.reqs, u.reqs_ss, u.errs_reqs
        )
        stats["latency_mean"][v.id] = _ratio(u.units, u.lat, u.lat_ss, u.ok, u.ok_ss, u.lat_ok)
        for metric, p in LATENCY_QUANTILES.items():
            stats[metric][v.id] = hists[v.id].quantile(p)
    feedback_metrics = sorted({f.metric for f in feedback})
    for metric in feedback_metrics:
        rows = {f.variant_id: f for f in feedback if f.metric == metric}
        binary = all(r.binary_single for r in rows.values())
        stats[metric] = {}
        for v in variants:
            r = rows.get(v.id)
            if binary:
                stats[metric][v.id] = ProportionStatistic(
                    n=r.units if r else 0, sum=r.total if r else 0.0
                )
            elif r is None:
                stats[metric][v.id] = _ratio(0, 0, 0, 0, 0, 0)
            else:
                stats[metric][v.id] = _ratio(
                    r.units, r.total, r.total_ss, r.cnt, r.cnt_ss, r.total_cnt
                )
    return stats, feedback_metrics


def _metric_order(
    exp: service.ExperimentView, stats: dict[str, dict[int, Statistic]], feedback: list[str]
) -> list[str]:
    """Metrics to report: primary first, then guardrails, then the rest. Imported
    experiments have no request metrics."""
    request_metrics = BUILTIN_METRICS if exp.source == "live" else ()
    names = [exp.primary_metric] if exp.primary_metric in stats else []
    names += [g for g in exp.guardrails if g in stats and g not in names]
    names = [m for m in names if m in feedback or m in request_metrics]
    return names + [m for m in (*feedback, *request_metrics) if m not in names]


def build_report(
    session: Session,
    name: str,
    *,
    phase: int | None = None,
    method: Method = "sequential",
    alpha: float = 0.05,
    correction: Correction = "holm",
    include_multi_exposure: bool = False,
) -> Report:
    """Build the stats report of experiment ``name`` (default: its current phase).

    Args:
        phase: phase number to analyse (1-based); default the newest phase with traffic
            before a promotion (a promotion's 100% phase has no comparison to make).
        method: ``"sequential"`` (always valid, safe to watch) or ``"fixed"`` (Welch t,
            valid once, at a horizon fixed in advance).
        alpha: significance level, a fraction.
        correction: ``"holm"`` (FWER), ``"bh"`` (FDR) or ``"none"``, across treatments ×
            non-guardrail metrics.
        include_multi_exposure: keep units assigned to more than one variant.

    Raises:
        service.NotFoundError: unknown experiment. service.InvalidInputError: bad phase,
            method, alpha or correction.
    """
    if method not in ("sequential", "fixed"):
        raise service.InvalidInputError(f"method is {method!r}; allowed: sequential, fixed")
    if correction not in ("holm", "bh", "none"):
        raise service.InvalidInputError(f"correction is {correction!r}; allowed: holm, bh, none")
    if not 0 < alpha < 1:
        raise service.InvalidInputError(f"alpha is {alpha}; it must be a fraction in (0, 1)")
    exp = service.get_experiment(session, name)
    ph = pick_phase(exp, phase)
    variants = exp.variants
    control = exp.control

    units, multi, feedback = q.phase_aggregates(
        session, exp.id, ph.id, include_multi=include_multi_exposure
    )
    unit_by_variant = {u.variant_id: u for u in units}
    buckets = q.latency_buckets(session, exp.id, ph.id)
    hists = {v.id: LatencyHistogram.from_buckets(buckets.get(v.id, {}), BINS) for v in variants}

    stats, feedback_metrics = _metric_statistics(variants, unit_by_variant, feedback, hists)
    metric_names = _metric_order(exp, stats, feedback_metrics)
    notes: list[str] = []
    if exp.primary_metric not in stats:
        notes.append(f"primary metric '{exp.primary_metric}' has no data in this phase yet")

    results: dict[tuple[str, str], tuple[Comparison, FrequentistResult]] = {}
    for metric in metric_names:
        lower = metric in LOWER_IS_BETTER
        for v in variants:
            if v.is_control:
                continue
            results[(metric, v.key)] = compare(
                metric,
                v.key,
                control.key,
                stats[metric][control.id],
                stats[metric][v.id],
                method=method,
                alpha=alpha,
                lower_is_better=lower,
            )
    family = {k: r for k, (_, r) in results.items() if k[0] not in exp.guardrails}
    corrected = correct_family(family, None if correction == "none" else correction)
    comparisons = {
        key: _with_correction(comp, corrected.get(key)) for key, (comp, _) in results.items()
    }

    metrics = tuple(
        MetricResult(
            metric=m,
            role="primary"
            if m == exp.primary_metric
            else ("guardrail" if m in exp.guardrails else "secondary"),
            lower_is_better=m in LOWER_IS_BETTER,
            comparisons=tuple(comparisons[(m, v.key)] for v in variants if not v.is_control),
        )
        for m in metric_names
    )

    observed = [unit_by_variant[v.id].units if v.id in unit_by_variant else 0 for v in variants]
    weights = [w / 100.0 for w in ph.weights]
    srm_raw = srm_test(observed, weights)
    srm = SrmCheck(
        observed=tuple(observed),
        expected=tuple(srm_raw.expected),
        weights=tuple(ph.weights),
        chi2=srm_raw.chi2,
        p_value=srm_raw.p_value,
        flagged=srm_raw.flagged,
        error_message=srm_raw.error_message,
    )
    summaries = tuple(
        _summary(
            v, ph.weights[i], unit_by_variant.get(v.id), hists[v.id], feedback, exp.source == "live"
        )
        for i, v in enumerate(variants)
    )
    if multi:
        notes.append(
            f"{multi} unit(s) were assigned more than one variant; "
            + ("included" if include_multi_exposure else "excluded from the analysis")
        )
    return Report(
        experiment=exp.name,
        status=exp.status,
        phase=ph.number,
        phase_started_at=ph.started_at,
        generated_at=datetime.now(UTC),
        method=method,
        alpha=alpha,
        correction=correction,
        primary_metric=exp.primary_metric,
        guardrails=tuple(exp.guardrails),
        variants=summaries,
        metrics=metrics,
        srm=srm,
        multi_exposure_units=multi,
        multi_exposure_excluded=not include_multi_exposure,
        decision=decide(metrics, srm, exp.primary_metric, control.key, method),
        notes=tuple(notes),
    )


def pick_phase(exp: service.ExperimentView, number: int | None) -> service.PhaseView:
    """The phase a report analyses: ``number``, else the current one, except that a
    concluded experiment's analysis phase is the one before its promotion.

    Raises:
        service.InvalidInputError: no phase ``number`` (the message gives the range).
    """
    if number is not None:
        for p in exp.phases:
            if p.number == number:
                return p
        raise service.InvalidInputError(
            f"experiment '{exp.name}' has phases 1..{len(exp.phases)}; got phase {number}"
        )
    if exp.status == "concluded" and len(exp.phases) > 1:
        return exp.phases[-2]  # the last phase with a comparison, before the promotion
    return exp.phases[-1]


def _summary(
    v: service.VariantView,
    weight: float,
    u: q.UnitAggregates | None,
    hist: LatencyHistogram,
    feedback: list[q.MetricAggregates],
    live: bool = True,
) -> VariantSummary:
    reqs = int(u.reqs) if u else 0
    errs = int(u.errs) if u else 0
    fb = int(sum(f.cnt for f in feedback if f.variant_id == v.id))

    def pct(p: float) -> float | None:
        return hist.value_at(p)[0] if hist.n and live else None

    return VariantSummary(
        key=v.key,
        model_version=v.model_version,
        is_control=v.is_control,
        weight=weight,
        units=u.units if u else 0,
        requests=reqs,
        errors=errs,
        error_rate=errs / reqs if reqs and live else None,
        latency_mean_ms=(u.lat / u.ok) if u and u.ok and live else None,
        latency_p50_ms=pct(0.5),
        latency_p95_ms=pct(0.95),
        latency_p99_ms=pct(0.99),
        feedback_count=fb,
        feedback_rate=fb / reqs if reqs and live else None,
    )


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
