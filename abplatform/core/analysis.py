"""The analysis: a pure function from an experiment's config and its sufficient statistics
to the stats report.

``analyze(config, data, settings)`` takes the experiment (:class:`ExperimentView`), one
phase's :class:`~abplatform.core.metrics.PhaseData` and :class:`AnalysisSettings`, builds
each metric's per-arm statistic from the catalogue (:mod:`abplatform.core.metrics`), tests
every treatment against the control, corrects for multiple testing, checks the sample
ratio and applies the decision rule (:mod:`abplatform.core.decision`). No database: the
store fetches the data (:func:`abplatform.store.queries.fetch_phase_data`).

Defaults are the safe ones for a report that is watched continuously: the always-valid
sequential test (Waudby-Smith et al. 2021), Holm correction across treatments ×
non-guardrail metrics, multi-exposure units excluded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from abplatform.core import metrics as catalogue
from abplatform.core.decision import decide
from abplatform.core.errors import InvalidInputError
from abplatform.core.metrics import PhaseData, VariantData
from abplatform.core.report import (
    Comparison,
    Correction,
    Method,
    MetricResult,
    Report,
    SrmCheck,
    VariantSummary,
)
from abplatform.core.stats import (
    FrequentistResult,
    Statistic,
    bayesian_test,
    correct_family,
    sequential_test,
    srm_test,
    welch_ttest,
)
from abplatform.core.views import ExperimentView, PhaseView

METHODS: tuple[str, ...] = ("sequential", "fixed")
CORRECTIONS: tuple[str, ...] = ("holm", "bh", "none")


@dataclass(frozen=True)
class AnalysisSettings:
    """How to analyse.

    ``method``: ``"sequential"`` (always valid, safe to watch) or ``"fixed"`` (Welch t,
    valid once, at a horizon fixed in advance). ``alpha``: significance level, a fraction.
    ``correction``: ``"holm"`` (FWER), ``"bh"`` (FDR) or ``"none"``, across treatments ×
    non-guardrail metrics. ``phase``: phase number (None: see :func:`pick_phase`).
    ``include_multi_exposure``: keep units assigned to more than one variant.
    """

    method: Method = "sequential"
    alpha: float = 0.05
    correction: Correction = "holm"
    phase: int | None = None
    include_multi_exposure: bool = False

    def validate(self) -> AnalysisSettings:
        """Return ``self`` if valid.

        Raises:
            InvalidInputError: unknown method or correction, or alpha not in (0, 1).
        """
        if self.method not in METHODS:
            raise InvalidInputError(f"method is {self.method!r}; allowed: sequential, fixed")
        if self.correction not in CORRECTIONS:
            raise InvalidInputError(f"correction is {self.correction!r}; allowed: holm, bh, none")
        if not (isinstance(self.alpha, int | float) and 0 < self.alpha < 1):
            raise InvalidInputError(f"alpha is {self.alpha}; it must be a fraction in (0, 1)")
        return self


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


# ----------------------------------------------------------------------------- comparisons


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _value(stat: Statistic) -> float | None:
    """A statistic's value for display, or None when it has none (no units, unusable)."""
    if not stat.n or getattr(stat, "unusable_reason", None):
        return None
    return _finite(stat.mean)


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
    better = None
    if absolute.informative and absolute.significant:
        better = (absolute.estimate < 0) if lower_is_better else (absolute.estimate > 0)
    comp = Comparison(
        metric=metric,
        variant=variant,
        comparator=comparator,
        control_value=_value(control),
        treatment_value=_value(treatment),
        difference=_finite(absolute.estimate) if absolute.informative else None,
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
    return comp, absolute


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


def metric_names(config: ExperimentView, data: PhaseData) -> list[str]:
    """Metrics to report: primary first, then guardrails, then the rest. Imported
    experiments have no request metrics; feedback metrics appear once they have data."""
    feedback = data.feedback_metrics
    available = set(feedback) | (set(catalogue.BUILTIN_METRICS) if config.is_live else set())
    names = [m for m in (config.primary_metric, *config.guardrails) if m in available]
    names = list(dict.fromkeys(names))
    request_metrics = tuple(catalogue.BUILTIN_METRICS) if config.is_live else ()
    return names + [m for m in (*feedback, *request_metrics) if m not in names]


def role(config: ExperimentView, name: str) -> str:
    """``primary``, ``guardrail`` or ``secondary`` for metric ``name`` in ``config``."""
    if name == config.primary_metric:
        return "primary"
    return "guardrail" if name in config.guardrails else "secondary"


def compare_metric(
    config: ExperimentView, data: PhaseData, name: str, settings: AnalysisSettings
) -> dict[str, tuple[Comparison, FrequentistResult]]:
    """Every treatment against the control on metric ``name``, by treatment key
    (uncorrected for multiple testing)."""
    entry = catalogue.metric(name)
    stats = entry.statistics(data, (v.key for v in config.variants))
    control = config.control.key
    return {
        v.key: compare(
            name,
            v.key,
            control,
            stats[control],
            stats[v.key],
            method=settings.method,
            alpha=settings.alpha,
            lower_is_better=entry.lower_is_better,
        )
        for v in config.variants
        if not v.is_control
    }


def _srm(phase: PhaseView, observed: Sequence[int]) -> SrmCheck:
    raw = srm_test(list(observed), [w / 100.0 for w in phase.weights])
    return SrmCheck(
        observed=tuple(observed),
        expected=tuple(raw.expected),
        weights=tuple(phase.weights),
        chi2=raw.chi2,
        p_value=raw.p_value,
        flagged=raw.flagged,
        error_message=raw.error_message,
    )


def summarize(
    key: str, model_version: str, is_control: bool, weight: float, d: VariantData, live: bool
) -> VariantSummary:
    """Descriptive figures of one variant (request figures only for live experiments)."""
    reqs = int(d.requests.total("requests"))
    errs = int(d.requests.total("errors"))
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
        error_rate=errs / reqs if reqs and live else None,
        latency_mean_ms=d.requests.total("latency_ms") / ok if ok and live else None,
        latency_p50_ms=pct(0.5),
        latency_p95_ms=pct(0.95),
        latency_p99_ms=pct(0.99),
        feedback_count=fb,
        feedback_rate=fb / reqs if reqs and live else None,
    )


