"""Deterministic unit-to-variant assignment: GrowthBook-compatible hashing plus sticky allocations.

Everything here is a pure function of its arguments (no I/O, no clocks, no randomness), so
the router, the service and offline analysis all compute the same variant for the same unit.

Sources. The hashing and bucketing functions implement the spec in
``shared/reference/hashing.md``, which was written from GrowthBook's JavaScript SDK
(``packages/sdk-js/src/util.ts``: ``hashFnv32a``, ``hash``, ``getEqualWeights``, ``inNamespace``,
``chooseVariation``, ``getBucketRanges``) and the Python SDK (``growthbook-python``
``growthbook/core.py``: ``fnv1a32``, ``gbhash``, ``getBucketRanges``). They are checked
against GrowthBook's cross-SDK vectors (``tests/data/growthbook_cases.json``). No GrowthBook
code was copied.

Units and shapes.

* A *hash value* ``n`` is a float in ``[0, 1)``: ``k / 1000`` for hash version 1 and
  ``k / 10000`` for version 2. Hash space is therefore quantised to a grid of 1e-3 (v1) or
  1e-4 (v2): the share of units a variant really receives is the number of grid points
  inside its intervals divided by the grid size, i.e. its configured weight rounded to that
  grid (off by at most one grid step per interval endpoint).
* *Weights* are FRACTIONS in ``[0, 1]`` summing to 1, one per variant, in variant order. The
  service converts from percent before calling in here.
* *Coverage* is a fraction in ``[0, 1]`` of each variant's measure that is enrolled.
* A *range* / *interval* is a half-open ``(start, end)`` pair, ``start <= n < end``.

Beyond GrowthBook: sticky allocations. GrowthBook lays the variants out as contiguous ranges
in variant order, so changing the weights of a running experiment can move most units between
arms (hashing.md section 4: 80/10/10 -> 60/20/20 moves every unit of the middle arm;
users complain about this in growthbook/growthbook#6730).
An :class:`Allocation` instead stores, per variant, an ordered list of intervals, and
:func:`abplatform.core.reallocation.reallocate_sticky` changes the weights while moving the
minimum possible measure of hash space (half the L1 distance between the old and the new
weights). :func:`fresh_allocation` reproduces GrowthBook's layout exactly, so a new experiment
assigns like GrowthBook would.

Floating point. Interval endpoints are floats. Every split point is computed once and stored
in both neighbouring intervals, so allocations tile ``[0, 1)`` *exactly* (no gaps or overlaps,
checked with ``==``). Measures are compared with :data:`MEASURE_TOL` (1e-12): a weight change
of at most that much counts as "unchanged", and no piece narrower than that is ever split
off. 1e-12 is far above accumulated rounding error (about 1e-15 for a few dozen intervals)
and eight orders of magnitude below the 1e-4 hash grid, so it never changes which variant a
real hash value lands in.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MEASURE_TOL",
    "WEIGHT_SUM_TOL",
    "Allocation",
    "assign_variant",
    "choose_variation",
    "covered_intervals",
    "fnv1a32",
    "fresh_allocation",
    "gb_hash",
    "get_bucket_ranges",
    "get_equal_weights",
    "in_namespace",
    "locate_variant",
    "rerandomize_seed",
    "validate_weights",
]

Interval = tuple[float, float]
VariantIntervals = tuple[Interval, ...]

#: Tolerance for comparing measures of hash space (see the module docstring).
MEASURE_TOL: float = 1e-12

#: How far ``sum(weights)`` may be from 1 in :func:`validate_weights`. Converting whole or
#: decimal percentages to fractions leaves errors near 1e-16, so 1e-9 accepts every honest
#: input while still rejecting real mistakes (0.9, 1.1, percentages). It is also five orders of
#: magnitude below the 1e-4 v2 hash grid, so the slack (absorbed by the last interval, which is
#: snapped to end at 1.0) never changes the variant of any hash value.
WEIGHT_SUM_TOL: float = 1e-9

_FNV_OFFSET_BASIS = 0x811C9DC5  # 2166136261
_FNV_PRIME = 0x01000193  # 16777619
_MASK32 = 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# GrowthBook-compatible primitives (hashing.md sections 1-6)
# --------------------------------------------------------------------------------------------


def fnv1a32(s: str) -> int:
    """32-bit FNV-1a of ``s`` over its UTF-16 code units; returns an int in ``[0, 2**32)``.

    Source: hashing.md section 1 (GrowthBook sdk-js ``hashFnv32a``; growthbook-python
    ``fnv1a32``). Offset basis 0x811C9DC5, prime 0x01000193, arithmetic mod 2**32.

    Code units, not code points: the JS SDK iterates ``s.charCodeAt(i)`` (UTF-16 code
    units), the Python SDK iterates ``ord(ch)`` (code points). They agree on the Basic
    Multilingual Plane but not on astral characters such as emoji. We follow JS, the
    reference implementation: a code point above U+FFFF is fed as its surrogate pair. A lone
    surrogate in a Python ``str`` is fed as itself, exactly as JS would.

    >>> fnv1a32("")
    2166136261
    >>> hex(fnv1a32("a"))
    '0xe40c292c'
    """
    h = _FNV_OFFSET_BASIS
    for ch in s:
        cp = ord(ch)
        if cp > 0xFFFF:
            cp -= 0x10000
            h = ((h ^ (0xD800 | (cp >> 10))) * _FNV_PRIME) & _MASK32
            h = ((h ^ (0xDC00 | (cp & 0x3FF))) * _FNV_PRIME) & _MASK32
        else:
            h = ((h ^ cp) * _FNV_PRIME) & _MASK32
    return h


def gb_hash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's bucketing hash: a float in ``[0, 1)``, or ``None`` for unknown versions.

    Source: hashing.md section 2 (sdk-js ``hash``; growthbook-python ``gbhash``).

    * version 1 (legacy): ``(fnv1a32(value + seed) % 1000) / 1000`` -- grid 1e-3.
    * version 2 (default for new experiments): ``(fnv1a32(str(fnv1a32(seed + value))) % 10000)
      / 10000`` -- grid 1e-4. Note the argument order differs from v1.
    * any other version: ``None``, meaning "not in the experiment".

    ``value`` is the unit id as a string; callers treat an empty id as "not enrolled" before
    hashing (see :func:`assign_variant`). ``k / 1000`` and ``k / 10000`` are the same doubles
    the other SDKs produce, so results compare exactly.
    """
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    return None


