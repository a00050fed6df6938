"""The analysis: a pure function from an experiment's config and its sufficient statistics
to the stats report.

``analyze(config, data, settings)`` takes the experiment (:class:`ExperimentView`), one
phase's :class:`~abplatform.core.metrics.PhaseData` (or several phases' for the
all-phases analysis) and :class:`AnalysisSettings`, builds each metric's per-arm
statistic from the catalogue (:mod:`abplatform.core.metrics`), compares every treatment
with the control (:mod:`abplatform.core.comparison`), corrects for multiple testing,
checks the sample ratio and applies the decision rule (:mod:`abplatform.core.decision`).
No database: the store fetches the data (:func:`abplatform.store.queries.fetch_phase_data`).

Defaults are the safe ones for what is analysed: a live experiment, watched while it
runs, gets the always-valid sequential test (Waudby-Smith et al. 2021); an imported,
finished one is analysed once, so it gets the fixed-horizon Welch t-test (the figures
scipy gives on its rows). Holm correction across treatments × non-guardrail metrics;
multi-exposure units (assigned more than one variant *within* a phase) excluded.

**All phases.** A weight change starts a new phase with new weights. With several
phases, each is a stratum: its units are compared within it, against its own weights
(SRM per phase, :func:`~abplatform.core.stats.srm.combine_srm`), and the per-phase
differences are pooled by stratum size (:mod:`abplatform.core.stats.stratified`), never
by summing units across phases as if they shared one split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from abplatform.core import metrics as catalogue
from abplatform.core.breakdown import breakdowns, cost_figures
from abplatform.core.comparison import ENGINES, FLAT_PRIOR, compare
from abplatform.core.decision import decide
from abplatform.core.errors import InvalidInputError
from abplatform.core.metrics import PhaseData, VariantData
from abplatform.core.report import (
    Comparison,
    Correction,
    Engine,
    Method,
    MetricResult,
    Report,
    SrmCheck,
    VariantSummary,
)
from abplatform.core.stats import (
    FrequentistResult,
    SrmResult,
    combine_srm,
    correct_family,
    messages,
    srm_test,
    stratify,
)
from abplatform.core.views import ExperimentView, PhaseView

METHODS: tuple[str, ...] = ("sequential", "fixed")
CORRECTIONS: tuple[str, ...] = ("holm", "bh", "none")


def default_method(config: ExperimentView) -> Method:
    """``sequential`` for a live experiment (watched while it runs), ``fixed`` for an
    imported one (finished, analysed once)."""
    return "sequential" if config.is_live else "fixed"


@dataclass(frozen=True)
class AnalysisSettings:
    """How to analyse.

    ``engine``: ``"frequentist"`` (p-values and confidence intervals) or ``"bayesian"``
    (chance to win and credible intervals, flat prior); a report shows one engine's
    figures. ``method`` (frequentist): ``"sequential"`` (always valid, safe to watch),
    ``"fixed"`` (Welch t, valid once, at a horizon fixed in advance) or None for the
    experiment's default (:func:`default_method`). ``alpha``: significance level, a
    fraction. ``correction``: ``"holm"`` (FWER), ``"bh"`` (FDR) or ``"none"``, across
    treatments × non-guardrail metrics (frequentist only). ``phase``: phase number (None:
    see :func:`pick_phase`). ``all_phases``: pool every phase with a comparison as strata
    (``phase`` must then be None). ``include_multi_exposure``: keep units assigned to
    more than one variant within a phase.
    """

    method: Method | None = None
    alpha: float = 0.05
    correction: Correction = "holm"
    phase: int | None = None
    include_multi_exposure: bool = False
    engine: Engine = "frequentist"
    all_phases: bool = False

    def validate(self) -> AnalysisSettings:
        """Return ``self`` if valid.

        Raises:
            InvalidInputError: unknown engine, method or correction, alpha not in (0, 1),
                or both a phase and all phases.
        """
        if self.engine not in ENGINES:
            raise InvalidInputError(f"engine is {self.engine!r}; allowed: frequentist, bayesian")
        if self.method is not None and self.method not in METHODS:
            raise InvalidInputError(f"method is {self.method!r}; allowed: sequential, fixed")
        if self.correction not in CORRECTIONS:
            raise InvalidInputError(f"correction is {self.correction!r}; allowed: holm, bh, none")
        if not (isinstance(self.alpha, int | float) and 0 < self.alpha < 1):
            raise InvalidInputError(f"alpha is {self.alpha}; it must be a fraction in (0, 1)")
        if self.all_phases and self.phase is not None:
            raise InvalidInputError(f"give either a phase ({self.phase}) or all phases, not both")
        return self

    def resolved(self, config: ExperimentView) -> AnalysisSettings:
        """These settings with ``method`` filled in for ``config`` (validated)."""
        self.validate()
        return dataclasses.replace(self, method=self.method or default_method(config))


def pick_phase(exp: ExperimentView, number: int | None) -> PhaseView:
    """The phase a report analyses: ``number``, else the current one, except that a
    concluded experiment's analysis phase is the one before its promotion.

    Raises:
        InvalidInputError: no phase ``number`` (the message gives the range).
    """
    if number is not None:
        for p in exp.phases:
            if p.number == number:
                return p
        raise InvalidInputError(
            f"experiment '{exp.name}' has phases 1..{len(exp.phases)}; got phase {number}"
        )
    if exp.status == "concluded" and len(exp.phases) > 1:
        return exp.phases[-2]  # the last phase with a comparison, before the promotion
    return exp.phases[-1]


def comparable_phases(exp: ExperimentView) -> tuple[PhaseView, ...]:
    """The phases an all-phases analysis pools: those with at least two variants of
    positive weight, up to the analysis phase of :func:`pick_phase` (so not the phase
    after a promotion, where the winner has all the traffic)."""
    last = pick_phase(exp, None).number
    found = tuple(p for p in exp.phases if p.number <= last and sum(w > 0 for w in p.weights) >= 2)
    return found or (pick_phase(exp, None),)


# ----------------------------------------------------------------------------- metrics


def _with_correction(comp: Comparison, adjusted: FrequentistResult | None) -> Comparison:
    """``comp`` with the family-adjusted p-value and the significance it implies."""
    if adjusted is None or comp.p_value is None:  # guardrails are tested alone, uncorrected
        return comp
    better = comp.better if adjusted.significant else None
    return dataclasses.replace(
        comp,
        adjusted_p_value=adjusted.adjusted_p_value,
        significant=adjusted.significant,
        better=better,
    )


def _has_fallbacks(data: Sequence[PhaseData]) -> bool:
    return any(v.requests.total("fallbacks") > 0 for d in data for v in d.variants.values())


def _has_costs(data: Sequence[PhaseData]) -> bool:
    return any(
        v.requests.total("valid_requests") > v.requests.total("unpriced")
        and v.requests.total("cost_usd") > 0
        for d in data
        for v in d.variants.values()
    )


def metric_names(config: ExperimentView, data: PhaseData | Sequence[PhaseData]) -> list[str]:
    """Metrics to report: primary first, then guardrails, then the rest. Imported
    experiments have no request metrics; feedback metrics appear once they have data;
    the fallback rate appears for experiments that fall back to the control (or whose
    data show fallbacks); the cost metrics once requests have a cost (or when named)."""
    datas = [data] if isinstance(data, PhaseData) else list(data)
    feedback = sorted({m for d in datas for m in d.feedback_metrics})
    request_metrics: tuple[str, ...] = ()
    if config.is_live:
        wanted = {config.primary_metric, *config.guardrails}
        show_fallback = config.fallback_to_control or _has_fallbacks(datas)
        show_cost = _has_costs(datas)
        request_metrics = tuple(
            m
            for m in catalogue.BUILTIN_METRICS
            if (m not in catalogue.FALLBACK_METRICS or show_fallback or m in wanted)
            and (m not in catalogue.COST_METRICS or show_cost or m in wanted)
        )
    available = set(feedback) | set(request_metrics)
    names = [m for m in (config.primary_metric, *config.guardrails) if m in available]
    names = list(dict.fromkeys(names))
    return names + [m for m in (*feedback, *request_metrics) if m not in names]


def role(config: ExperimentView, name: str) -> str:
    """``primary``, ``guardrail`` or ``secondary`` for metric ``name`` in ``config``."""
    if name == config.primary_metric:
        return "primary"
    return "guardrail" if name in config.guardrails else "secondary"


def compare_metric(
    config: ExperimentView,
    data: PhaseData | Sequence[PhaseData],
    name: str,
    settings: AnalysisSettings,
) -> dict[str, tuple[Comparison, FrequentistResult | None]]:
    """Every treatment against the control on metric ``name``, by treatment key
    (uncorrected for multiple testing). Several phases are pooled as strata."""
    datas = [data] if isinstance(data, PhaseData) else list(data)
    entry = catalogue.metric(name)
    keys = [v.key for v in config.variants]
    per_phase = [entry.statistics(d, keys) for d in datas]
    control = config.control.key
    out = {}
    for v in config.variants:
        if v.is_control:
            continue
        c, t = stratify([(stats[control], stats[v.key]) for stats in per_phase])
        out[v.key] = compare(
            name, v.key, control, c, t,
            engine=settings.engine, method=settings.method or "sequential",
            alpha=settings.alpha, lower_is_better=entry.lower_is_better,
        )  # fmt: skip
    return out


def analyse_metrics(
    config: ExperimentView, datas: Sequence[PhaseData], settings: AnalysisSettings
) -> tuple[MetricResult, ...]:
    """Every metric's comparisons, with the multiple-testing correction applied to the
    frequentist family (treatments × non-guardrail metrics)."""
    names = metric_names(config, datas)
    results = {
        (name, key): r
        for name in names
        for key, r in compare_metric(config, datas, name, settings).items()
    }
    family = {
        k: raw
        for k, (_, raw) in results.items()
        if raw is not None and k[0] not in config.guardrails
    }
    corrected = correct_family(
        family, None if settings.correction == "none" else settings.correction
    )
    comparisons = {k: _with_correction(c, corrected.get(k)) for k, (c, _) in results.items()}
    treatments = [v.key for v in config.variants if not v.is_control]
    return tuple(
        MetricResult(
            metric=m,
            role=role(config, m),  # type: ignore[arg-type]
            lower_is_better=catalogue.metric(m).lower_is_better,
            comparisons=tuple(comparisons[(m, k)] for k in treatments),
        )
        for m in names
    )


# ----------------------------------------------------------------------------- checks


def srm_check(raw: SrmResult, weights: Sequence[float], phase: int | None) -> SrmCheck:
    """The report's view of an SRM result (``weights`` in percent)."""
    return SrmCheck(
        observed=tuple(raw.observed),
        expected=tuple(raw.expected),
        weights=tuple(weights),
        chi2=raw.chi2,
        p_value=raw.p_value,
        flagged=raw.flagged,
        error_message=raw.error_message,
        phase=phase,
        note=messages.sentence(raw.error_message),
    )


