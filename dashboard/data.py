"""What the pages show, loaded through the services (:mod:`abplatform.service`; no SQL
here), via the process-wide result store.

The report, the cumulative lift and the latency histogram of one experiment are
computed concurrently (each on its own database session) and stored with the data
watermark they were computed from; see :mod:`dashboard.store` for when they are
recomputed.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from abplatform import service
from abplatform.core.analysis import pick_phase
from abplatform.core.report import Correction, Engine, Method, Report
from abplatform.service import reports
from abplatform.service.database import Database
from abplatform.service.reports import CumulativeLift, ExperimentActivity, LastChange, LatencyBin
from dashboard import context


@dataclass(frozen=True)
class AnalysisSettings:
    """How to analyse: engine, test method (None: the experiment's default, sequential
    when live, fixed horizon when imported), significance level, correction, phase
    (None: the report's default), all phases pooled as strata, and the metric of the
    cumulative chart (None: the primary)."""

    method: Method | None = None
    alpha: float = 0.05
    correction: Correction = "holm"
    phase: int | None = None
    chart_metric: str | None = None
    engine: Engine = "frequentist"
    all_phases: bool = False


DEFAULT_SETTINGS = AnalysisSettings()


@dataclass(frozen=True)
class ExperimentResults:
    """Everything the results section of the experiment page draws.

    ``previous`` is the report of the phase before the analysed one (when the report is
    of a single, later phase), shown beside it. ``computed_at`` is when the oldest part
    was computed (UTC); ``stale`` says newer data exist and are being analysed in the
    background.
    """

    report: Report
    cumulative: CumulativeLift | None
    latency: list[LatencyBin]
    computed_at: datetime
    stale: bool
    previous: Report | None = None


@dataclass(frozen=True)
class OverviewRow:
    """One experiment on the overview page."""

    view: service.ExperimentView
    activity: ExperimentActivity | None
    last_change: LastChange | None
    report: Report | None


def analysed_phase(view: service.ExperimentView, number: int | None) -> service.PhaseView:
    """The phase the report analyses for ``number`` (None: the report's default; for an
    all-phases report, the charts show this default phase)."""
    return pick_phase(view, number)


def _report_key(db: Database, view: service.ExperimentView, s: AnalysisSettings) -> tuple:
    return (
        "report", db.url, view.name, view.version, s.engine, s.method, s.alpha, s.correction,
        s.phase, s.all_phases,
    )  # fmt: skip


def _build_report(db: Database, name: str, s: AnalysisSettings) -> Report:
    with db.sessions() as session:
        return reports.build_report(
            session,
            name,
            phase=s.phase,
            method=s.method,
            alpha=s.alpha,
            correction=s.correction,
            engine=s.engine,
            all_phases=s.all_phases,
        )


def _previous(
    db: Database, view: service.ExperimentView, s: AnalysisSettings, mark: Hashable
) -> Report | None:
    """The report of the phase before the analysed one, under the same settings."""
    if s.all_phases:
        return None
    number = reports.previous_phase(view, analysed_phase(view, s.phase).number)
    if number is None:
        return None
    before = replace(s, phase=number)
    [stored] = context.store().get_many(
        [(_report_key(db, view, before), mark, lambda: _build_report(db, view.name, before))],
        refresh_s=context.refresh_s(),
    )
    return stored.value


def experiment_results(view: service.ExperimentView, s: AnalysisSettings) -> ExperimentResults:
    """Report, cumulative lift and latency histogram of ``view`` under ``s``.

    Raises:
        service.ServiceError: e.g. a phase that does not exist.
    """
    db = context.database()
    phase = analysed_phase(view, s.phase)
    metric = s.chart_metric or view.primary_metric
    with db.sessions() as session:
        mark = reports.watermark(session, view.id)

    def cumulative() -> CumulativeLift:
        with db.sessions() as session:
            return reports.cumulative_lift(session, view, phase, metric, alpha=s.alpha)

    def latency() -> list[LatencyBin]:
        with db.sessions() as session:
            return reports.latency_distribution(session, view, phase)

    base = (db.url, view.name, view.version, phase.number)
    requests = [(_report_key(db, view, s), mark, lambda: _build_report(db, view.name, s))]
    if view.source == "live":  # imported experiments have outcomes but no requests
        requests += [
            (("cumulative", *base, metric, s.alpha), mark, cumulative),
            (("latency", *base), mark, latency),
        ]
    stored = context.store().get_many(requests, refresh_s=context.refresh_s())
    return ExperimentResults(
        report=stored[0].value,
        cumulative=stored[1].value if len(stored) > 1 else None,
        latency=stored[2].value if len(stored) > 2 else [],
        computed_at=datetime.fromtimestamp(min(x.computed_at for x in stored), UTC),
        stale=any(x.stale for x in stored),
        previous=_previous(db, view, s, mark),
    )


def _report_or_none(db: Database, name: str) -> Report | None:
    """The default report, or None if it fails: one broken experiment must not take the
    whole overview down (its own page shows the error)."""
    try:
        return _build_report(db, name, DEFAULT_SETTINGS)
    except Exception:
        logging.getLogger(__name__).exception("report of %s failed", name)
        return None


def overview() -> list[OverviewRow]:
    """Every experiment, newest first, with its activity, last change and (when it has
    data) its report under the default settings."""
    db = context.database()
    with db.sessions() as session:
        views = service.list_experiments(session)
        acts = reports.activity(session)
        changes = reports.last_changes(session)
    with_data = [v for v in views if v.id in acts]
    stored = context.store().get_many(
        [
            (
                _report_key(db, v, DEFAULT_SETTINGS),
                acts[v.id].watermark,
                lambda name=v.name: _report_or_none(db, name),
            )
            for v in with_data
        ],
        refresh_s=context.refresh_s(),
    )
    by_id = {v.id: x.value for v, x in zip(with_data, stored, strict=True)}
    return [OverviewRow(v, acts.get(v.id), changes.get(v.id), by_id.get(v.id)) for v in views]


def experiment_names() -> list[str]:
    """Names of all experiments, newest first."""
    with context.session() as session:
        return [v.name for v in service.list_experiments(session)]


def experiment(name: str) -> service.ExperimentView:
    """One experiment (raises :class:`service.NotFoundError`)."""
    with context.session() as session:
        return service.get_experiment(session, name)


def audit_entries(name: str) -> list[dict]:
    """The experiment's audit log, oldest first."""
    with context.session() as session:
        return service.audit_log(session, name)
