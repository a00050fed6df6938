"""The stats report: what an analysis returns and every view (CLI, dashboard, demo) shows.

Built by :func:`abplatform.core.analysis.analyze` from a config and sufficient statistics;
plain frozen dataclasses, serialisable with :meth:`Report.to_json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from abplatform.core.jsonable import json_safe

Method = Literal["sequential", "fixed"]
Correction = Literal["holm", "bh", "none"]
Engine = Literal["frequentist", "bayesian"]


@dataclass(frozen=True)
class VariantSummary:
    """Descriptive figures of one variant in the analysed phase (summed over the phases
    of an all-phases report).

    Latencies in ms over the requests the variant answered itself; rates are fractions;
    ``weight`` in percent. ``errors`` are requests the variant failed, fallback-served
    ones included; ``rejected`` are requests the backend refused for the caller's
    arguments (not in the error rate); ``fallbacks`` are requests the control served
    after the variant failed. ``error_rate`` and ``fallback_rate`` divide by the requests
    that were not rejected.
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
    rejected: int = 0
    fallbacks: int = 0
    fallback_rate: float | None = None
    billed_s_per_request: float | None = None
    cost_per_request: float | None = None
    cost_per_request_ci: tuple[float, float] | None = None
    cost_per_success: float | None = None
    cost_per_success_ci: tuple[float, float] | None = None
    unpriced: int = 0


@dataclass(frozen=True)
class CallSummary:
    """One kind of call in the analysed phase: a ``step`` of a variant's pipeline (0 = its
    first app), or the ``shadow`` calls of a variant that mirrors requests, or (``kind``
    ``request``) the requests a route's ``rule`` served.

    ``experiment`` is the experiment a rule's requests went to (None: an app).
    ``calls``: how many; ``errors``: failed (error or timeout; a step also counts
    ``skipped`` ones, after an earlier step failed, in ``skipped``); latency in ms over
    the successful calls; ``cost_per_call`` in USD (None: no price). For shadow calls the
    ``live_*`` figures are the live answers of the same requests, for a paired comparison.
    """

    kind: str
    variant: str | None
    step: int
    app: str
    calls: int
    errors: int
    error_rate: float | None
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    billed_s_per_call: float | None
    cost_per_call: float | None
    skipped: int = 0
    rejected: int = 0
    route: str | None = None
    rule: str | None = None
    experiment: str | None = None
    live_error_rate: float | None = None
    live_latency_mean_ms: float | None = None
    live_cost_per_call: float | None = None