def get_equal_weights(n: int) -> list[float]:
    """``n`` equal fractions ``1/n``; ``[]`` when ``n <= 0``.

    Source: hashing.md section 3 (sdk-js ``getEqualWeights``).
    """
    if n <= 0:
        return []
    return [1.0 / n] * n


def get_bucket_ranges(
    num_variations: int, coverage: float | None, weights: list[float] | None
) -> list[tuple[float, float]]:
    """GrowthBook's contiguous bucket ranges: one half-open ``(start, end)`` per variation.

    Source: hashing.md section 4 (sdk-js ``getBucketRanges``; growthbook-python
    ``getBucketRanges``). Replicates GrowthBook's lenient input handling exactly, raising
    nothing:

    * ``coverage`` ``None`` means 1; it is clamped to ``[0, 1]``.
    * ``weights`` (fractions) fall back to equal weights when missing/empty, when their length
      is not ``num_variations``, or when their sum is outside ``[0.99, 1.01]``.

    Range ``i`` starts at the cumulative weight of variations ``0..i-1`` and is
    ``coverage * weights[i]`` wide, so changing coverage never moves a unit to another
    variation (growthbook-js PR #22). Platform code should prefer :func:`fresh_allocation` /
    :func:`covered_intervals`, which validate their inputs instead of silently falling back.
    """
    if coverage is None:
        coverage = 1.0
    coverage = min(max(coverage, 0.0), 1.0)
    equal = get_equal_weights(num_variations)
    chosen: list[float] = list(weights) if weights else equal
    if len(chosen) != num_variations:
        chosen = equal
    total = sum(chosen)
    if total < 0.99 or total > 1.01:
        chosen = equal
    cumulative = 0.0
    ranges: list[tuple[float, float]] = []
    for w in chosen:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def choose_variation(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the first range with ``start <= n < end``, or ``-1`` if none contains ``n``.

    Source: hashing.md section 5 (sdk-js ``chooseVariation``). Zero-width ranges never match;
    ``-1`` means the hash fell into a coverage gap (not in the experiment).
    """
    for i, (start, end) in enumerate(ranges):
        if start <= n < end:
            return i
    return -1


def in_namespace(unit_id: str, namespace: tuple[str, float, float]) -> bool:
    """Whether ``unit_id`` falls in ``namespace = (namespace_id, start, end)``.

    Source: hashing.md section 6 (sdk-js ``inNamespace``). Uses hash **version 1** with seed
    ``"__" + namespace_id`` and tests ``start <= n < end``. Experiments sharing a namespace
    with disjoint ``[start, end)`` slices are mutually exclusive.
    """
    namespace_id, start, end = namespace
    n = gb_hash("__" + namespace_id, unit_id, 1)
    return n is not None and start <= n < end


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def validate_weights(weights: Sequence[float], *, num_variants: int | None = None) -> list[float]:
    """Check per-variant weight FRACTIONS and return them as a list of floats (values unchanged).

    Allowed: a non-empty sequence (list, tuple, 1-d array) of real numbers (not bools), one
    per variant (exactly ``num_variants`` of them when given), each finite and ``>= 0``,
    summing to 1 within :data:`WEIGHT_SUM_TOL` (1e-9). The values are not renormalised, so
    :func:`fresh_allocation` reproduces GrowthBook's float arithmetic bit for bit.

    Raises:
        ValueError: with a message naming the offending entry or the sum and stating what is
            allowed. Weights that sum to about 100 get a hint that they look like percentages.
    """
    if isinstance(weights, str | bytes | Mapping) or not isinstance(weights, Iterable):
        raise ValueError(
            f"weights must be a list of fractions, one per variant; got {type(weights).__name__}"
        )
    items = list(weights)
    if len(items) == 0:
        raise ValueError("weights must list one fraction per variant; got an empty list")
    if num_variants is not None and len(items) != num_variants:
        raise ValueError(
            f"expected {num_variants} weights (one per variant), got {len(items)}: {items!r}"
        )
    out: list[float] = []
    for i, w in enumerate(items):
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise ValueError(f"weights[{i}] must be a number (a fraction in [0, 1]), got {w!r}")
        f = float(w)
        if not math.isfinite(f):
            raise ValueError(f"weights[{i}] is {f!r}; each weight must be a finite fraction >= 0")
        if f < 0:
            raise ValueError(f"weights[{i}] is {f!r}; each weight must be >= 0 (a fraction)")
        out.append(f)
    total = math.fsum(out)
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        hint = ""
        if abs(total - 100.0) <= 100 * WEIGHT_SUM_TOL:
            hint = " (these look like percentages; divide by 100 to get fractions)"
        raise ValueError(
            f"weights must be fractions summing to 1 (within {WEIGHT_SUM_TOL:g}); "
            f"got {out!r}, which sums to {total!r}{hint}"
        )
    return out


# --------------------------------------------------------------------------------------------
# Allocations
# --------------------------------------------------------------------------------------------


def _merge_touching(intervals: Sequence[Interval]) -> VariantIntervals:
    """Drop zero-width intervals and merge list-consecutive ones where ``end == next start``.

    Only neighbours *in list order* are merged, because the order matters: coverage walks a
    variant's intervals in order and sticky shrinking releases from the end.
    """
    merged: list[Interval] = []
    for start, end in intervals:
        if end <= start:
            continue
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


@dataclass(frozen=True)
class Allocation:
    """Per variant, a tuple of half-open [start, end) intervals of the unit hash space [0, 1).

    Together they partition [0,1); variant i's total measure equals its weight (fraction).

    ``intervals[i]`` is variant ``i``'s ordered interval list (possibly empty for a weight-0
    variant). Order is meaningful: :func:`covered_intervals` enrols the first ``coverage``
    fraction walking the list in order, and :func:`reallocate_sticky` releases measure from the
    end and appends received measure to the end.

    Invariants, checked on construction (``ValueError`` otherwise): at least one variant; every
    endpoint finite with ``0 <= start < end <= 1``; the intervals of all variants together tile
    ``[0, 1)`` exactly (sorted, the first starts at 0.0, each starts where the previous ends,
    the last ends at 1.0 -- compared with ``==``). On construction, nested lists become
    tuples, ints become floats, and list-consecutive touching intervals of a variant are merged
    (this does not change any assignment), so equal layouts compare equal.
    """

    intervals: tuple[tuple[tuple[float, float], ...], ...]

    def __post_init__(self) -> None:
        try:
            raw = [[(float(a), float(b)) for a, b in variant] for variant in self.intervals]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "allocation must be a list (per variant) of lists of [start, end] pairs of "
                f"numbers: {exc}"
            ) from exc
        if not raw:
            raise ValueError("an allocation needs at least one variant")
        for i, variant in enumerate(raw):
            for start, end in variant:
                if not (math.isfinite(start) and math.isfinite(end)):
                    raise ValueError(f"variant {i} has a non-finite endpoint in {(start, end)}")
                if not 0.0 <= start < end <= 1.0:
                    raise ValueError(
                        f"variant {i} has interval {[start, end]}; each interval needs "
                        "0 <= start < end <= 1 (zero-width intervals are not allowed)"
                    )
        normalised = tuple(_merge_touching(variant) for variant in raw)
        pieces = sorted(iv for variant in normalised for iv in variant)
        position = 0.0
        for start, end in pieces:
            if start != position:
                problem = "overlaps the previous one" if start < position else "leaves a gap"
                raise ValueError(
                    f"allocation intervals must tile [0, 1) exactly; interval {[start, end]} "
                    f"{problem} (previous coverage ends at {position!r})"
                )
            position = end
        if position != 1.0:
            raise ValueError(
                f"allocation intervals must tile [0, 1) exactly; they end at {position!r}"
            )
        object.__setattr__(self, "intervals", normalised)

    @property
    def num_variants(self) -> int:
        """Number of variants (including weight-0 ones)."""
        return len(self.intervals)

    @property
    def weights(self) -> tuple[float, ...]:
        """Measure of hash space per variant (fractions summing to 1 up to float rounding)."""
        return tuple(math.fsum(end - start for start, end in variant) for variant in self.intervals)

    def to_json(self) -> list[list[list[float]]]:
        """JSON-ready ``[[[start, end], ...], ...]``; floats round-trip exactly through JSON."""
        return [[[start, end] for start, end in variant] for variant in self.intervals]

    @classmethod
    def from_json(cls, data: Any) -> Allocation:
        """Inverse of :meth:`to_json`. Raises ``ValueError`` for malformed or invalid data."""
        if not isinstance(data, list | tuple):
            raise ValueError(f"allocation JSON must be a list of variants, got {data!r}")
        variants: list[VariantIntervals] = []
        for i, variant in enumerate(data):
            if not isinstance(variant, list | tuple):
                raise ValueError(f"variant {i} must be a list of [start, end] pairs")
            pairs: list[Interval] = []
            for pair in variant:
                if not isinstance(pair, list | tuple) or len(pair) != 2:
                    raise ValueError(f"variant {i}: expected a [start, end] pair, got {pair!r}")
                start, end = pair
                if not all(
                    isinstance(x, numbers.Real) and not isinstance(x, bool) for x in (start, end)
                ):
                    raise ValueError(f"variant {i}: endpoints must be numbers, got {pair!r}")
                pairs.append((float(start), float(end)))
            variants.append(tuple(pairs))
        return cls(tuple(variants))


def fresh_allocation(weights: Sequence[float]) -> Allocation:
    """Contiguous layout in variant order, identical to GrowthBook's ``getBucketRanges(n, 1, w)``.

    ``weights`` are fractions, validated by :func:`validate_weights` (``ValueError`` if
    invalid). Variant ``i`` gets ``[c_i, c_i + w_i)`` where ``c_i`` is the running float sum of
    the preceding weights, computed in GrowthBook's order so every boundary is the same double
    (this matters: boundaries such as ``0.1 + 0.2`` sit within an ulp of hash grid points).
    Weight-0 variants get no interval. The final endpoint is snapped to exactly 1.0 (it can be
    off by rounding, or by up to :data:`WEIGHT_SUM_TOL`); hash values never exceed 0.9999, so
    the snap changes no assignment.
    """
    ws = validate_weights(weights)
    cumulative = 0.0
    raw: list[list[Interval]] = []
    for w in ws:
        start = cumulative
        cumulative += w
        end = start + w
        raw.append([(min(start, 1.0), min(end, 1.0))])
    last_variant = max(
        (i for i, variant in enumerate(raw) if variant[0][1] > variant[0][0]),
        key=lambda i: raw[i][0][1],
    )
    start, _ = raw[last_variant][0]
    raw[last_variant][0] = (start, 1.0)
    return Allocation(tuple(_merge_touching(variant) for variant in raw))


def covered_intervals(allocation: Allocation, coverage: float) -> tuple[VariantIntervals, ...]:
    """Per variant, the enrolled part: the first ``coverage`` fraction of its measure.

    Walks each variant's intervals in order, taking whole intervals until the remaining
    budget ``coverage * measure`` is smaller than the next interval, then a prefix of that one.
    Hash values outside the result are in the coverage gap (not enrolled).

    For a :func:`fresh_allocation` this is GrowthBook's ``getBucketRanges(n, coverage,
    weights)`` (zero-width ranges omitted): each covered range starts at the variant's
    cumulative start. At coverage 1 the allocation is returned unchanged, bit-exact with
    GrowthBook. Below 1 the covered end is ``start + coverage * (end - start)``, whereas
    GrowthBook computes ``start + coverage * weight``; ``end - start`` can differ from the
    configured weight by an ulp (e.g. ``(0.1 + 0.2) - 0.1 != 0.2``), so an end can differ by
    about 1e-16. That only matters for a hash value lying exactly on such an end: over 3,000
    random percent-valued weight vectors and coverages, 645 of 30 million v2 grid points
    (about 2e-5) landed differently from GrowthBook. Assignment stays self-consistent within
    this platform, which is what matters for stickiness.

    Because the walk is monotone in ``coverage``, raising coverage only adds enrolled units
    and never moves an enrolled unit to another variant.

    Raises:
        ValueError: if ``coverage`` is not a finite fraction in ``[0, 1]`` (unlike
            :func:`get_bucket_ranges`, which clamps silently).
    """
    if not (isinstance(coverage, numbers.Real) and math.isfinite(coverage)):
        raise ValueError(f"coverage must be a finite fraction in [0, 1], got {coverage!r}")
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"coverage must be a fraction in [0, 1], got {coverage!r}")
    if coverage == 1.0:
        return allocation.intervals
    result: list[VariantIntervals] = []
    for variant, measure in zip(allocation.intervals, allocation.weights, strict=True):
        remaining = coverage * measure
        taken: list[Interval] = []
        for start, end in variant:
            if remaining <= 0.0:
                break
            width = end - start
            if remaining >= width:
                taken.append((start, end))
                remaining -= width
            else:
                taken.append((start, start + remaining))
                remaining = 0.0
        result.append(_merge_touching(taken))
    return tuple(result)


def locate_variant(n: float, intervals: Sequence[Sequence[tuple[float, float]]]) -> int | None:
    """Index of the variant whose intervals contain hash value ``n`` (half-open), else ``None``.

    ``intervals`` has the shape of :attr:`Allocation.intervals` or of
    :func:`covered_intervals`' result.
    """
    for i, variant in enumerate(intervals):
        for start, end in variant:
            if start <= n < end:
                return i
    return None


def assign_variant(
    unit_id: str,
    *,
    seed: str,
    hash_version: int,
    allocation: Allocation,
    coverage: float = 1.0,
) -> int | None:
    """Variant index for ``unit_id``, or ``None`` when the unit is not enrolled.

    ``n = gb_hash(seed, unit_id, hash_version)`` (hashing.md section 7 step 6), then the
    variant whose :func:`covered_intervals` contain ``n``. Returns ``None`` for an empty unit
    id, an unknown hash version, or a hash in the coverage gap. ``seed`` is normally the
    experiment key, or :func:`rerandomize_seed` of it for a re-randomised phase. A caller that
    assigns many units under one configuration computes ``covered_intervals`` once and calls
    :func:`assign_to_ranges`.

    Raises:
        ValueError: if ``coverage`` is not a fraction in ``[0, 1]``.
    """
    ranges = covered_intervals(allocation, coverage)
    return assign_to_ranges(unit_id, seed=seed, hash_version=hash_version, ranges=ranges)


def assign_to_ranges(
    unit_id: str,
    *,
    seed: str,
    hash_version: int,
    ranges: Sequence[Sequence[tuple[float, float]]],
) -> int | None:
    """:func:`assign_variant` with the enrolled ranges (``covered_intervals``) precomputed."""
    if not unit_id:
        return None
    n = gb_hash(seed, unit_id, hash_version)
    if n is None:
        return None
    return locate_variant(n, ranges)


def rerandomize_seed(old_seed: str, phase: int) -> str:
    """Seed for experiment phase ``phase``: the alternative to sticky reallocation.

    GrowthBook's answer to a weight change is a new phase with a new seed (or
    ``bucketVersion``), which re-randomises every unit independently of the old split
    (issues #6730, #4918). Phase 0 returns ``old_seed`` unchanged (GrowthBook's default seed is
    the experiment key); phase ``k >= 1`` returns ``f"{old_seed}|phase={k}|"``. The trailing
    ``|`` keeps phase seeds prefix-free (``…phase=1|`` vs ``…phase=12|``), since the hash
    concatenates seed and unit id without a separator. Pass the experiment's *base* seed, not
    a previous phase's seed.

    Raises:
        ValueError: if ``phase`` is negative or not an int.
    """
    if isinstance(phase, bool) or not isinstance(phase, int) or phase < 0:
        raise ValueError(f"phase must be an int >= 0, got {phase!r}")
    if phase == 0:
        return old_seed
    return f"{old_seed}|phase={phase}|"
