"""Safe rollouts: a staged ramp that advances on evidence and rolls back by itself.

Pure: a rollout's :class:`RolloutPlan` and :class:`RolloutState`, the sufficient
statistics of its phases (one :class:`~abplatform.core.metrics.PhaseData` per ramp step)
and the time in; :class:`RolloutEvidence` (every figure) and one :class:`RolloutAction`
(advance, hold, roll back or promote, with a code and a sentence) out. This module holds
the plan, margins and state; :mod:`abplatform.core.rollout_evidence` the tests and health
checks; :mod:`abplatform.core.rollout_decision` the rule. The service
(:mod:`abplatform.service.rollouts`) fetches the data and applies the action.

**The ramp.** Steps of treatment share (percent, e.g. 5 → 25 → 50); each step is a phase
started by a *sticky* weight change, so a unit that is in the treatment stays there while
the ramp goes up. The evidence pools the rollout's phases as strata
(:mod:`abplatform.core.stats.stratified`), so it accumulates over the whole ramp.

**Guardrails with margins.** Each guardrail has a non-inferiority margin: how much worse
the treatment may be (``latency_p95`` may rise at most 10%: relative; ``error_rate`` at
most 1 point: absolute). With the one-sided always-valid test of
:mod:`abplatform.core.stats.onesided`, two questions per guardrail at every look:

* *regressed*: the regression exceeds the margin (the always-valid lower bound is above
  it), tested at ``alpha / k`` with ``k`` the guardrails plus the primary metric
  (Bonferroni), so at most ``alpha`` of rollouts whose every guardrail is within its
  margin are ever rolled back, however often the controller looks;
* *within margin*: non-inferiority shown (the upper bound is below the margin), at
  ``alpha`` each (an intersection-union test: a promotion needs all of them).

The primary metric may not get worse at all (margin 0, in the same family) unless it is
itself a guardrail with a margin; it *wins* when it is better at ``alpha`` (one-sided).

**Health checks.** Sample ratio mismatch over the rollout's phases (χ², p < 0.001, as the
report), the share of units assigned more than one variant within a phase, and traffic in
the current step.

**The rule** (:func:`~abplatform.core.rollout_decision.decide`), first match wins: a
regressed guardrail, or a worse primary metric, rolls back at once (to the control: see
the service); a failed health check holds; so does a step younger than its minimum
duration or with fewer treatment units than its minimum, or a guardrail that cannot be
tested yet, or (``advance_when="within_margin"``, the default) one not yet shown within its
margin; then the ramp advances to the next step; at the last step it promotes the
treatment when every guardrail is shown within its margin and (``promote_when="win"``)
the primary metric wins, else holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from abplatform.core import metrics as catalogue
from abplatform.core.errors import InvalidInputError
from abplatform.core.views import ExperimentView

MarginKind = Literal["relative", "absolute"]
PromoteWhen = Literal["win", "safe"]
AdvanceWhen = Literal["within_margin", "no_regression"]


@dataclass(frozen=True)
class Margin:
    """How much worse the treatment may be on ``metric``: ``value`` is a fraction of the
    control's value (``relative``, 0.10 = 10%) or metric units (``absolute``: a fraction
    for rates, 0.01 = 1 point; ms for latencies). Worse is up for lower-is-better
    metrics, down for feedback metrics."""

    metric: str
    value: float
    kind: MarginKind

    def describe(self) -> str:
        """E.g. ``"latency_p95 may rise at most 10%"``, ``"error_rate ... 1 point"``."""
        verb = "rise" if catalogue.metric(self.metric).lower_is_better else "drop"
        return f"{self.metric} may {verb} at most {self.amount()}"

    def amount(self) -> str:
        """The margin in words: ``10%``, ``1 point``, ``50 ms``."""
        return format_regression(self.value, self.kind, catalogue.metric(self.metric).unit)


DEFAULT_MARGINS: dict[str, Margin] = {
    m.metric: m
    for m in (
        Margin("error_rate", 0.01, "absolute"),
        Margin("fallback_rate", 0.01, "absolute"),
        Margin("latency_p95", 0.10, "relative"),
        Margin("latency_p99", 0.20, "relative"),
    )
}
"""Margins that fit model serving: error and fallback rate may rise 1 point, p95 latency
10%, p99 latency 20% (the tail is noisier)."""

_MARGIN_RE = re.compile(r"^\s*([A-Za-z0-9_.:-]+)\s*=\s*\+?([0-9]*\.?[0-9]+)\s*(%|pt|ms)?\s*$")


def parse_margin(text: str) -> Margin:
    """``METRIC=10%`` (relative), ``METRIC=1pt`` (absolute percentage points of a rate),
    ``METRIC=50ms`` (absolute) or, for a metric that is neither a latency nor a rate,
    ``METRIC=0.02`` (absolute, in the metric's units). A plain number for a latency or a
    rate is refused: ``latency_p95=10`` could mean 10 ms or 10%.

    Raises:
        InvalidInputError: any other form, or a unit that does not fit the metric.
    """
    m = _MARGIN_RE.match(text)
    if not m:
        raise InvalidInputError(
            f"margin {text!r} must look like METRIC=10% (relative), METRIC=1pt (points of "
            "a rate), METRIC=50ms or METRIC=0.02 (metric units)"
        )
    name, number, suffix = m.group(1), float(m.group(2)), m.group(3)
    try:
        catalogue.check_metric_name(name)
    except ValueError as exc:
        raise InvalidInputError(f"margin {text!r}: {exc}") from None
    unit = catalogue.metric(name).unit
    if not suffix and name in catalogue.BUILTIN_METRICS and unit in ("ms", "fraction"):
        absolute = "ms (absolute)" if unit == "ms" else "pt (absolute, points of a rate)"
        raise InvalidInputError(
            f"margin {text!r} has no unit: write {name}={number:g}% (relative) or "
            f"{name}={number:g}{absolute}"
        )
    if suffix in ("pt", "ms") and name not in catalogue.BUILTIN_METRICS:
        raise InvalidInputError(
            f"margin {text!r}: {name} is not a built-in metric ("
            + ", ".join(catalogue.BUILTIN_METRICS)
            + "); a feedback metric's margin is a plain number in its values, or a percent"
        )
    if suffix == "%":
        return Margin(name, number / 100.0, "relative")
    if suffix == "pt" and unit != "fraction":
        raise InvalidInputError(f"margin {text!r}: points fit rates only; {name} is in {unit}")
    if suffix == "ms" and unit != "ms":
        raise InvalidInputError(f"margin {text!r}: ms fits latencies only; {name} is in {unit}")
    return Margin(name, number / 100.0 if suffix == "pt" else number, "absolute")


def default_margins(fallback_to_control: bool) -> tuple[Margin, ...]:
    """The guardrails a rollout watches unless told otherwise: error rate, p95 and p99
    latency, and the fallback rate when the experiment falls back to the control."""
    names = ["error_rate", "latency_p95", "latency_p99"]
    if fallback_to_control:
        names.insert(1, "fallback_rate")
    return tuple(DEFAULT_MARGINS[n] for n in names)


@dataclass(frozen=True)
class RolloutPlan:
    """A ramp schedule and its gates.

    ``steps``: treatment share per step, percent, increasing, each in (0, 100);
    ``min_duration_s``: seconds each step lasts at least; ``min_units``: treatment units
    each step needs at least; ``margins``: the guardrails and how much worse each may be;
    ``alpha``: error rate of the rollout's decisions (a fraction); ``promote_when``:
    ``"win"`` (the primary metric must be better at the last step) or ``"safe"`` (every
    guardrail shown within its margin is enough); ``advance_when``: ``"within_margin"``
    (every guardrail shown within its margin at each step: evidence of safety before more
    users get the treatment) or ``"no_regression"`` (no guardrail shown beyond its margin
    once the step's minimum duration and units are reached: for low traffic, where showing
    non-inferiority at a small step would take too long); ``max_multi_exposure``: largest share
    of units assigned more than one variant within a phase; ``tuning``: units (requests
    for latency quantiles) at which the always-valid bounds are tightest.
    """

    steps: tuple[float, ...]
    min_duration_s: float = 600.0
    min_units: int = 100
    margins: tuple[Margin, ...] = field(default_factory=lambda: default_margins(False))
    alpha: float = 0.05
    promote_when: PromoteWhen = "win"
    advance_when: AdvanceWhen = "within_margin"
    max_multi_exposure: float = 0.01
    tuning: float = 2000.0

    def validate(self) -> RolloutPlan:
        """Return ``self`` if valid.

        Raises:
            InvalidInputError: saying which field is wrong and what is allowed.
        """
        s = self.steps
        if not s or any(not (0 < x < 100) for x in s) or list(s) != sorted(set(s)):
            shown = ",".join(f"{x:g}" for x in s) or "none"
            raise InvalidInputError(
                f"steps are {shown}; give increasing treatment shares in percent, each above "
                "0 and below 100 (e.g. 5,25,50); the promotion then takes it to 100%"
            )
        if not (self.min_duration_s >= 0 and math.isfinite(self.min_duration_s)):
            raise InvalidInputError(f"min duration is {self.min_duration_s}; it must be ≥ 0 s")
        if self.min_units < 1:
            raise InvalidInputError(f"min units is {self.min_units}; it must be at least 1")
        if not 0 < self.alpha < 0.5:
            raise InvalidInputError(f"alpha is {self.alpha}; it must be a fraction in (0, 0.5)")
        if self.promote_when not in ("win", "safe"):
            raise InvalidInputError(f"promote when {self.promote_when!r}; allowed: win, safe")
        if self.advance_when not in ("within_margin", "no_regression"):
            raise InvalidInputError(
                f"advance when {self.advance_when!r}; allowed: within_margin, no_regression"
            )
        if not 0 <= self.max_multi_exposure <= 1:
            raise InvalidInputError("max multi-exposure share must be a fraction in [0, 1]")
        if not self.tuning > 0:
            raise InvalidInputError(f"tuning is {self.tuning}; it must be > 0")
        names = [m.metric for m in self.margins]
        if len(set(names)) < len(names):
            raise InvalidInputError(f"one margin per guardrail; got {', '.join(names)}")
        for m in self.margins:
            if not (m.value >= 0 and math.isfinite(m.value)) or m.kind not in (
                "relative",
                "absolute",
            ):
                raise InvalidInputError(f"margin of {m.metric} must be ≥ 0 (got {m.value})")
        return self

    def weights(self, step: int) -> tuple[float, float]:
        """(control, treatment) weights in percent at ``step`` (0-based)."""
        share = self.steps[step]
        return (100.0 - share, share)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (inverse of :meth:`from_json`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutPlan:
        """The plan stored by :meth:`to_json`."""
        fields = dict(data)
        fields["steps"] = tuple(fields["steps"])
        fields["margins"] = tuple(Margin(**m) for m in fields.get("margins", ()))
        return cls(**fields)


def check_experiment(config: ExperimentView) -> None:
    """Raise :class:`InvalidInputError` unless ``config`` can be rolled out: a live
    experiment with one control and exactly one treatment."""
    if not config.is_live:
        raise InvalidInputError(f"experiment '{config.name}' is imported; it serves nothing")
    if len(config.variants) != 2:
        raise InvalidInputError(
            f"a rollout ramps one treatment against the control; '{config.name}' has "
            f"{len(config.variants)} variants"
        )


def treatment_key(config: ExperimentView) -> str:
    """The key of the one variant that is not the control."""
    return next(v.key for v in config.variants if not v.is_control)


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands: its ``status`` (a
    :class:`~abplatform.core.lifecycle.RolloutStatus` value), the current ``step``
    (0-based), when that step started, and the experiment phase numbers of its steps so
    far (``phases[0]`` is the first step's phase, ``phases[-1]`` the current one)."""

    status: str
    step: int
    step_started_at: datetime
    phases: tuple[int, ...]


def format_value(value: float | None, unit: str) -> str:
    """A metric value for a sentence: ``5.3%`` (fraction), ``412 ms``, ``0.41``."""
    if value is None:
        return "–"
    if unit == "fraction":
        return f"{value * 100:.3g}%"
    if unit == "ms":
        return f"{value:.0f} ms" if abs(value) >= 10 else f"{value:.2g} ms"
    return f"{value:.3g}"


def format_regression(value: float | None, kind: str, unit: str, signed: bool = False) -> str:
    """A regression or margin: ``+12%`` (relative), ``+5.1 points`` (rate), ``+40 ms``."""
    if value is None:
        return "–"
    sign = "+" if signed else ""
    if kind == "relative":
        return f"{value * 100:{sign}.3g}%"
    if unit == "fraction":
        points = value * 100
        word = "point" if abs(points) == 1 else "points"
        return f"{points:{sign}.3g} {word}"
    if unit == "ms":
        return f"{value:{sign}.0f} ms"
    return f"{value:{sign}.3g}"


__all__ = [
    "DEFAULT_MARGINS",
    "AdvanceWhen",
    "Margin",
    "MarginKind",
    "PromoteWhen",
    "RolloutPlan",
    "RolloutState",
    "RolloutView",
    "check_experiment",
    "default_margins",
    "format_regression",
    "format_value",
    "parse_margin",
    "treatment_key",
]


@dataclass(frozen=True)
class RolloutView:
    """A stored rollout as the services return it: its experiment, plan and
    :class:`RolloutState` fields, the controller's last evaluation (``last_action``: the
    JSON of a :class:`~abplatform.core.rollout_decision.RolloutAction` plus ``at`` and
    ``next_check_at``, ISO 8601 UTC), an operator's ``note`` (why it was paused or
    overridden), and ``version`` (pass it back as ``expected_version``)."""

    experiment: str
    plan: RolloutPlan
    status: str
    step: int
    step_started_at: datetime
    phases: tuple[int, ...]
    last_action: Mapping[str, Any] | None
    last_checked_at: datetime | None
    note: str
    version: int
    updated_at: datetime

    @property
    def state(self) -> RolloutState:
        """The decision's view of where the rollout stands."""
        return RolloutState(self.status, self.step, self.step_started_at, self.phases)

    @property
    def share(self) -> float:
        """The treatment share of the current step, percent."""
        return self.plan.steps[self.step]

    @property
    def step_label(self) -> str:
        """E.g. ``"step 2/3 at 25%"``."""
        return f"step {self.step + 1}/{len(self.plan.steps)} at {self.share:g}%"
