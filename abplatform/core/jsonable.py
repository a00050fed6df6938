"""JSON-able values from the core's results: one rule for non-finite floats and times."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any


def json_safe(x: Any) -> Any:
    """``x`` with NaN and infinities as None, datetimes as ISO 8601 text, and tuples as
    lists, recursively through dicts, lists and tuples (JSON has no NaN; ``json.dumps``
    would write the invalid token ``NaN``)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, datetime):
        return x.isoformat()
    return x
