"""Sticky reallocation: change a running experiment's split weights while moving the
fewest units possible (see :mod:`abplatform.core.assignment` for the allocation model).

GrowthBook lays the variants out as contiguous ranges in variant order, so a weight change
can move most units between arms (80/10/10 → 60/20/20 moves every unit of the middle arm;
growthbook/growthbook#6730). :func:`reallocate_sticky` moves the minimum, half the L1
distance between the old and new weights, and only out of shrinking variants into growing
ones; :func:`moved_fraction` measures what any change moves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from abplatform.core.assignment import (
    MEASURE_TOL,
    Allocation,
    Interval,
    _merge_touching,
    validate_weights,
)

__all__ = ["minimum_moved_fraction", "moved_fraction", "reallocate_sticky"]


def minimum_moved_fraction(old_weights: Sequence[float], new_weights: Sequence[float]) -> float:
    """Half the L1 distance between two weight vectors (fractions; shorter one padded with 0).

    This is the least measure of hash space that any re-layout must move: every variant whose
    share shrinks by ``d`` must lose at least ``d``. :func:`reallocate_sticky` attains it.
    """
    n = max(len(old_weights), len(new_weights))
    old = list(old_weights) + [0.0] * (n - len(old_weights))
    new = list(new_weights) + [0.0] * (n - len(new_weights))
    return 0.5 * math.fsum(abs(b - a) for a, b in zip(old, new, strict=True))


def reallocate_sticky(old: Allocation, new_weights: Sequence[float]) -> Allocation:
    """Change the weights while moving the least possible measure of hash space.

    ``new_weights`` are fractions validated by :func:`validate_weights`; there must be one per
    existing variant, or more (variants appended at the end start with no intervals). To retire
    a variant, give it weight 0. Raises ``ValueError`` otherwise.

    Algorithm (all in variant-index order, so the result is deterministic):

    1. ``delta_i = new_i - measure_i``. Variants with ``|delta_i| <= MEASURE_TOL`` are
       unchanged and keep their intervals exactly.
    2. Each shrinking variant releases ``-delta_i`` from the END of its interval list (whole
       intervals, then a suffix of the last one kept). Released pieces form a pool, sorted by
       position and merged where they touch.
    3. Each growing variant takes ``delta_i`` from the front of the pool and appends the
       pieces to the end of its list; the last growing variant takes whatever is left, which
       absorbs rounding.
    4. Touching list-consecutive intervals are merged and zero-width ones dropped.

    Consequences (proved by ``tests/core/test_assignment_properties.py``): a unit changes variant
    only if its old variant shrank, and only into one that grew; the moved measure is
    :func:`minimum_moved_fraction` (half the L1 distance of the weights), the least possible;
    each variant's measure equals its new weight to ``MEASURE_TOL``. Because growers only
    append and shrinkers only truncate, the enrolled part at any fixed coverage of a growing
    variant only gains units and that of a shrinking variant only loses them.

    This preserves units' arms, not independence: units that stay were enrolled under the old
    weights (GrowthBook's maintainers warn that results mixing phases can be biased). Start a
    new phase with :func:`rerandomize_seed` when an unbiased fresh split is needed.
    """
    old_measures = old.weights
    n_old = len(old_measures)
    new = validate_weights(new_weights)
    if len(new) < n_old:
        raise ValueError(
            f"expected at least {n_old} weights (one per existing variant), got {len(new)}; "
            "give a retired variant weight 0 instead of removing it"
        )
    measures = list(old_measures) + [0.0] * (len(new) - n_old)
    lists: list[list[Interval]] = [list(v) for v in old.intervals] + [
        [] for _ in range(len(new) - n_old)
    ]
    deltas = [w - m for w, m in zip(new, measures, strict=True)]
    shrinking = [i for i, d in enumerate(deltas) if d < -MEASURE_TOL]
    growing = [i for i, d in enumerate(deltas) if d > MEASURE_TOL]
    if not shrinking or not growing:
        # Only sub-tolerance changes (the weights still sum to 1 within rounding).
        return Allocation(tuple(tuple(v) for v in lists))

    pool: list[Interval] = []
    for i in shrinking:
        pool.extend(_release_from_end(lists[i], -deltas[i]))
    pool = list(_merge_touching(sorted(pool)))
    for k, i in enumerate(growing):
        if k == len(growing) - 1:
            lists[i].extend(pool)  # the last grower absorbs rounding
            break
        lists[i].extend(_take_from_front(pool, deltas[i]))
    return Allocation(tuple(_merge_touching(v) for v in lists))


def _release_from_end(kept: list[Interval], amount: float) -> list[Interval]:
    """Remove measure ``amount`` from the end of ``kept`` (in place); return the pieces."""
    released: list[Interval] = []
    while kept and amount > MEASURE_TOL:
        start, end = kept[-1]
        width = end - start
        if width <= amount + MEASURE_TOL:
            released.append(kept.pop())
            amount -= width
        else:
            cut = end - amount
            kept[-1] = (start, cut)
            released.append((cut, end))
            amount = 0.0
    return released


def _take_from_front(pool: list[Interval], amount: float) -> list[Interval]:
    """Remove measure ``amount`` from the front of ``pool`` (in place); return the pieces."""
    taken: list[Interval] = []
    while pool and amount > MEASURE_TOL:
        start, end = pool[0]
        width = end - start
        if width <= amount + MEASURE_TOL:
            taken.append(pool.pop(0))
            amount -= width
        else:
            cut = start + amount
            taken.append((start, cut))
            pool[0] = (cut, end)
            amount = 0.0
    return taken


def moved_fraction(old: Allocation, new: Allocation) -> float:
    """Exact measure of hash space whose variant differs between ``old`` and ``new``.

    Computed at coverage 1 by sweeping the union of both allocations' endpoints; variant
    indices are compared as-is (an index present in only one allocation always differs).
    Returns a fraction in ``[0, 1]``.
    """

    def segments(allocation: Allocation) -> list[tuple[float, float, int]]:
        return sorted(
            (start, end, i)
            for i, variant in enumerate(allocation.intervals)
            for start, end in variant
        )

    a, b = segments(old), segments(new)
    i = j = 0
    position = 0.0
    moved: list[float] = []
    while i < len(a) and j < len(b):
        end = min(a[i][1], b[j][1])
        if a[i][2] != b[j][2]:
            moved.append(end - position)
        position = end
        if a[i][1] == end:
            i += 1
        if b[j][1] == end:
            j += 1
    return math.fsum(moved)
