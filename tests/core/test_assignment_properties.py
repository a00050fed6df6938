"""Properties of deterministic assignment and sticky reallocation, checked on 100,000 units.

Each property test draws weight vectors (2-5 variants, fractions) with hypothesis and checks
the property for every one of ``N_UNITS`` unit ids ``"user-0" .. "user-99999"``. Hash values
are computed once per (seed, hash version) with :func:`abplatform.core.assignment.gb_hash` and
cached; variants are then located with numpy masks (``assign_all``), which
``test_vectorised_helper_agrees_with_assign_variant_for_every_unit`` proves equivalent to
:func:`abplatform.core.assignment.assign_variant`.

Properties (labels as in the design brief):

* determinism: the same unit always gets the same variant;
* (a) after a sticky reallocation a unit changes variant only if its old variant's share
  shrank, and only into a variant whose share grew;
* (b) the moved fraction equals half the L1 distance between the weights (the minimum);
* (c) raising coverage with the same allocation moves no enrolled unit;
* (d) a fresh allocation equals GrowthBook's bucket ranges;
* (e) after reallocation each variant's measure equals its new weight to 1e-12;
* (f) a 2-arm treatment ramp 20% -> 50% moves no treatment unit out of treatment;
* (g) a new seed re-randomises independently of the old assignment;

plus chi-square checks that observed shares match the weights, including hashing.md's
80/10/10 -> 60/20/20 example, where sticky reallocation keeps every unit of the middle arm
while GrowthBook's contiguous ranges move all of them.

Statistical tests are derandomised (fixed hypothesis examples) so CI cannot flake.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, chisquare

from abplatform.core.assignment import (
    MEASURE_TOL,
    Allocation,
    assign_variant,
    covered_intervals,
    fresh_allocation,
    gb_hash,
    get_bucket_ranges,
    rerandomize_seed,
    validate_weights,
)
from abplatform.core.reallocation import minimum_moved_fraction, moved_fraction, reallocate_sticky

N_UNITS = 100_000
UNIT_IDS: tuple[str, ...] = tuple(f"user-{i}" for i in range(N_UNITS))
SEEDS: tuple[str, ...] = ("exp-checkout", "exp-ranker", "model-v2-rollout")
NOT_ENROLLED = -1

# Tolerance for an empirical fraction of the 100k units versus its exact measure. Two error
# sources: sampling, whose standard deviation is at most sqrt(0.25 / 1e5) = 0.0016, and the
# 1e-4 hash grid of v2, which shifts each interval endpoint by less than 1e-4 (a few dozen
# endpoints at most, < 0.003 in total). 0.01 is therefore > 4 SD beyond the worst-case
# quantisation, and the derandomised examples make the outcome reproducible.
EMPIRICAL_TOL = 0.01
CHI2_ALPHA = 0.001

Intervals = Sequence[Sequence[tuple[float, float]]]


# --- helpers ----------------------------------------------------------------------------------


@functools.cache
def unit_hashes(seed: str, version: int = 2) -> np.ndarray:
    """``gb_hash(seed, unit, version)`` for all ``UNIT_IDS`` (computed once, read-only)."""
    values = np.array([gb_hash(seed, unit, version) for unit in UNIT_IDS], dtype=np.float64)
    values.flags.writeable = False
    return values


def assign_all(hashes: np.ndarray, intervals: Intervals) -> np.ndarray:
    """Vectorised ``locate_variant``: variant index per unit, ``NOT_ENROLLED`` in the gap."""
    out = np.full(hashes.shape, NOT_ENROLLED, dtype=np.int64)
    for i, variant in enumerate(intervals):
        for start, end in variant:
            out[(hashes >= start) & (hashes < end)] = i
    return out


def assign_all_growthbook(hashes: np.ndarray, ranges: Sequence[tuple[float, float]]) -> np.ndarray:
    """GrowthBook's ``chooseVariation`` over contiguous ranges, vectorised."""
    return assign_all(hashes, [[r] for r in ranges])


def half_l1(old: Sequence[float], new: Sequence[float]) -> float:
    return 0.5 * math.fsum(abs(b - a) for a, b in zip(old, new, strict=True))


def normalise(raw: Sequence[float]) -> list[float]:
    total = math.fsum(raw)
    return [x / total for x in raw]


