"""Reports: fetch a phase's sufficient statistics from the store, analyse them in the core.

:func:`build_report` is ``fetch_phase_data`` + ``analyze``; :func:`cumulative_lift` and
:func:`latency_distribution` give the dashboard's charts from the same definitions;
:func:`activity`, :func:`last_changes` and :func:`watermark` feed the overview and caches.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from abplatform.core.analysis import AnalysisSettings, analyze, comparable_phases, pick_phase
from abplatform.core.report import Correction, Engine, Method, Report
from abplatform.core.series import (
    CumulativeLift,
    LatencyBin,
)
from abplatform.core.series import (
    cumulative_lift as cumulative_from_slices,
)
from abplatform.core.series import (
    latency_distribution as latency_bins,
)
from abplatform.core.views import ExperimentView, PhaseView
from abplatform.store import experiments as repo
from abplatform.store import queries, series
from abplatform.store.queries import ExperimentActivity, LastChange, Watermark


def build_report(
    session: Session,
    name: str,
    *,
    phase: int | None = None,
    method: Method | None = None,
    alpha: float = 0.05,
    correction: Correction = "holm",
    include_multi_exposure: bool = False,
    engine: Engine = "frequentist",
    all_phases: bool = False,
) -> Report:
    """The stats report of experiment ``name`` (default phase: see
    :func:`abplatform.core.analysis.pick_phase`; ``all_phases``: every phase with a
    comparison, pooled as strata); arguments as
    :class:`~abplatform.core.analysis.AnalysisSettings` (``method`` None: sequential for a
    live experiment, fixed horizon for an imported one).

    Raises:
        NotFoundError: unknown experiment. InvalidInputError: bad phase, engine, method,
            alpha or correction, or both a phase and all phases.
    """
    settings = AnalysisSettings(
        method=method,
        alpha=alpha,
        correction=correction,
        phase=phase,
        include_multi_exposure=include_multi_exposure,
        engine=engine,
        all_phases=all_phases,
    ).validate()
    config = repo.to_view(repo.load(session, name))
    if settings.all_phases:
        phases = comparable_phases(config)
    else:
        phases = (pick_phase(config, settings.phase),)
    datas = queries.fetch_phases_data(
        session, config, phases, include_multi=settings.include_multi_exposure
    )
    return analyze(config, datas, settings)


def previous_phase(view: ExperimentView, phase: int) -> int | None:
    """The phase before ``phase`` when that one had a comparison (two or more variants
    with traffic weight), else None. Views show its result beside a newer phase's."""
    before = next((p for p in view.phases if p.number == phase - 1), None)
    if before is None or sum(w > 0 for w in before.weights) < 2:
        return None
    return before.number


def previous_report(session: Session, name: str, report: Report, **settings: Any) -> Report | None:
    """The report of the phase before ``report``'s (see :func:`previous_phase`) under the
    same ``settings`` (keyword arguments of :func:`build_report`); None for an all-phases
    report or when there is no such phase."""
    if report.all_phases:
        return None
    number = previous_phase(repo.to_view(repo.load(session, name)), report.phase)
    if number is None:
        return None
    return build_report(session, name, phase=number, **settings)


def cumulative_lift(
    session: Session,
    experiment: ExperimentView,
    phase: PhaseView,
    metric: str,
    *,
    alpha: float = 0.05,
    buckets: int = series.DEFAULT_TIME_BUCKETS,
    include_multi: bool = False,
    now: datetime | None = None,
) -> CumulativeLift:
    """The relative lift of each treatment over the control on ``metric``, cumulatively
    over ``buckets`` equal time buckets of ``phase`` (from its start to its end, or to
    ``now`` while it runs), with the always-valid confidence sequence at ``1 - alpha``.
    The last point equals the report's lift and lift CI for the same phase and metric."""
    slices = series.fetch_cumulative(
        session, experiment, phase, metric, buckets=buckets, include_multi=include_multi, now=now
    )
    return cumulative_from_slices(experiment, metric, slices, phase=phase.number, alpha=alpha)


def latency_distribution(
    session: Session, experiment: ExperimentView, phase: PhaseView, *, bins_per_decade: int = 20
) -> list[LatencyBin]:
    """The report's latency histogram per variant, merged into ``bins_per_decade`` bins
    per decade (see :func:`abplatform.core.series.latency_distribution`)."""
    data = queries.fetch_phase_data(session, experiment, phase)
    return latency_bins(experiment, data, bins_per_decade=bins_per_decade)


def activity(session: Session) -> dict[int, ExperimentActivity]:
    """Logged units, requests and feedback of every experiment with data, by id."""
    return queries.activity(session)


def last_changes(session: Session) -> dict[int, LastChange]:
    """The newest audit entry of every experiment, by id."""
    return queries.last_changes(session)


def watermark(session: Session, experiment_id: int) -> Watermark:
    """A fingerprint of the data a report of the experiment sees (a cache key)."""
    return queries.watermark(session, experiment_id)


__all__ = [
    "CumulativeLift",
    "ExperimentActivity",
    "LastChange",
    "LatencyBin",
    "Watermark",
    "activity",
    "build_report",
    "cumulative_lift",
    "last_changes",
    "latency_distribution",
    "previous_phase",
    "previous_report",
    "watermark",
]
