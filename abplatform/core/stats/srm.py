"""Sample-ratio-mismatch (SRM) check against the configured arm weights.

Pearson chi-square goodness of fit (Pearson 1900) with ``k - 1`` degrees of freedom over
the ``k`` arms of positive weight, as gbstats ``check_srm``: weight-0 arms are skipped
and an experiment with no units returns ``p = 1``. The alert rule is GrowthBook's
(``DEFAULT_SRM_THRESHOLD = 0.001`` and ``DEFAULT_SRM_MINIMINUM_COUNT_PER_VARIATION = 8``),
plus an optional effect-size floor (``min_deviation``) after Mozilla experimenter#16010,
where tiny deviations on huge samples raised alarms nobody could act on.

Run it per phase: weights must be the ones in force while ``observed`` was collected.
"""

from __future__ import annotations

import math
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
        min_count: flag only when every positively weighted arm has ``>= min_count`` units.
        min_deviation: flag only when some arm's ``|observed/expected - 1|`` is at least
            this fraction (0.0 disables the floor).

    Returns:
        :class:`SrmResult`. With no units, or fewer than two weighted arms, ``p_value=1``,
        ``flagged=False`` and ``error_message`` says why. Never raises on counts.

    Raises:
        ValueError: if the lengths differ, a weight or count is negative, or all weights are 0.
    """
    if len(observed) != len(weights):
        raise ValueError(f"{len(observed)} observed counts but {len(weights)} weights")
    if any(w < 0 for w in weights) or any(o < 0 for o in observed):
        raise ValueError("weights and counts must be non-negative")
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
        p_value < p_threshold
        and all(obs[i] >= min_count for i in active)
        and deviation >= min_deviation
    )
    return SrmResult(chi2, dof, p_value, obs, expected, flagged)
