"""In-memory traffic for the core's tests: units with requests and feedback, turned into
the :class:`~abplatform.core.metrics.PhaseData` the store would return, computed here
independently with numpy (per-unit sums, then sums, squares and products over units).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from abplatform.core.metrics import (
    FEEDBACK_PAIR,
    RATIO_PAIRS,
    FeedbackData,
    Moments,
    PhaseData,
    VariantData,
)
from abplatform.core.stats import LatencyHistogram
from abplatform.core.views import ExperimentView, PhaseView, VariantView

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class Req(NamedTuple):
    """One request as the router logs it: the assigned variant's outcome (``ok``,
    ``error``, ``timeout`` or ``rejected``), its latency (ms), whether the control
    served it as a fallback, and its cost (USD; None: an app without a price) and billed
    seconds."""

    status: str
    latency_ms: float
    fallback: bool = False
    cost_usd: float | None = 0.0
    billed_s: float = 0.0


@dataclass
class Unit:
    """One unit's traffic in a phase: ``requests`` as (succeeded, latency ms) pairs or
    :class:`Req` records, and feedback values per metric."""

    variant: str
    requests: list[tuple[bool, float] | Req] = field(default_factory=list)
    feedback: dict[str, list[float]] = field(default_factory=dict)

    def logged(self) -> list[Req]:
        """The requests as :class:`Req` records."""
        return [
            r if isinstance(r, Req) else Req("ok" if r[0] else "error", r[1]) for r in self.requests
        ]


def _moments(columns: dict[str, np.ndarray], pairs: Sequence[tuple[str, str]]) -> Moments:
    n = len(next(iter(columns.values())))
    return Moments(
        n,
        {c: float(v.sum()) for c, v in columns.items()},
        {c: float((v * v).sum()) for c, v in columns.items()},
        {(a, b): float((columns[a] * columns[b]).sum()) for a, b in pairs},
    )


def variant_data(units: Sequence[Unit]) -> VariantData:
    """The :class:`VariantData` of ``units`` (all of one variant)."""
    if not units:
        return VariantData()
    logs = [u.logged() for u in units]
    status = [np.array([r.status for r in log], dtype=object) for log in logs]
    ok = [st == "ok" for st in status]
    lat = [np.array([r.latency_ms for r in log], dtype=float) for log in logs]

    def per_unit(values: Iterable[float]) -> np.ndarray:
        return np.array(list(values), dtype=float)

    cols = {
        "requests": per_unit(len(st) for st in status),
        "errors": per_unit(np.isin(st, ("error", "timeout")).sum() for st in status),
        "successes": per_unit(o.sum() for o in ok),
        "latency_ms": per_unit(x[o].sum() for o, x in zip(ok, lat, strict=True)),
        "valid_requests": per_unit((st != "rejected").sum() for st in status),
        "rejected": per_unit((st == "rejected").sum() for st in status),
        "fallbacks": per_unit(sum(r.fallback for r in log) for log in logs),
        "billed_s": per_unit(
            sum(r.billed_s for r in log if r.status != "rejected") for log in logs
        ),
        "cost_usd": per_unit(
            sum(r.cost_usd or 0.0 for r in log if r.status != "rejected") for log in logs
        ),
        "unpriced": per_unit(
            sum(r.cost_usd is None and r.status != "rejected" for r in log) for log in logs
        ),
    }
    ok_latencies = np.concatenate([x[o] for o, x in zip(ok, lat, strict=True)] or [[]])
    feedback: dict[str, FeedbackData] = {}
    for metric in sorted({m for u in units for m in u.feedback}):
        rated = [u.feedback[metric] for u in units if u.feedback.get(metric)]
        fb = {
            "value": np.array([sum(v) for v in rated], dtype=float),
            "count": np.array([len(v) for v in rated], dtype=float),
        }
        binary = all(len(v) == 1 and v[0] in (0.0, 1.0) for v in rated)
        feedback[metric] = FeedbackData(_moments(fb, [FEEDBACK_PAIR]), binary)
    return VariantData(
        requests=_moments(cols, RATIO_PAIRS),
        latency=LatencyHistogram.from_values(ok_latencies),
        feedback=feedback,
    )


def phase_data(
    units: Iterable[Unit], *, phase: int = 1, keys: Sequence[str] = ("control", "treatment")
) -> PhaseData:
    """The :class:`PhaseData` of ``units`` (every variant in ``keys``, empty if no units)."""
    units = list(units)
    return PhaseData(phase, {k: variant_data([u for u in units if u.variant == k]) for k in keys})


def experiment(
    *,
    keys: Sequence[str] = ("control", "treatment"),
    weights: Sequence[float] = (50.0, 50.0),
    primary: str = "error_rate",
    guardrails: Sequence[str] = ("error_rate", "latency_p95"),
    source: str = "live",
    status: str = "running",
    phases: Sequence[Sequence[float]] | None = None,
) -> ExperimentView:
    """An :class:`ExperimentView` (the first key is the control; weights in percent;
    ``phases`` lists each phase's weights, default one phase at ``weights``)."""
    all_phases = [list(p) for p in (phases or [weights])]
    return ExperimentView(
        id=1,
        name="exp",
        description="",
        status=status,
        hash_seed="seed",
        hash_version=2,
        coverage=100.0,
        primary_metric=primary,
        guardrails=tuple(guardrails),
        fallback_to_control=False,
        source=source,
        winner=None,
        version=1,
        created_at=T0,
        updated_at=T0,
        variants=tuple(
            VariantView(
                i + 1, k, f"v{i + 1}", f"abplatform/model-v{i + 1}", i == 0, all_phases[-1][i]
            )
            for i, k in enumerate(keys)
        ),
        phases=tuple(
            PhaseView(n + 1, n + 1, tuple(p), "seed", 100.0, "", T0, None)
            for n, p in enumerate(all_phases)
        ),
    )


def simulate(
    rng: np.random.Generator,
    *,
    units: int = 400,
    p_error: tuple[float, float] = (0.05, 0.02),
    lat: tuple[float, float] = (3.8, 3.6),
    thumbs: tuple[float, float] = (0.4, 0.6),
    keys: tuple[str, str] = ("control", "treatment"),
) -> list[Unit]:
    """Units alternating between two variants, 1–8 requests each, with per-variant error
    rate, lognormal(lat, 0.4) latency (ms) and a 0/1 thumbs-up on about half of the
    successful requests with the variant's probability."""
    out = []
    for u in range(units):
        arm = u % 2
        unit = Unit(keys[arm])
        for _ in range(int(rng.integers(1, 9))):
            ok = rng.random() >= p_error[arm]
            unit.requests.append((ok, float(rng.lognormal(lat[arm], 0.4))))
            if ok and rng.random() < 0.5:
                unit.feedback.setdefault("thumbs_up", []).append(float(rng.random() < thumbs[arm]))
        out.append(unit)
    return out
