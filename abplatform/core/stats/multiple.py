"""Multiple-comparison corrections across a family of tests.

* Holm (1979), "A simple sequentially rejective multiple test procedure", Scand. J.
  Statist. 6:65-70: controls the family-wise error rate; use it for ship decisions.
* Benjamini & Hochberg (1995), JRSS-B 57:289-300: controls the false discovery rate
  under independence or positive dependence; use it for exploration.

Adjusted p-values are returned in input order and match statsmodels ``multipletests``
(``"holm"`` and ``"fdr_bh"``) and GrowthBook's ``adjustPValuesHolmBonferroni`` /
``adjustPValuesBenjaminiHochberg``. As in GrowthBook, the family is what the caller
passes: variants x non-guardrail metrics (guardrails are excluded by the caller).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, TypeVar

from scipy import special

from abplatform.core.stats.results import FrequentistResult

CorrectionMethod = Literal["holm", "bh"]
"""``"holm"`` (Holm-Bonferroni, FWER) or ``"bh"`` (Benjamini-Hochberg, FDR)."""

K = TypeVar("K", bound=Hashable)


def _validated(p_values: Sequence[float]) -> list[float]:
    ps = [float(p) for p in p_values]
    for p in ps:
        if not 0.0 <= p <= 1.0:  # also rejects nan
            raise ValueError(f"p-values must lie in [0, 1], got {p}")
    return ps


def holm_bonferroni(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order.

    For sorted ``p_(1) <= ... <= p_(m)``: ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.

    Raises:
        ValueError: if a p-value is outside [0, 1] or nan.
    """
    ps = _validated(p_values)
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (q-values), in input order.

    For sorted p-values: ``adj_(i) = min_{j >= i} min(1, m p_(j) / j)``.

    Raises:
        ValueError: if a p-value is outside [0, 1] or nan.
    """
    ps = _validated(p_values)
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, m * ps[i] / (rank + 1))
        adjusted[i] = running
    return adjusted


def adjust_p_values(p_values: Sequence[float], method: CorrectionMethod | None) -> list[float]:
    """Dispatch to :func:`holm_bonferroni` / :func:`benjamini_hochberg`; ``None`` = no-op.

    Raises:
        ValueError: on an unknown method or invalid p-values.
    """
    if method is None:
        return _validated(p_values)
    if method == "holm":
        return holm_bonferroni(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    raise ValueError(f"unknown correction method {method!r}; use 'holm', 'bh' or None")


def adjusted_interval(result: FrequentistResult, adjusted_p: float) -> tuple[float, float] | None:
    """Confidence interval back-solved from an adjusted p-value (GrowthBook ``adjustedCI``).

    The standard error is inflated to ``|estimate| / t_{dof}^{-1}(1 - p_adj/2)`` so that the
    interval at ``result.alpha`` excludes 0 exactly when ``p_adj < alpha``. Defined for
    two-sided Welch results only; ``None`` otherwise (sequential or one-sided).
    """
    if result.method != "welch-t" or result.alternative != "two-sided" or result.ci is None:
        return None
    if adjusted_p >= 1.0:
        return (-math.inf, math.inf)
    t_adj = float(special.stdtrit(result.dof, 1.0 - adjusted_p / 2.0))
    se_adj = abs(result.estimate) / t_adj
    half = float(special.stdtrit(result.dof, 1.0 - result.alpha / 2.0)) * se_adj
    return (result.estimate - half, result.estimate + half)


def correct_family(
    results: Mapping[K, FrequentistResult], method: CorrectionMethod | None
) -> dict[K, FrequentistResult]:
    """Apply one correction across a family of frequentist results.

    Args:
        results: e.g. ``{(variant, metric): result}`` for every treatment x non-guardrail
            metric in the report. Uninformative results (``error_message`` set) are left
            out of the family - they test nothing - and get ``adjusted_p_value = 1.0``.
        method: ``"holm"``, ``"bh"`` or ``None`` (returns copies with the raw p as adjusted).

    Returns:
        A new dict, same keys and order, whose results carry ``adjusted_p_value`` and
        ``adjusted_ci`` (see :func:`adjusted_interval`); ``significant`` then uses the
        adjusted p-value.

    Raises:
        ValueError: on an unknown method.
    """
    keys = [k for k, r in results.items() if r.informative]
    adjusted = adjust_p_values([results[k].p_value for k in keys], method)
    by_key = dict(zip(keys, adjusted, strict=True))
    out: dict[K, FrequentistResult] = {}
    for key, result in results.items():
        p_adj = by_key.get(key, 1.0)
        out[key] = dataclasses.replace(
            result, adjusted_p_value=p_adj, adjusted_ci=adjusted_interval(result, p_adj)
        )
    return out
