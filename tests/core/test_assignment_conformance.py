"""Conformance of abplatform.core.assignment with GrowthBook's cross-SDK test vectors.

Every vector of the ``hash``, ``getBucketRange``, ``chooseVariation``, ``getEqualWeights`` and
``inNamespace`` sections of ``tests/data/growthbook_cases.json`` (GrowthBook
``packages/sdk-js/test/cases.json``, specVersion 0.8.0, MIT) runs as its own test, named after
the vector. As in GrowthBook's ``json.test.ts``, bucket ranges and equal weights are compared
after ``floor(x * 1e8) / 1e8``; hash values compare exactly. A pinned digest guards against
silent changes of the hash itself (user_needs.md item 4: an SDK upgrade that changes hashing
re-buckets users).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from abplatform.core.assignment import (
    choose_variation,
    fnv1a32,
    gb_hash,
    get_bucket_ranges,
    get_equal_weights,
    in_namespace,
)

CASES_PATH = Path(__file__).resolve().parents[1] / "data" / "growthbook_cases.json"
CASES: dict[str, Any] = json.loads(CASES_PATH.read_text(encoding="utf-8"))


def _floor8(x: float) -> float:
    """GrowthBook's float comparison: floor to 8 decimals."""
    return math.floor(x * 1e8) / 1e8


def _hash_id(case: list[Any]) -> str:
    seed, value, version, _expected = case
    return f"v{version} seed={seed!r} value={value!r}"


# --- the vectors file itself ---------------------------------------------------------------


def test_vectors_file_is_growthbook_spec_0_8_0() -> None:
    assert CASES["specVersion"] == "0.8.0"


@pytest.mark.parametrize(
    ("section", "count"),
    [
        ("hash", 15),
        ("getBucketRange", 13),
        ("chooseVariation", 13),
        ("getEqualWeights", 6),
        ("inNamespace", 16),
    ],
)
def test_every_vector_of_the_section_is_collected(section: str, count: int) -> None:
    """Guards against a truncated or edited copy silently running fewer vectors."""
    assert len(CASES[section]) == count


# --- FNV-1a ----------------------------------------------------------------------------------


def test_fnv1a32_of_empty_string_is_the_offset_basis() -> None:
    assert fnv1a32("") == 2166136261


def test_fnv1a32_of_a_matches_the_published_value() -> None:
    assert fnv1a32("a") == 0xE40C292C


def test_fnv1a32_hashes_utf16_code_units_like_the_js_sdk() -> None:
    """U+1F600 is hashed as its surrogate pair D83D DE00, as JS ``charCodeAt`` sees it.

    The expected values were produced by GrowthBook's JS formula run in Node.js.
    """
    assert fnv1a32("😀") == 3409036472
    assert fnv1a32("a😀bé") == 1137757240
    assert fnv1a32("😀") == fnv1a32("\ud83d\ude00")


def test_fnv1a32_is_an_unsigned_32_bit_integer() -> None:
    for s in ["", "a", "user-123", "x" * 1000, "😀" * 50]:
        assert 0 <= fnv1a32(s) < 2**32


# --- hash --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["hash"], ids=[_hash_id(c) for c in CASES["hash"]])
def test_hash_matches_growthbook_vector(case: list[Any]) -> None:
    seed, value, version, expected = case
    assert gb_hash(seed, value, version) == expected


# sha256 of the comma-joined ``round(n * 10000)`` values; the same digest was produced by
# GrowthBook's JS formula (``hashFnv32a`` over ``charCodeAt``) run in Node.js.
GOLDEN_V2_DIGEST = "50e6266f096b19e7be3a4b369239e9ffba19020fb3547916d83ab1d0a4c1a297"


def test_hash_v2_of_100k_ids_is_pinned() -> None:
    """Digest of ``gb_hash("abplatform-golden", f"user-{i}", 2)`` for i < 100,000.

    If this fails, the hash changed and every running experiment would re-bucket its users.
    """
    values = ",".join(
        str(round(gb_hash("abplatform-golden", f"user-{i}", 2) * 10000)) for i in range(100_000)
    )
    digest = hashlib.sha256(values.encode()).hexdigest()
    assert digest == GOLDEN_V2_DIGEST


@pytest.mark.parametrize("version", [0, 3, -1, 99])
def test_hash_of_an_unknown_version_is_none(version: int) -> None:
    assert gb_hash("seed", "unit", version) is None


@pytest.mark.parametrize(("version", "grid"), [(1, 1000), (2, 10000)])
def test_hash_values_lie_on_the_version_grid_in_unit_interval(version: int, grid: int) -> None:
    for i in range(2000):
        n = gb_hash("grid-check", f"user-{i}", version)
        assert n is not None
        assert 0.0 <= n < 1.0
        assert n == round(n * grid) / grid


# --- getBucketRange --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", CASES["getBucketRange"], ids=[c[0] for c in CASES["getBucketRange"]]
)
def test_bucket_ranges_match_growthbook_vector(case: list[Any]) -> None:
    _name, (num_variations, coverage, weights), expected = case
    actual = get_bucket_ranges(num_variations, coverage, weights)
    assert [[_floor8(a), _floor8(b)] for a, b in actual] == [
        [_floor8(a), _floor8(b)] for a, b in expected
    ]


# --- chooseVariation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", CASES["chooseVariation"], ids=[c[0] for c in CASES["chooseVariation"]]
)
def test_choose_variation_matches_growthbook_vector(case: list[Any]) -> None:
    _name, n, ranges, expected = case
    assert choose_variation(n, [tuple(r) for r in ranges]) == expected


# --- getEqualWeights -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", CASES["getEqualWeights"], ids=[f"n={c[0]}" for c in CASES["getEqualWeights"]]
)
def test_equal_weights_match_growthbook_vector(case: list[Any]) -> None:
    n, expected = case
    assert [_floor8(w) for w in get_equal_weights(n)] == [_floor8(w) for w in expected]


# --- inNamespace -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["inNamespace"], ids=[c[0] for c in CASES["inNamespace"]])
def test_in_namespace_matches_growthbook_vector(case: list[Any]) -> None:
    _name, unit_id, (namespace_id, start, end), expected = case
    assert in_namespace(unit_id, (namespace_id, start, end)) is expected
