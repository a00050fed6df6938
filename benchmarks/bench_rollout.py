"""Benchmark: one rollout controller evaluation on N logged requests, against the stats
report of the same phase in the same process (the baseline).

The evaluation is what the controller runs for each ramping rollout at every tick
(:func:`abplatform.core.rollout_evidence.gather_evidence` + the decision, on the phase
data fetched from the rollups). Both read the same rollups; the ratio says how much a
controller tick adds next to a dashboard refresh. Data: ``bench_report``'s (an embedded
PostgreSQL under ``/tmp/abplatform-bench``, made on first use). Run::

    .venv/bin/python -m benchmarks.bench_rollout [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from abplatform import service
from abplatform.core.rollout import RolloutPlan, RolloutState, default_margins
from abplatform.core.rollout_decision import evaluate
from abplatform.service.reports import build_report
from abplatform.store import queries
from benchmarks.bench_report import _r, console, open_data, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    db, name = open_data(args.rows)
    plan = RolloutPlan(steps=(50.0, 60.0), min_duration_s=0, margins=default_margins(False))

    def controller_evaluation() -> object:
        with db.sessions() as s:
            config = service.get_experiment(s, name)
            datas = queries.fetch_phases_data(s, config, [config.current_phase])
        state = RolloutState("ramping", 0, config.current_phase.started_at, (1,))
        return evaluate(config, datas, plan, state, datetime.now(UTC))

    def report() -> object:
        with db.sessions() as s:
            return build_report(s, name)

    controller_evaluation()
    report()
    eval_s, eval_runs = timed(controller_evaluation, args.repeat)
    report_s, report_runs = timed(report, args.repeat)
    console.print(f"rows: {args.rows:,} requests ({args.rows // 10:,} units)")
    console.print(f"controller evaluation   {eval_s:7.3f} s  runs {_r(eval_runs)}")
    console.print(f"stats report (baseline) {report_s:7.3f} s  runs {_r(report_runs)}")
    console.print(f"ratio evaluation / report {eval_s / report_s:5.2f}x")
    db.dispose()


if __name__ == "__main__":
    main()
