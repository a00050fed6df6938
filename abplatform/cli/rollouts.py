"""``abplatform rollout ...`` (create, list, show, pause, resume, override) and
``abplatform controller`` (the rollout controller as a process of its own)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from abplatform import service
from abplatform.cli.common import ACTOR, console, database, fail, parse_weights, run_service
from abplatform.core import metrics as catalogue
from abplatform.core.rollout import (
    DEFAULT_MARGINS,
    RolloutPlan,
    RolloutView,
    default_margins,
    format_regression,
    format_value,
    parse_margin,
)
from abplatform.service import rollouts

rollout_app = typer.Typer(help="Safe rollouts: staged ramps that advance on evidence.",
                          no_args_is_help=True)  # fmt: skip

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m`` or ``1h``; exits 2 otherwise."""
    m = _DURATION.match(text)
    if not m:
        fail(f"duration must look like 90, 90s, 10m or 1h, got {text!r}")
        raise AssertionError
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def build_plan(
    steps: str, min_duration: str, min_units: int, margins: list[str], promote_when: str,
    alpha: float, fallback: bool,
) -> RolloutPlan:  # fmt: skip
    """The plan from the command line: the default serving margins, each replaced or
    added by a ``--margin``."""
    chosen = {m.metric: m for m in default_margins(fallback)}
    try:
        for text in margins:
            m = parse_margin(text)
            chosen[m.metric] = m
        return RolloutPlan(
            steps=tuple(parse_weights(steps)), min_duration_s=parse_duration(min_duration),
            min_units=min_units, margins=tuple(chosen.values()),
            promote_when=promote_when,  # type: ignore[arg-type]
            alpha=alpha,
        ).validate()  # fmt: skip
    except service.InvalidInputError as exc:
        fail(str(exc))
        raise


@rollout_app.command("create")
def rollout_create(
    name: Annotated[str, typer.Argument(help="A draft or running experiment (two variants).")],
    steps: Annotated[str, typer.Option(help="Treatment share per step, percent.")] = "5,25,50",
    min_duration: Annotated[str, typer.Option(help="Each step at least: 90s, 10m, 1h.")] = "10m",
    min_units: Annotated[int, typer.Option(help="Treatment units each step needs.")] = 100,
    margin: Annotated[
        list[str] | None,
        typer.Option(
            help="Guardrail margin, e.g. latency_p95=10%, error_rate=1pt, "
            "latency_p99=250ms; repeatable (defaults: "
            + ", ".join(f"{m.metric}={m.amount()}" for m in DEFAULT_MARGINS.values())
            + ")."
        ),
    ] = None,
    promote_when: Annotated[
        str,
        typer.Option(
            help="win: the primary metric must be better at the last step; "
            "safe: guardrails within their margins suffice."
        ),
    ] = "win",
    advance_when: Annotated[
        str,
        typer.Option(
            help="within_margin: each step shows every guardrail within its "
            "margin; no_regression: none beyond it suffices (low traffic)."
        ),
    ] = "within_margin",
    alpha: Annotated[float, typer.Option(help="Error rate of the rollout's decisions.")] = 0.05,
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Put an experiment on a ramp: the first step's weights now (sticky; a draft is
    started), then the controller advances, rolls back or promotes on evidence."""
    view = run_service(service.get_experiment, name)
    plan = build_plan(steps, min_duration, min_units, margin or [], promote_when, alpha,
                      view.fallback_to_control)  # fmt: skip
    plan = dataclasses.replace(plan, advance_when=advance_when)  # type: ignore[arg-type]
    try:
        plan.validate()
    except service.InvalidInputError as exc:
        fail(str(exc))
    print_rollout(run_service(rollouts.create_rollout, name, plan, actor=actor))


@rollout_app.command("list")
def rollout_list() -> None:
    """Every rollout, newest first."""
    table = Table("experiment", "status", "step", "last decision", "updated (UTC)")
    for r in run_service(rollouts.list_rollouts):
        last = r.last_action or {}
        table.add_row(r.experiment, r.status, r.step_label, str(last.get("kind", "")),
                      f"{r.updated_at:%Y-%m-%d %H:%M:%S}")  # fmt: skip
    console.print(table)


@rollout_app.command("show")
def rollout_show(
    name: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """A rollout's plan, state, last decision and its figures."""
    view = run_service(rollouts.get_rollout, name)
    if as_json:
        print(json.dumps(dataclasses.asdict(view), default=str, indent=2))
        return
    print_rollout(view)