def check_phases(
    config: ExperimentView, phases: Sequence[PhaseView], datas: Sequence[PhaseData]
) -> tuple[SrmCheck, tuple[SrmCheck, ...]]:
    """The SRM check of the analysis (combined over phases when there are several) and
    each phase's own check (empty for a single phase)."""
    raws = [
        srm_test([d.variant(v.key).units for v in config.variants], [w / 100 for w in p.weights])
        for p, d in zip(phases, datas, strict=True)
    ]
    if len(raws) == 1:
        return srm_check(raws[0], phases[0].weights, phases[0].number), ()
    each = tuple(srm_check(r, p.weights, p.number) for r, p in zip(raws, phases, strict=True))
    return srm_check(combine_srm(raws), phases[-1].weights, None), each


def summarize(
    key: str, model_version: str, is_control: bool, weight: float, d: VariantData, live: bool,
    alpha: float = 0.05,
) -> VariantSummary:  # fmt: skip
    """Descriptive figures of one variant (request figures only for live experiments;
    cost intervals at ``1 - alpha``)."""
    reqs = int(d.requests.total("requests"))
    valid = d.requests.total("valid_requests")
    errs = int(d.requests.total("errors"))
    fallbacks = int(d.requests.total("fallbacks"))
    ok = d.requests.total("successes")
    fb = int(sum(f.moments.total("count") for f in d.feedback.values()))

    def pct(p: float) -> float | None:
        return d.latency.value_at(p)[0] if d.latency.n and live else None

    return VariantSummary(
        key=key,
        model_version=model_version,
        is_control=is_control,
        weight=weight,
        units=d.units,
        requests=reqs,
        errors=errs,
        error_rate=errs / valid if valid and live else None,
        latency_mean_ms=d.requests.total("latency_ms") / ok if ok and live else None,
        latency_p50_ms=pct(0.5),
        latency_p95_ms=pct(0.95),
        latency_p99_ms=pct(0.99),
        feedback_count=fb,
        feedback_rate=fb / reqs if reqs and live else None,
        rejected=int(d.requests.total("rejected")),
        fallbacks=fallbacks,
        fallback_rate=fallbacks / valid if valid and live else None,
        **(cost_figures(d, alpha) if live else {}),  # type: ignore[arg-type]
    )


