"""Import historical per-unit experiment results from a CSV file.

One row per unit: a unit id column, a variant column and one or more metric columns. The
rows become a concluded experiment (``source="import"``): each unit's exposure is written to
the per-unit rollup the report reads (``unit_totals``, with no requests) and each metric
value is an outcome record (:class:`~abplatform.core.records.OutcomeRecord`) written
through the log store, so the same report runs on it. No request rows are invented.
Booleans (TRUE/FALSE, true/false, yes/no) are read as 1/0.

Bad rows are never dropped silently: each is counted under its reason and a few examples
are kept. Reasons: unknown variant (empty, or not among the declared treatments), unit in
two variants (all of that unit's rows are excluded), duplicate unit (rows after the first),
non-numeric or out-of-range metric (|value| > 1e12), missing unit id.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

from abplatform.core.errors import InvalidInputError
from abplatform.core.records import OutcomeRecord
from abplatform.core.views import ExperimentView
from abplatform.service import experiments as service
from abplatform.settings import METRIC_VALUE_LIMIT
from abplatform.store import logstore, rollups

BOOLEANS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "t": 1.0, "f": 0.0}


@dataclass
class ImportResult:
    """What an import read, kept and rejected (rows are CSV data rows)."""

    experiment: str
    rows_read: int
    units_imported: int
    units_by_variant: dict[str, int]
    bad_rows: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        """Total rows rejected, over all reasons."""
        return sum(self.bad_rows.values())


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if text.lower() in BOOLEANS:
        return BOOLEANS[text.lower()]
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) and abs(x) <= METRIC_VALUE_LIMIT else None


def parse_rows(
    frame: pd.DataFrame,
    *,
    unit_col: str,
    variant_col: str,
    control: str,
    metrics: Sequence[str],
    treatments: Sequence[str] | None = None,
) -> tuple[list[tuple[str, str, list[float]]], Counter[str], dict[str, list[int]]]:
    """Validate rows; return ``(kept (unit, variant, values), bad counts, examples)``.

    Example row numbers are 1-based data rows (the header is row 0), at most 5 per reason.

    Raises:
        InvalidInputError: a named column is missing (lists the columns present).
    """
    missing = [c for c in (unit_col, variant_col, *metrics) if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"column(s) {', '.join(missing)} not in the file; columns: {', '.join(frame.columns)}"
        )
    allowed = {control, *treatments} if treatments else None
    bad: Counter[str] = Counter()
    examples: dict[str, list[int]] = {}

    def reject(reason: str, row: int) -> None:
        bad[reason] += 1
        examples.setdefault(reason, [])
        if len(examples[reason]) < 5:
            examples[reason].append(row)

    candidates: dict[str, list[tuple[int, str, list[float]]]] = {}
    units = frame[unit_col].astype("string").str.strip()
    variants = frame[variant_col].astype("string").str.strip()
    values = frame[list(metrics)].to_numpy(dtype=object)
    for i in range(len(frame)):
        row = i + 1
        unit, variant = units.iat[i], variants.iat[i]
        if unit is pd.NA or not unit:
            reject("missing unit id", row)
            continue
        if variant is pd.NA or not variant or (allowed is not None and variant not in allowed):
            reject("unknown variant", row)
            continue
        nums = [_number(v) for v in values[i]]
        if any(n is None for n in nums):
            reject("non-numeric or out-of-range metric (|value| > 1e12)", row)
            continue
        candidates.setdefault(unit, []).append((row, variant, nums))  # type: ignore[arg-type]
    kept: list[tuple[str, str, list[float]]] = []
    for unit, entries in candidates.items():
        if len({v for _, v, _ in entries}) > 1:
            for row, _, _ in entries:
                reject("unit in two variants", row)
            continue
        row, variant, nums = entries[0]
        for dup_row, _, _ in entries[1:]:
            reject("duplicate unit", dup_row)
        kept.append((unit, variant, nums))
    return kept, bad, examples


def _write_units(
    session: Session,
    view: ExperimentView,
    kept: Sequence[tuple[str, str, list[float]]],
    metrics: Sequence[str],
) -> None:
    """Write each kept unit's exposure and metric values, then commit and analyse."""
    ids = {v.key: v.id for v in view.variants}
    phase_id = view.current_phase.id
    now = datetime.now(UTC)
    conn = session.connection()
    rollups.add_exposures(
        conn, view.id, phase_id, [(unit, ids[variant]) for unit, variant, _ in kept]
    )
    logstore.write_records(
        conn,
        [],
        [
            OutcomeRecord(f"import:{view.id}:{i}:{j}", view.id, phase_id, None, unit, metric,
                          nums[j], now)
            for i, (unit, _, nums) in enumerate(kept)
            for j, metric in enumerate(metrics)
        ],
    )  # fmt: skip
    session.commit()
    logstore.analyze(session.connection())
    session.commit()


def import_csv(
    session: Session,
    path: Path,
    *,
    experiment: str,
    unit_col: str,
    variant_col: str,
    control: str,
    metrics: Sequence[str],
    treatments: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
    actor: str = "import",
) -> ImportResult:
    """Load a per-unit CSV into a new concluded experiment, in one transaction.

    The first metric is the experiment's primary metric. ``weights`` (percent, in the
    order control then treatments as they first appear) is the intended split; default
    equal.

    Raises:
        InvalidInputError: unreadable file, missing column, no usable rows,
            control value absent. service.ConflictError: the experiment name exists.
    """
    if not metrics:
        raise InvalidInputError("give at least one --metric column")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    kept, bad, examples = parse_rows(
        frame,
        unit_col=unit_col,
        variant_col=variant_col,
        control=control,
        metrics=metrics,
        treatments=treatments,
    )
    seen = list(dict.fromkeys(v for _, v, _ in kept))
    if control not in seen:
        raise InvalidInputError(
            f"no usable row has the control value '{control}' in column '{variant_col}'; "
            f"values found: {', '.join(seen) or 'none'}"
        )
    ordered = [control, *[v for v in (treatments or seen) if v != control and v in seen]]
    view = service.create_imported_experiment(
        session,
        experiment,
        ordered,
        control,
        weights=weights,
        primary_metric=metrics[0],
        actor=actor,
        description=f"imported from {Path(path).name}",
    )
    _write_units(session, view, kept, metrics)
    return ImportResult(
        experiment=experiment,
        rows_read=len(frame),
        units_imported=len(kept),
        units_by_variant=dict(Counter(v for _, v, _ in kept)),
        bad_rows=bad,
        examples=examples,
    )