def analyze(config: ExperimentView, data: PhaseData, settings: AnalysisSettings) -> Report:
    """The stats report of phase ``data.phase`` of ``config``.

    Raises:
        InvalidInputError: invalid settings, or ``data.phase`` is not a phase of ``config``.
    """
    settings.validate()
    phase = pick_phase(config, data.phase)
    names = metric_names(config, data)
    results = {
        (name, key): r
        for name in names
        for key, r in compare_metric(config, data, name, settings).items()
    }
    family = {k: r for k, (_, r) in results.items() if k[0] not in config.guardrails}
    corrected = correct_family(
        family, None if settings.correction == "none" else settings.correction
    )
    comparisons = {k: _with_correction(c, corrected.get(k)) for k, (c, _) in results.items()}
    treatments = [v.key for v in config.variants if not v.is_control]
    metric_results = tuple(
        MetricResult(
            metric=m,
            role=role(config, m),  # type: ignore[arg-type]
            lower_is_better=catalogue.metric(m).lower_is_better,
            comparisons=tuple(comparisons[(m, k)] for k in treatments),
        )
        for m in names
    )
    srm = _srm(phase, [data.variant(v.key).units for v in config.variants])
    notes: list[str] = []
    if config.primary_metric not in names:
        notes.append(f"primary metric '{config.primary_metric}' has no data in this phase yet")
    if data.multi_exposure_units:
        notes.append(
            f"{data.multi_exposure_units} unit(s) were assigned more than one variant; "
            + ("included" if data.multi_exposure_included else "excluded from the analysis")
        )
    summaries = tuple(
        summarize(
            v.key, v.model_version, v.is_control, phase.weights[i], data.variant(v.key),
            config.is_live,
        )
        for i, v in enumerate(config.variants)
    )  # fmt: skip
    return Report(
        experiment=config.name,
        status=config.status,
        phase=phase.number,
        phase_started_at=phase.started_at,
        generated_at=datetime.now(UTC),
        method=settings.method,
        alpha=settings.alpha,
        correction=settings.correction,
        primary_metric=config.primary_metric,
        guardrails=tuple(config.guardrails),
        variants=summaries,
        metrics=metric_results,
        srm=srm,
        multi_exposure_units=data.multi_exposure_units,
        multi_exposure_excluded=not data.multi_exposure_included,
        decision=decide(
            metric_results, srm, config.primary_metric, config.control.key, settings.method
        ),
        notes=tuple(notes),
    )


__all__ = [
    "AnalysisSettings",
    "analyze",
    "compare",
    "compare_metric",
    "metric_names",
    "pick_phase",
    "role",
    "summarize",
]