def shares(assignment: np.ndarray, num_variants: int) -> np.ndarray:
    counts = np.bincount(assignment[assignment >= 0], minlength=num_variants)
    return counts / len(assignment)


# --- strategies -------------------------------------------------------------------------------


def _raw_weights(n: int) -> st.SearchStrategy[list[float]]:
    """Percent-like integers (the realistic case) or arbitrary floats; at least one positive."""
    integers = st.lists(st.integers(0, 100), min_size=n, max_size=n)
    floats = st.lists(
        st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False), min_size=n, max_size=n
    )
    return st.one_of(integers, floats).map(lambda r: r if math.fsum(r) > 1e-6 else [1, *r[1:]])


@st.composite
def weight_vector(draw: st.DrawFn, n: int | None = None) -> list[float]:
    """One weight vector of fractions summing to 1; 2-5 variants unless ``n`` is given."""
    size = draw(st.integers(2, 5)) if n is None else n
    return normalise(draw(_raw_weights(size)))


@st.composite
def weight_history(draw: st.DrawFn, min_steps: int = 2, max_steps: int = 4) -> list[list[float]]:
    """Successive weight vectors of one experiment (same number of variants, 2-5)."""
    size = draw(st.integers(2, 5))
    steps = draw(st.integers(min_steps, max_steps))
    return [draw(weight_vector(size)) for _ in range(steps)]


def allocations_along(history: Sequence[Sequence[float]]) -> list[Allocation]:
    """Fresh allocation for the first weights, then one sticky reallocation per later step."""
    allocations = [fresh_allocation(history[0])]
    for weights in history[1:]:
        allocations.append(reallocate_sticky(allocations[-1], weights))
    return allocations


seeds = st.sampled_from(SEEDS)
hash_versions = st.sampled_from([1, 2])
coverages = st.one_of(st.integers(0, 100).map(lambda p: p / 100), st.floats(0.0, 1.0))


# --- the vectorised helper is the real thing --------------------------------------------------


def test_vectorised_helper_agrees_with_assign_variant_for_every_unit() -> None:
    allocation = reallocate_sticky(fresh_allocation([0.5, 0.3, 0.2]), [0.2, 0.5, 0.3])
    seed, version, coverage = SEEDS[0], 2, 0.7
    expected = assign_all(unit_hashes(seed, version), covered_intervals(allocation, coverage))
    actual = [
        assign_variant(unit, seed=seed, hash_version=version, allocation=allocation, coverage=0.7)
        for unit in UNIT_IDS
    ]
    assert [NOT_ENROLLED if v is None else v for v in actual] == expected.tolist()


# --- determinism ------------------------------------------------------------------------------


@settings(max_examples=4, deadline=None)
@given(weights=weight_vector(), seed=seeds, version=hash_versions, coverage=coverages)
def test_same_unit_always_gets_the_same_variant(
    weights: list[float], seed: str, version: int, coverage: float
) -> None:
    allocation = fresh_allocation(weights)
    round_tripped = Allocation.from_json(json.loads(json.dumps(allocation.to_json())))
    cached = assign_all(unit_hashes(seed, version), covered_intervals(allocation, coverage))
    recomputed = [
        assign_variant(
            unit, seed=seed, hash_version=version, allocation=round_tripped, coverage=coverage
        )
        for unit in UNIT_IDS
    ]
    assert [NOT_ENROLLED if v is None else v for v in recomputed] == cached.tolist()


def test_assignment_does_not_depend_on_the_process_or_pythonhashseed() -> None:
    code = (
        "from abplatform.core.assignment import assign_variant, fresh_allocation\n"
        "a = fresh_allocation([0.5, 0.25, 0.25])\n"
        "print([assign_variant(f'user-{i}', seed='exp-checkout', hash_version=2, "
        "allocation=a, coverage=0.9) for i in range(2000)])\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("0", "4242")
    ]
    allocation = fresh_allocation([0.5, 0.25, 0.25])
    here = [
        assign_variant(
            UNIT_IDS[i], seed="exp-checkout", hash_version=2, allocation=allocation, coverage=0.9
        )
        for i in range(2000)
    ]
    assert runs[0] == runs[1] == f"{here}\n"


@pytest.mark.parametrize("unit_id", ["", None])
def test_empty_or_missing_unit_id_is_not_enrolled(unit_id: str | None) -> None:
    allocation = fresh_allocation([0.5, 0.5])
    assert assign_variant(unit_id, seed="s", hash_version=2, allocation=allocation) is None  # type: ignore[arg-type]