def print_rollout(view: RolloutView) -> None:
    """Render a rollout: plan, state, the last decision and each guardrail's figures."""
    p = view.plan
    console.print(
        f"[bold]{escape(view.experiment)}[/]  rollout [cyan]{view.status}[/]  {view.step_label}"
        f"  version={view.version}  steps {' → '.join(f'{s:g}%' for s in p.steps)} → 100%"
    )
    console.print(
        f"each step ≥ {p.min_duration_s:g} s and ≥ {p.min_units} treatment units; advance "
        f"when {p.advance_when.replace('_', ' ')}; promote when {p.promote_when}; α {p.alpha:g}",
        highlight=False,
    )
    console.print("margins: " + "; ".join(m.describe() for m in p.margins), highlight=False,
                  soft_wrap=True)  # fmt: skip
    if view.note:
        console.print(f"note: {escape(view.note)}")
    last = view.last_action
    if not last:
        console.print("not evaluated yet")
        return
    console.print(
        f"last decision ({last.get('at', '?')}): [bold]{last['kind']}[/] — "
        f"{escape(last['reason'])}", highlight=False,
    )  # fmt: skip
    if last.get("next_check_at") and view.status == "ramping":  # paused or ended: no check
        console.print(f"next check: {last['next_check_at']}")
    evidence = last.get("evidence") or {}
    table = Table("guardrail", "margin", "control", "treatment", "regression", "bounds", "verdict")
    for g in evidence.get("guardrails", []):
        unit = catalogue.metric(g["metric"]).unit
        kind = g["margin"]["kind"]

        def reg(x: float | None, unit: str = unit, kind: str = kind) -> str:
            return format_regression(x, kind, unit, signed=True)

        table.add_row(
            g["metric"], reg(g["margin"]["value"]), format_value(g["control_value"], unit),
            format_value(g["treatment_value"], unit), reg(g["regression"]),
            f"{reg(g['lower'])} … {reg(g['upper'])}", g["verdict"],
        )  # fmt: skip
    console.print(table)


@rollout_app.command("pause")
def rollout_pause(
    name: str,
    reason: Annotated[str, typer.Option(help="Why (kept with the rollout and audited).")] = "",
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Pause a rollout: the controller leaves its weights alone until resumed."""
    print_rollout(run_service(rollouts.pause_rollout, name, actor=actor, reason=reason))


@rollout_app.command("resume")
def rollout_resume(name: str, actor: Annotated[str, ACTOR] = "cli") -> None:
    """Resume a paused rollout."""
    print_rollout(run_service(rollouts.resume_rollout, name, actor=actor))


@rollout_app.command("override")
def rollout_override(
    name: str,
    action: Annotated[str, typer.Argument(help="advance, roll_back or promote")],
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "",
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Advance, roll back or promote now, whatever the evidence says (audited)."""
    view = run_service(rollouts.override_rollout, name, action, actor=actor, reason=reason)
    print_rollout(view)


def controller_cmd(
    interval: Annotated[float, typer.Option(help="Seconds between evaluations.")] = 3.0,
    lease: Annotated[float, typer.Option(help="Lease time to live, seconds.")] = 10.0,
) -> None:
    """Run the rollout controller in this process until Ctrl-C (or SIGTERM). With routers
    running theirs too, exactly one acts at a time (a lease row in the database)."""
    import signal
    import time

    from abplatform.service.controller import RolloutController

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    with database() as db:
        controller = RolloutController(db, interval_s=interval, lease_s=lease)
        console.print(f"rollout controller {controller.holder}: every {interval:g} s, lease "
                      f"{lease:g} s (Ctrl-C to stop)")  # fmt: skip
        try:
            controller.start()
            seen = 0
            while True:
                for name, kind, reason in controller.stats.actions[seen:]:
                    console.print(f"{escape(name)}: [bold]{kind}[/] — {escape(reason)}",
                                  highlight=False)  # fmt: skip
                seen = len(controller.stats.actions)
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping (handing the lease over)…")
        finally:
            controller.stop()