def _pooled(datas: Sequence[PhaseData], key: str) -> VariantData:
    total = VariantData()
    for d in datas:
        total = total + d.variant(key)
    return total


def _notes(
    config: ExperimentView, phases: Sequence[PhaseView], datas: Sequence[PhaseData],
    names: Sequence[str],
) -> list[str]:  # fmt: skip
    notes: list[str] = []
    if config.primary_metric not in names:
        notes.append(f"primary metric '{config.primary_metric}' has no data in this phase yet")
    multi = sum(d.multi_exposure_units for d in datas)
    if multi:
        included = all(d.multi_exposure_included for d in datas)
        notes.append(
            f"{multi} unit(s) were assigned more than one variant within a phase; "
            + ("included" if included else "excluded from the analysis")
        )
    unpriced = sum(int(v.requests.total("unpriced")) for d in datas for v in d.variants.values())
    if unpriced:
        notes.append(
            f"{unpriced:,} request(s) called an app without a price and add no cost; set "
            "ABPLATFORM_MACHINE_TYPES and ABPLATFORM_PRICES_PER_HOUR (abplatform prices)"
        )
    last, data = phases[-1], datas[-1]
    if len(phases) == 1 and last.number > 1 and not any(v.units for v in data.variants.values()):
        notes.append(
            f"phase {last.number} started {last.started_at:%Y-%m-%d %H:%M} UTC "
            f"({last.reason or 'new phase'}) and has no units yet; the earlier traffic is "
            f"in phase {last.number - 1} and in the all-phases analysis"
        )
    return notes