def test_unknown_hash_version_is_not_enrolled() -> None:
    allocation = fresh_allocation([0.5, 0.5])
    assert assign_variant("user-1", seed="s", hash_version=3, allocation=allocation) is None


# --- (a) units move only from shrinking to growing variants ----------------------------------


@settings(max_examples=40, deadline=None)
@given(history=weight_history(), seed=seeds, version=hash_versions)
def test_a_unit_only_moves_from_a_shrunk_variant_into_a_grown_one(
    history: list[list[float]], seed: str, version: int
) -> None:
    hashes = unit_hashes(seed, version)
    allocations = allocations_along(history)
    for old, new in itertools.pairwise(allocations):
        before = assign_all(hashes, old.intervals)
        after = assign_all(hashes, new.intervals)
        old_w, new_w = np.array(old.weights), np.array(new.weights)
        shrank = new_w < old_w - MEASURE_TOL
        grew = new_w > old_w + MEASURE_TOL
        moved = before != after
        assert (before >= 0).all() and (after >= 0).all()
        assert shrank[before[moved]].all()
        assert grew[after[moved]].all()
        for i in np.flatnonzero(~shrank & ~grew):
            assert new.intervals[i] == old.intervals[i], "unchanged variant kept its intervals"


@settings(max_examples=30, deadline=None)
@given(history=weight_history(), seed=seeds, coverage=coverages)
def test_at_fixed_coverage_enrolled_units_keep_their_variant_unless_it_shrank(
    history: list[list[float]], seed: str, coverage: float
) -> None:
    hashes = unit_hashes(seed)
    allocations = allocations_along(history)
    for old, new in itertools.pairwise(allocations):
        before = assign_all(hashes, covered_intervals(old, coverage))
        after = assign_all(hashes, covered_intervals(new, coverage))
        old_w, new_w = np.array(old.weights), np.array(new.weights)
        shrank = new_w < old_w - MEASURE_TOL
        grew = new_w > old_w + MEASURE_TOL
        enrolled_before = before >= 0
        kept_arm = enrolled_before & ~shrank[np.maximum(before, 0)]
        assert (after[kept_arm] == before[kept_arm]).all()
        switched = enrolled_before & (after >= 0) & (after != before)
        assert shrank[before[switched]].all()
        assert grew[after[switched]].all()


# --- (b) the moved fraction is the minimum, half the L1 distance -----------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data(), seed=seeds)
def test_moved_fraction_equals_half_the_l1_distance_of_the_weights(
    data: st.DataObject, seed: str
) -> None:
    size = data.draw(st.integers(2, 5), label="variants")
    old_weights = data.draw(weight_vector(size), label="old")
    new_weights = data.draw(weight_vector(size), label="new")
    old = fresh_allocation(old_weights)
    new = reallocate_sticky(old, new_weights)
    minimum = half_l1(old_weights, new_weights)

    assert moved_fraction(old, new) == pytest.approx(minimum, abs=1e-9)
    assert minimum_moved_fraction(old_weights, new_weights) == pytest.approx(minimum, abs=1e-12)

    hashes = unit_hashes(seed)
    empirical = float(
        np.mean(assign_all(hashes, old.intervals) != assign_all(hashes, new.intervals))
    )
    assert abs(empirical - minimum) <= EMPIRICAL_TOL

    # GrowthBook's contiguous re-layout can never do better than the minimum.
    assert moved_fraction(old, fresh_allocation(new_weights)) >= minimum - 1e-9


def test_moved_fraction_of_an_allocation_with_itself_is_zero() -> None:
    allocation = reallocate_sticky(fresh_allocation([0.7, 0.3]), [0.4, 0.6])
    assert moved_fraction(allocation, allocation) == 0.0


