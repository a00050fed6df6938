"""What the core's results look like as JSON: no NaN tokens, times as ISO 8601."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from abplatform.core.jsonable import json_safe


def test_non_finite_floats_become_null_at_any_depth() -> None:
    value = {"p": math.nan, "ci": (-math.inf, 1.5), "arms": [{"lift": math.inf}]}
    assert json_safe(value) == {"p": None, "ci": [None, 1.5], "arms": [{"lift": None}]}
    json.dumps(json_safe(value), allow_nan=False)  # strict JSON


def test_times_become_iso_8601_and_other_values_stay() -> None:
    at = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
    assert json_safe({"at": at, "n": 3, "ok": True, "name": "a"}) == {
        "at": "2026-12-03T14:00:00+00:00", "n": 3, "ok": True, "name": "a",
    }  # fmt: skip