@dataclass(frozen=True)
class Comparison:
    """One treatment against the control on one metric, under the report's engine.

    ``difference`` is in metric units (ms, fraction of requests, feedback value),
    ``lift`` is relative (a fraction of the control's value). ``ci``/``lift_ci`` are the
    intervals of each: confidence intervals (confidence *sequences* for the sequential
    method) for the frequentist engine, equal-tailed credible intervals for the Bayesian
    one. Frequentist: ``p_value`` raw, ``adjusted_p_value`` after the family correction
    (guardrails are not corrected); ``chance_to_win`` and ``risk`` are None. Bayesian:
    ``chance_to_win`` is P(treatment better than ``comparator``'s control, in the
    metric's good direction) and ``risk`` the expected loss (of keeping the control, of
    shipping the treatment), in metric units; the p-values are None. Every figure is
    None when the data allow no test; ``note`` then says why, in words (and also why a
    lift is missing while the difference is there, e.g. a control mean of 0).
    ``error_message`` / ``lift_error_message`` are the machine-readable codes of
    :mod:`abplatform.core.stats.messages`.
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
    p_value: float | None
    adjusted_p_value: float | None
    chance_to_win: float | None
    significant: bool
    better: bool | None
    error_message: str | None
    lift_error_message: str | None = None
    note: str | None = None
    risk: tuple[float, float] | None = None


@dataclass(frozen=True)
class MetricResult:
    """All comparisons for one metric; ``role`` is primary, guardrail or secondary."""

    metric: str
    role: Literal["primary", "guardrail", "secondary"]
    lower_is_better: bool
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class SrmCheck:
    """Sample-ratio-mismatch check of the phase's units against its weights (percent).

    For an all-phases report it combines the phases' checks (``phase`` None, weights
    those of the last phase; see :func:`abplatform.core.stats.srm.combine_srm`).
    ``note`` says in words why the check could not run, when it could not.
    """

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    weights: tuple[float, ...]
    chi2: float
    p_value: float
    flagged: bool
    error_message: str | None
    phase: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class Decision:
    """ship / keep running / roll back, the variant concerned, and the rule applied."""

    action: Literal["ship", "keep running", "roll back"]
    variant: str | None
    rule: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """The full stats report of one phase of one experiment, or of all its phases.

    ``phase`` is the analysed phase (the last one for an all-phases report);
    ``phases`` lists every analysed phase, so more than one means the phases were pooled
    as strata (:mod:`abplatform.core.stats.stratified`) and ``phase_srm`` holds each
    phase's own SRM check. ``engine`` says whose figures the comparisons carry;
    ``method`` (frequentist engine) is the test; ``prior`` (Bayesian engine) the prior;
    :attr:`method_label` names them in one line for every view's header.
    ``steps`` (per pipeline step of each variant), ``shadows`` (per mirroring variant)
    and ``rules`` (per route rule the traffic came through) are descriptive breakdowns
    of the analysed phase(s).
    """

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
    engine: Engine = "frequentist"
    prior: str | None = None
    phases: tuple[int, ...] = ()
    phase_srm: tuple[SrmCheck, ...] = ()
    steps: tuple[CallSummary, ...] = ()
    shadows: tuple[CallSummary, ...] = ()
    rules: tuple[CallSummary, ...] = ()

    @property
    def all_phases(self) -> bool:
        """Whether several phases were pooled (as strata, each with its own weights)."""
        return len(self.phases) > 1

    @property
    def method_label(self) -> str:
        """The engine and test in words, e.g. ``"sequential test (always valid), α 0.05,
        Holm correction"`` or ``"Bayesian, flat prior"``."""
        if self.engine == "bayesian":
            return f"Bayesian ({self.prior or 'flat prior'}), {1 - self.alpha:.0%} credible"
        test = (
            "sequential test (always valid, safe to watch)"
            if self.method == "sequential"
            else "fixed-horizon Welch t-test (valid once, at a horizon fixed in advance)"
        )
        correction = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no"}[self.correction]
        return f"{test}, α {self.alpha:g}, {correction} correction"

    @property
    def scope_label(self) -> str:
        """``"phase 2"`` or ``"all phases 1–2, stratified by phase"``."""
        if self.all_phases:
            return (
                f"all phases {self.phases[0]}–{self.phases[-1]}, pooled as strata "
                "(each phase with its own weights)"
            )
        return f"phase {self.phase}"

    def metric(self, name: str) -> MetricResult:
        """The :class:`MetricResult` for ``name`` (KeyError if absent)."""
        for m in self.metrics:
            if m.metric == name:
                return m
        raise KeyError(name)

    def to_json(self) -> str:
        """The report as JSON (timestamps ISO 8601 UTC, NaN as null)."""

        return json.dumps(json_safe(asdict(self)), indent=2)


@dataclass(frozen=True)
class RouteReport:
    """What a route's traffic did, per rule, experiment and served app (all time):
    requests, errors, latency, billed seconds and cost per request (in ``rules``, kind
    ``request``), beside the route's ``view`` (its rules and arguments)."""

    route: str
    version: int
    generated_at: datetime
    rules: tuple[CallSummary, ...]
    rule_specs: tuple[dict[str, Any], ...]
    arguments: dict[str, Any]

    def to_json(self) -> str:
        """The route report as JSON (timestamps ISO 8601 UTC)."""
        return json.dumps(asdict(self), indent=2, default=lambda x: x.isoformat())


__all__ = [
    "CallSummary",
    "Comparison",
    "Correction",
    "Decision",
    "Engine",
    "Method",
    "MetricResult",
    "Report",
    "RouteReport",
    "SrmCheck",
    "VariantSummary",
]