# --- (c) raising coverage only enrols more ----------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    history=weight_history(min_steps=1, max_steps=3),
    seed=seeds,
    version=hash_versions,
    low=coverages,
    high=coverages,
)
def test_raising_coverage_moves_no_enrolled_unit(
    history: list[list[float]], seed: str, version: int, low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    allocation = allocations_along(history)[-1]
    hashes = unit_hashes(seed, version)
    before = assign_all(hashes, covered_intervals(allocation, low))
    after = assign_all(hashes, covered_intervals(allocation, high))
    enrolled = before >= 0
    assert (after[enrolled] == before[enrolled]).all()

    for coverage in (low, high):
        covered = covered_intervals(allocation, coverage)
        for variant, weight in zip(covered, allocation.weights, strict=True):
            measure = math.fsum(end - start for start, end in variant)
            assert measure == pytest.approx(coverage * weight, abs=1e-12)


# --- (d) a fresh allocation is GrowthBook's layout --------------------------------------------


@settings(max_examples=40, deadline=None)
@given(weights=weight_vector(), seed=seeds, version=hash_versions, coverage=coverages)
def test_fresh_allocation_equals_growthbook_bucket_ranges(
    weights: list[float], seed: str, version: int, coverage: float
) -> None:
    allocation = fresh_allocation(weights)
    ranges = get_bucket_ranges(len(weights), 1.0, weights)
    for variant, (start, end) in zip(allocation.intervals, ranges, strict=True):
        if end <= start:
            assert variant == ()
        elif variant[0][1] == 1.0:  # the last boundary is snapped to exactly 1.0
            assert variant == ((start, 1.0),) and end == pytest.approx(1.0, abs=1e-9)
        else:
            assert variant == ((start, end),)

    hashes = unit_hashes(seed, version)
    ours = assign_all(hashes, allocation.intervals)
    assert (ours == assign_all_growthbook(hashes, ranges)).all()

    # Reduced coverage: the same ranges up to float rounding; a unit may only differ if its
    # hash sits on a range end that is an ulp away from GrowthBook's.
    covered = covered_intervals(allocation, coverage)
    gb_covered = get_bucket_ranges(len(weights), coverage, weights)
    gb_ends = np.array([end for _, end in gb_covered])
    for variant, (start, end) in zip(covered, gb_covered, strict=True):
        if variant:
            assert variant[0][0] == start
            assert variant[0][1] == pytest.approx(end, abs=1e-12)
    differs = assign_all(hashes, covered) != assign_all_growthbook(hashes, gb_covered)
    for n in hashes[differs]:
        assert np.min(np.abs(gb_ends - n)) <= 1e-12


# --- (e) measures equal the new weights -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(history=weight_history(min_steps=2, max_steps=5))
def test_after_reallocation_each_variant_measure_equals_its_new_weight(
    history: list[list[float]],
) -> None:
    allocations = allocations_along(history)
    for weights, allocation in zip(history, allocations, strict=True):
        # A change of at most MEASURE_TOL counts as "unchanged"; 1e-15 covers the rounding
        # of the weights themselves (hypothesis found 1 - 0.9999999999989999 = 1.00009e-12).
        assert allocation.weights == pytest.approx(weights, abs=MEASURE_TOL + 1e-15)
        assert Allocation.from_json(json.loads(json.dumps(allocation.to_json()))) == allocation
        for variant in allocation.intervals:
            assert all(end > start for start, end in variant), "no zero-width intervals"
            assert all(a[1] != b[0] for a, b in itertools.pairwise(variant)), "touching merged"


# --- (f) the two-arm treatment ramp -----------------------------------------------------------


def test_ramping_treatment_from_20_to_50_percent_keeps_every_treatment_unit() -> None:
    hashes = unit_hashes(SEEDS[0])
    old = fresh_allocation([0.8, 0.2])
    new = reallocate_sticky(old, [0.5, 0.5])
    before, after = assign_all(hashes, old.intervals), assign_all(hashes, new.intervals)
    assert (after[before == 1] == 1).all()
    assert np.mean(before != after) == pytest.approx(0.3, abs=EMPIRICAL_TOL)
    assert moved_fraction(old, new) == pytest.approx(0.3, abs=1e-12)
    # For a growing two-arm treatment, sticky and GrowthBook's contiguous ranges agree.
    growthbook = assign_all_growthbook(hashes, get_bucket_ranges(2, 1.0, [0.5, 0.5]))
    assert (after == growthbook).all()


@settings(max_examples=30, deadline=None)
@given(
    shares_pct=st.lists(st.integers(1, 99), min_size=2, max_size=5, unique=True).map(sorted),
    seed=seeds,
    version=hash_versions,
)
def test_a_growing_two_arm_ramp_never_moves_a_treatment_unit_out(
    shares_pct: list[int], seed: str, version: int
) -> None:
    hashes = unit_hashes(seed, version)
    history = [[1 - p / 100, p / 100] for p in shares_pct]
    allocations = allocations_along(history)
    for old, new, weights in zip(allocations, allocations[1:], history[1:], strict=False):
        before, after = assign_all(hashes, old.intervals), assign_all(hashes, new.intervals)
        assert (after[before == 1] == 1).all()
        growthbook = assign_all_growthbook(hashes, get_bucket_ranges(2, 1.0, weights))
        assert (after == growthbook).all()


# --- (g) re-randomisation ---------------------------------------------------------------------


@settings(max_examples=15, deadline=None, derandomize=True)
@given(weights=weight_vector(), seed=seeds, phase=st.integers(1, 2))
def test_a_new_seed_reassigns_independently_of_the_old_assignment(
    weights: list[float], seed: str, phase: int
) -> None:
    allocation = fresh_allocation(weights)
    before = assign_all(unit_hashes(seed), allocation.intervals)
    after = assign_all(unit_hashes(rerandomize_seed(seed, phase)), allocation.intervals)
    # Independence: P(same variant) = sum_i P(old = i) P(new = i) = sum_i w_i^2.
    expected_overlap = math.fsum(w * w for w in weights)
    assert abs(float(np.mean(before == after)) - expected_overlap) <= EMPIRICAL_TOL
    for i, w in enumerate(weights):
        in_i = before == i
        if in_i.sum() >= 1000:  # share of old arm i that lands in new arm i is about w_i
            assert abs(float(np.mean(after[in_i] == i)) - w) <= 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_rerandomised_assignment_passes_a_chi_square_independence_test(seed: str) -> None:
    allocation = fresh_allocation([0.5, 0.3, 0.2])
    before = assign_all(unit_hashes(seed), allocation.intervals)
    after = assign_all(unit_hashes(rerandomize_seed(seed, 1)), allocation.intervals)
    table = np.zeros((3, 3), dtype=np.int64)
    np.add.at(table, (before, after), 1)
    assert chi2_contingency(table).pvalue > CHI2_ALPHA


def test_rerandomize_seed_keeps_phase_zero_and_derives_distinct_seeds() -> None:
    assert rerandomize_seed("exp", 0) == "exp"
    derived = {rerandomize_seed("exp", phase) for phase in range(1, 50)}
    assert len(derived) == 49 and "exp" not in derived
    with pytest.raises(ValueError, match="phase"):
        rerandomize_seed("exp", -1)


# --- chi-square: observed shares match the configured weights --------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "weights",
    [[0.5, 0.5], [0.9, 0.1], [0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25]],
    ids=lambda w: "/".join(f"{x:g}" for x in w),
)
def test_observed_shares_match_the_weights_chi_square(weights: list[float], seed: str) -> None:
    assignment = assign_all(unit_hashes(seed), fresh_allocation(weights).intervals)
    counts = np.bincount(assignment, minlength=len(weights))
    assert chisquare(counts, np.array(weights) * N_UNITS).pvalue > CHI2_ALPHA


