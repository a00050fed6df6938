"""One treatment against the control on one metric, with one engine's figures.

GrowthBook shows either the frequentist or the Bayesian engine's figures in a view, never
both side by side: a Bayesian chance to win of 99.9% (from the fixed-horizon standard
error) next to an always-valid sequential p of 0.49 reads as a contradiction, and both
are correct. So :func:`compare` fills a :class:`~abplatform.core.report.Comparison` with
the figures of the engine asked for:

* ``frequentist``: difference and relative lift with their confidence intervals
  (confidence *sequences* for the sequential test) and p-values; significant when
  ``p < alpha`` (after the family correction, see :mod:`abplatform.core.analysis`).
* ``bayesian``: posterior mean difference and lift with equal-tailed credible
  intervals at ``1 - alpha`` under a flat prior (:func:`~abplatform.core.stats.bayesian_test`),
  the chance to beat the control and the risk; "better" or "worse" when the credible
  interval of the difference excludes 0, i.e. when the chance to win is at least
  ``1 - alpha/2`` or at most ``alpha/2``. Not corrected for multiple comparisons and not
  protected against peeking (GrowthBook's Bayesian engine is neither).

When a test cannot run, every figure is None and ``note`` says why in words; when only
the relative lift is undefined (a control mean of 0) the difference stays and ``note``
says so.
"""

from __future__ import annotations

import math
from typing import Literal

from abplatform.core.report import Comparison, Engine, Method
from abplatform.core.stats import (
    BayesianResult,
    FrequentistResult,
    Statistic,
    bayesian_test,
    messages,
    sequential_test,
    welch_ttest,
)

ENGINES: tuple[str, ...] = ("frequentist", "bayesian")
FLAT_PRIOR = "flat prior"
"""The Bayesian engine's prior, as every view names it (gbstats' library default)."""


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def arm_value(stat: Statistic) -> float | None:
    """A statistic's value for display, or None when it has none (no units, unusable)."""
    if not stat.n or getattr(stat, "unusable_reason", None):
        return None
    return _finite(stat.mean)


def _note(absolute: str | None, relative: str | None) -> str | None:
    """Why the comparison, or only its relative lift, has no figures (a sentence)."""
    if absolute is not None:
        return messages.sentence(absolute)
    return messages.sentence(relative)


def _interval(ci: tuple[float, float] | None, ok: bool) -> tuple[float, float] | None:
    return ci if ok and ci is not None else None


def frequentist_comparison(
    metric: str,
    variant: str,
    control: Statistic,
    treatment: Statistic,
    *,
    comparator: str,
    method: Method,
    alpha: float,
    lower_is_better: bool,
) -> tuple[Comparison, FrequentistResult]:
    """The frequentist comparison and the raw absolute-difference result (for the
    multiple-testing family)."""
    test = sequential_test if method == "sequential" else welch_ttest
    absolute = test(control, treatment, difference="absolute", alpha=alpha, comparator=comparator)
    relative = test(control, treatment, difference="relative", alpha=alpha, comparator=comparator)
    better = None
    if absolute.significant:
        better = (absolute.estimate < 0) if lower_is_better else (absolute.estimate > 0)
    comp = Comparison(
        metric=metric,
        variant=variant,
        comparator=comparator,
        control_value=arm_value(control),
        treatment_value=arm_value(treatment),
        difference=_finite(absolute.estimate) if absolute.informative else None,
        ci=_interval(absolute.ci, absolute.informative),
        lift=_finite(relative.estimate) if relative.informative else None,
        lift_ci=_interval(relative.ci, relative.informative),
        p_value=absolute.p_value if absolute.informative else None,
        adjusted_p_value=absolute.adjusted_p_value if absolute.informative else None,
        chance_to_win=None,
        significant=absolute.significant,
        better=better,
        error_message=absolute.error_message,
        lift_error_message=relative.error_message,
        note=_note(absolute.error_message, relative.error_message),
    )
    return comp, absolute


def _good_direction(result: BayesianResult, lower_is_better: bool) -> tuple[float, tuple]:
    """Chance to win and risk (keep control, ship treatment) in the good direction."""
    assert result.risk is not None
    if lower_is_better:
        return 1.0 - result.chance_to_win, (result.risk[1], result.risk[0])
    return result.chance_to_win, result.risk


def bayesian_comparison(
    metric: str,
    variant: str,
    control: Statistic,
    treatment: Statistic,
    *,
    comparator: str,
    alpha: float,
    lower_is_better: bool,
) -> Comparison:
    """The Bayesian comparison (flat prior; see the module docstring)."""
    absolute = bayesian_test(control, treatment, difference="absolute", alpha=alpha)
    relative = bayesian_test(control, treatment, difference="relative", alpha=alpha)
    chance: float | None = None
    risk = None
    better = None
    if absolute.informative:
        chance, risk = _good_direction(absolute, lower_is_better)
        if chance >= 1.0 - alpha / 2:
            better = True
        elif chance <= alpha / 2:
            better = False
    return Comparison(
        metric=metric,
        variant=variant,
        comparator=comparator,
        control_value=arm_value(control),
        treatment_value=arm_value(treatment),
        difference=_finite(absolute.estimate) if absolute.informative else None,
        ci=_interval(absolute.ci, absolute.informative),
        lift=_finite(relative.estimate) if relative.informative else None,
        lift_ci=_interval(relative.ci, relative.informative),
        p_value=None,
        adjusted_p_value=None,
        chance_to_win=chance,
        significant=better is not None,
        better=better,
        error_message=absolute.error_message,
        lift_error_message=relative.error_message,
        note=_note(absolute.error_message, relative.error_message),
        risk=risk,
    )


def compare(
    metric: str,
    variant: str,
    control_key: str,
    control: Statistic,
    treatment: Statistic,
    *,
    engine: Engine = "frequentist",
    method: Method = "sequential",
    alpha: float = 0.05,
    lower_is_better: bool = False,
) -> tuple[Comparison, FrequentistResult | None]:
    """Test one treatment against the control on one metric (absolute and relative).

    Returns the :class:`Comparison` and, for the frequentist engine, the raw
    absolute-difference result (for the multiple-testing family; None for Bayesian).
    Never raises on degenerate data.
    """
    comparator = f"{variant} vs {control_key}"
    if engine == "bayesian":
        comp = bayesian_comparison(
            metric, variant, control, treatment,
            comparator=comparator, alpha=alpha, lower_is_better=lower_is_better,
        )  # fmt: skip
        return comp, None
    return frequentist_comparison(
        metric, variant, control, treatment,
        comparator=comparator, method=method, alpha=alpha, lower_is_better=lower_is_better,
    )  # fmt: skip


Verdict = Literal["better", "worse", "not significant", "inconclusive", "no test"]


def verdict(c: Comparison) -> Verdict:
    """``better`` / ``worse`` (in the metric's good direction: significant, or for the
    Bayesian engine a credible interval clear of 0), ``not significant`` (frequentist) or
    ``inconclusive`` (Bayesian), or ``no test`` when the data allow none (``c.note`` says
    why)."""
    if c.difference is None:
        return "no test"
    if c.better is True:
        return "better"
    if c.better is False:
        return "worse"
    return "inconclusive" if c.chance_to_win is not None else "not significant"


__all__ = [
    "ENGINES",
    "FLAT_PRIOR",
    "Verdict",
    "arm_value",
    "bayesian_comparison",
    "compare",
    "frequentist_comparison",
    "verdict",
]