def analyze(
    config: ExperimentView, data: PhaseData | Sequence[PhaseData], settings: AnalysisSettings
) -> Report:
    """The stats report of phase ``data.phase`` of ``config``, or, given one
    :class:`PhaseData` per phase, of those phases pooled as strata.

    Raises:
        InvalidInputError: invalid settings, or a phase is not a phase of ``config``.
    """
    settings = settings.resolved(config)
    datas = [data] if isinstance(data, PhaseData) else list(data)
    if not datas:
        raise InvalidInputError("nothing to analyse: no phase data given")
    phases = [pick_phase(config, d.phase) for d in datas]
    metric_results = analyse_metrics(config, datas, settings)
    srm, phase_srm = check_phases(config, phases, datas)
    last = phases[-1]
    summaries = tuple(
        summarize(
            v.key, v.model_version, v.is_control, last.weights[i], _pooled(datas, v.key),
            config.is_live, settings.alpha,
        )
        for i, v in enumerate(config.variants)
    )  # fmt: skip
    steps, shadows, rules = breakdowns(datas)
    test_label = (
        f"Bayesian, {FLAT_PRIOR}" if settings.engine == "bayesian" else f"{settings.method} test"
    )
    return Report(
        experiment=config.name,
        status=config.status,
        phase=last.number,
        phase_started_at=phases[0].started_at,
        generated_at=datetime.now(UTC),
        method=settings.method or "sequential",
        alpha=settings.alpha,
        correction=settings.correction,
        primary_metric=config.primary_metric,
        guardrails=tuple(config.guardrails),
        variants=summaries,
        metrics=metric_results,
        srm=srm,
        multi_exposure_units=sum(d.multi_exposure_units for d in datas),
        multi_exposure_excluded=not all(d.multi_exposure_included for d in datas),
        decision=decide(metric_results, srm, config.primary_metric, config.control.key, test_label),
        notes=tuple(_notes(config, phases, datas, [m.metric for m in metric_results])),
        engine=settings.engine,
        prior=FLAT_PRIOR if settings.engine == "bayesian" else None,
        phases=tuple(p.number for p in phases),
        phase_srm=phase_srm,
        steps=steps,
        shadows=shadows,
        rules=rules,
    )


__all__ = [
    "AnalysisSettings",
    "analyse_metrics",
    "analyze",
    "check_phases",
    "comparable_phases",
    "compare_metric",
    "default_method",
    "metric_names",
    "pick_phase",
    "role",
    "summarize",
]