@pytest.mark.parametrize("seed", SEEDS)
def test_sticky_80_10_10_to_60_20_20_keeps_every_middle_arm_unit(seed: str) -> None:
    """hashing.md section 4: GrowthBook's contiguous re-layout moves 100% of the middle arm."""
    hashes = unit_hashes(seed)
    old = fresh_allocation([0.8, 0.1, 0.1])
    sticky = reallocate_sticky(old, [0.6, 0.2, 0.2])
    contiguous = fresh_allocation([0.6, 0.2, 0.2])
    before = assign_all(hashes, old.intervals)
    after_sticky = assign_all(hashes, sticky.intervals)
    after_contiguous = assign_all(hashes, contiguous.intervals)

    middle = before == 1
    assert (after_sticky[middle] == 1).all()
    assert (after_contiguous[middle] != 1).all()

    counts = np.bincount(after_sticky, minlength=3)
    assert chisquare(counts, np.array([0.6, 0.2, 0.2]) * N_UNITS).pvalue > CHI2_ALPHA
    assert moved_fraction(old, sticky) == pytest.approx(0.2, abs=1e-12)
    assert moved_fraction(old, contiguous) == pytest.approx(0.3, abs=1e-12)
    assert float(np.mean(before != after_sticky)) == pytest.approx(0.2, abs=EMPIRICAL_TOL)


