"""Sample-ratio-mismatch (SRM) check against the configured arm weights.

Pearson chi-square goodness of fit (Pearson 1900) with ``k - 1`` degrees of freedom over
the ``k`` arms of positive weight, as gbstats ``check_srm``: weight-0 arms are skipped
and an experiment with no units returns ``p = 1``. The alert rule is GrowthBook's
(``DEFAULT_SRM_THRESHOLD = 0.001``; ``getSRMHealthData`` in
``packages/shared/src/health/health.ts``: enough traffic once the *total* reaches
``k × DEFAULT_SRM_MINIMINUM_COUNT_PER_VARIATION`` (8)), so a broken arm that receives
no units at all (``[100000, 0]``) or one stray unit is flagged, not excused for being
small. An optional effect-size floor (``min_deviation``) follows Mozilla
experimenter#16010, where tiny deviations on huge samples raised alarms nobody could act on.

Run it per phase: weights must be the ones in force while ``observed`` was collected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from scipy import special

from abplatform.core.stats import messages
from abplatform.core.stats.results import SrmResult

DEFAULT_SRM_P_THRESHOLD = 0.001
DEFAULT_SRM_MIN_COUNT = 8


def srm_test(
    observed: Sequence[int],
    weights: Sequence[float],
    *,
    p_threshold: float = DEFAULT_SRM_P_THRESHOLD,
    min_count: int = DEFAULT_SRM_MIN_COUNT,
    min_deviation: float = 0.0,
) -> SrmResult:
    """Chi-square test that units were split in proportion to ``weights``.

    Args:
        observed: units per arm (non-negative counts), control first.
        weights: configured traffic weights per arm, as fractions or any non-negative
            numbers (they are normalised over the arms with positive weight).
        p_threshold: flag only when ``p_value < p_threshold``.
        min_count: flag only when the weighted arms hold ``>= min_count × k`` units in
            total (``k`` arms of positive weight; GrowthBook's rule).
        min_deviation: flag only when some arm's ``|observed/expected - 1|`` is at least
            this fraction (0.0 disables the floor).

    Returns:
        :class:`SrmResult`. With no units, or fewer than two weighted arms, ``p_value=1``,
        ``flagged=False`` and ``error_message`` says why. Never raises on counts.

    Raises:
        ValueError: if the lengths differ, a weight or count is negative, NaN or infinite,
            a count is not a whole number, or all weights are 0.
    """
    if len(observed) != len(weights):
        raise ValueError(f"{len(observed)} observed counts but {len(weights)} weights")
    for name, values in (("weight", weights), ("count", observed)):
        for i, x in enumerate(values):
            if not (isinstance(x, numbers.Real) and math.isfinite(x) and x >= 0):
                raise ValueError(
                    f"{name} #{i + 1} is {x!r}; weights and counts must be finite and >= 0"
                )
    if any(o != int(o) for o in observed):
        raise ValueError(f"counts must be whole numbers of units, got {list(observed)}")
    total_weight = sum(w for w in weights if w > 0)
    if total_weight <= 0:
        raise ValueError("at least one weight must be positive")
    active = [i for i, w in enumerate(weights) if w > 0]
    total = sum(observed[i] for i in active)
    expected = tuple(total * w / total_weight if w > 0 else 0.0 for w in weights)
    obs = tuple(int(o) for o in observed)
    if total == 0 or len(active) < 2:
        reason = messages.NO_UNITS_IN_EXPERIMENT if total == 0 else messages.SINGLE_WEIGHTED_ARM
        return SrmResult(0.0, max(len(active) - 1, 0), 1.0, obs, expected, False, reason)
    chi2 = math.fsum((obs[i] - expected[i]) ** 2 / expected[i] for i in active)
    dof = len(active) - 1
    p_value = float(special.chdtrc(dof, chi2))
    deviation = max(abs(obs[i] / expected[i] - 1.0) for i in active)
    flagged = (
        p_value < p_threshold and total >= min_count * len(active) and deviation >= min_deviation
    )
    return SrmResult(chi2, dof, p_value, obs, expected, flagged)


def combine_srm(
    results: Sequence[SrmResult], *, p_threshold: float = DEFAULT_SRM_P_THRESHOLD
) -> SrmResult:
    """One SRM verdict over several phases, each checked against its own weights.

    The phases of one experiment share units (a sticky re-split keeps most units in
    their variant), so their χ² statistics are not independent and are not added into
    one test. Instead the smallest per-phase p-value is Bonferroni-adjusted for the
    number of phases checked, ``p = min(1, k · min p_s)``, and the result is flagged when
    any phase is flagged at ``p_threshold / k`` (each phase applying its own count rule).
    ``observed`` and ``expected`` are summed over the phases per arm (each phase's
    expectation from its own weights, not the pooled units against one split), ``chi2``
    and ``dof`` are those of the phase with the smallest p.

    Phases that could not be checked (no units, a single weighted arm) are left out;
    when none is left, the last result is returned.

    Raises:
        ValueError: ``results`` is empty or the phases have different numbers of arms.
    """
    if not results:
        raise ValueError("combine_srm() needs at least one result")
    if len({len(r.observed) for r in results}) != 1:
        raise ValueError("every phase must have the same arms")
    checked = [r for r in results if r.error_message is None]
    if not checked:
        return results[-1]
    k = len(checked)
    worst = min(checked, key=lambda r: r.p_value)
    arms = range(len(results[0].observed))
    flagged = any(r.flagged and r.p_value < p_threshold / k for r in checked)
    return SrmResult(
        chi2=worst.chi2,
        dof=worst.dof,
        p_value=min(1.0, k * worst.p_value),
        observed=tuple(sum(r.observed[i] for r in results) for i in arms),
        expected=tuple(math.fsum(r.expected[i] for r in results) for i in arms),
        flagged=flagged,
    )