# --- worked examples and errors ---------------------------------------------------------------


def test_sticky_reallocation_releases_from_the_end_and_appends_to_growers() -> None:
    old = fresh_allocation([0.8, 0.1, 0.1])
    new = reallocate_sticky(old, [0.6, 0.2, 0.2])
    assert new.intervals[0] == ((0.0, pytest.approx(0.6)),)
    assert new.intervals[1] == ((0.8, 0.9), (pytest.approx(0.6), pytest.approx(0.7)))
    assert new.intervals[2] == ((0.9, 1.0), (pytest.approx(0.7), 0.8))


def test_undoing_a_two_arm_change_restores_the_original_allocation() -> None:
    old = fresh_allocation([0.8, 0.2])
    assert reallocate_sticky(reallocate_sticky(old, [0.5, 0.5]), [0.8, 0.2]) == old


def test_reallocation_can_retire_a_variant_and_add_a_new_one() -> None:
    old = fresh_allocation([0.5, 0.5])
    retired = reallocate_sticky(old, [0.5, 0.0, 0.5])
    assert retired.intervals[0] == old.intervals[0]
    assert retired.intervals[1] == ()
    assert retired.weights == pytest.approx([0.5, 0.0, 0.5], abs=1e-12)
    with pytest.raises(ValueError, match="weight 0"):
        reallocate_sticky(retired, [0.5, 0.5])


def test_unchanged_weights_return_an_identical_allocation() -> None:
    old = fresh_allocation([0.1, 0.2, 0.7])
    assert reallocate_sticky(old, [0.1, 0.2, 0.7]) == old


def test_zero_weight_variant_gets_no_interval_and_no_units() -> None:
    allocation = fresh_allocation([0.5, 0.0, 0.5])
    assert allocation.intervals[1] == ()
    assert (assign_all(unit_hashes(SEEDS[0]), allocation.intervals) != 1).all()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([], "empty"),
        ([0.5, "0.5"], r"weights\[1\] must be a number"),
        ([0.5, True], r"weights\[1\] must be a number"),
        ([float("nan"), 1.0], "finite"),
        ([1.2, -0.2], ">= 0"),
        ([0.5, 0.4], "sum"),
        ([50, 50], "percentages"),
        ("0.5", "list of fractions"),
    ],
)
def test_validate_weights_rejects_bad_input_saying_what_is_allowed(
    weights: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        validate_weights(weights)


def test_validate_weights_accepts_rounding_error_and_checks_the_variant_count() -> None:
    assert validate_weights([0.1, 0.2, 0.7]) == [0.1, 0.2, 0.7]
    assert validate_weights([1 / 3] * 3) == [1 / 3] * 3
    assert validate_weights([0.5, 0.5 + 5e-10]) == [0.5, 0.5 + 5e-10]
    with pytest.raises(ValueError, match="expected 3 weights"):
        validate_weights([0.5, 0.5], num_variants=3)


@pytest.mark.parametrize(
    ("intervals", "message"),
    [
        ((), "at least one variant"),
        ((((0.0, 0.5),), ((0.6, 1.0),)), "gap"),
        ((((0.0, 0.6),), ((0.5, 1.0),)), "overlaps"),
        ((((0.0, 0.5),), ((0.5, 0.9),)), "end at"),
        ((((0.0, 0.5), (0.5, 0.5)), ((0.5, 1.0),)), "zero-width"),
        ((((0.0, 1.5),),), "0 <= start < end <= 1"),
    ],
)
def test_invalid_allocations_are_rejected(intervals: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Allocation(intervals)


def test_allocation_from_json_rejects_malformed_data() -> None:
    with pytest.raises(ValueError):
        Allocation.from_json({"a": 1})
    with pytest.raises(ValueError):
        Allocation.from_json([[[0.0, 0.5, 0.7]], [[0.5, 1.0]]])
    with pytest.raises(ValueError):
        Allocation.from_json([[["0", 1]]])


@pytest.mark.parametrize("coverage", [-0.1, 1.1, float("nan")])
def test_coverage_outside_zero_to_one_is_rejected(coverage: float) -> None:
    with pytest.raises(ValueError, match="coverage"):
        covered_intervals(fresh_allocation([0.5, 0.5]), coverage)
