"""``abplatform demo``: the user's loop, end to end, on the local stack.

1. Start the stack (embedded PostgreSQL, backends, local fal queue, router).
2. Create an experiment: model-v1 (control) against model-v2, 50/50, and start it.
3. Send real image-generation requests to the router over HTTP from many units with a
   skewed activity (a few heavy users, many light ones; Zipf weights), and post thumbs-up
   feedback for about half of them (simulated raters who prefer v2).
4. Print the stats report; promote the better version.
5. Send more requests and show that every one went to the winner; check that the log has
   exactly one row per request.
6. Safe rollouts (:mod:`abplatform.local.demo_rollout`): a healthy version ramps and is
   promoted, a regressed one is rolled back, by the controller inside the router.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from abplatform import service
from abplatform.cli.render import render
from abplatform.core.report import Report
from abplatform.local.demo_rollout import BACKENDS as ROLLOUT_BACKENDS
from abplatform.local.demo_rollout import CONTROLLER_ENV, run_rollout_demo
from abplatform.local.falcloud import DEFAULT_BACKENDS
from abplatform.local.stack import LocalStack
from abplatform.service.reports import build_report

PROMPTS = (
    "a lighthouse at dawn", "a red fox in snow", "isometric city block", "a bowl of ramen",
    "a watercolor of mountains", "a robot reading a book", "a sailboat on a calm sea",
)  # fmt: skip
#: Simulated raters: probability of a thumbs-up per model version.
THUMBS_UP_PROBABILITY = {"v1": 0.40, "v2": 0.70}
FEEDBACK_PROBABILITY = 0.5


@dataclass
class TrafficResult:
    """What one burst of traffic produced."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    missing_model_version: int = 0
    by_variant: Counter[str] = field(default_factory=Counter)
    feedback: int = 0
    seconds: float = 0.0


def unit_ids(n_units: int, n_requests: int, rng: np.random.Generator) -> list[str]:
    """``n_requests`` unit ids drawn from ``n_units`` users with Zipf(1.1) activity."""
    ranks = np.arange(1, n_units + 1, dtype=float)
    p = ranks**-1.1
    p /= p.sum()
    picks = rng.choice(n_units, size=n_requests, p=p)
    return [f"user-{i:04d}" for i in picks]


async def send_traffic(
    router_url: str,
    experiment: str,
    units: list[str],
    *,
    rng: np.random.Generator,
    concurrency: int,
    progress: Progress,
    label: str,
    feedback: bool = True,
) -> TrafficResult:
    """Send one request per entry of ``units`` to the router; post feedback for some."""
    result = TrafficResult()
    task = progress.add_task(label, total=len(units))
    sem = asyncio.Semaphore(concurrency)
    draws = rng.random((len(units), 2))
    started = time.perf_counter()

    async def one(client: httpx.AsyncClient, i: int, unit: str) -> None:
        body = {
            "experiment": experiment,
            "unit_id": unit,
            "arguments": {"prompt": PROMPTS[i % len(PROMPTS)], "seed": i, "num_inference_steps": 2},
        }
        async with sem:
            r = await client.post(f"{router_url}/", json=body)
            result.sent += 1
            if r.status_code != 200:
                result.failed += 1
            else:
                data: dict[str, Any] = r.json()
                result.ok += 1
                version = data.get("model_version")
                if not version:
                    result.missing_model_version += 1
                result.by_variant[data.get("variant", "?")] += 1
                if feedback and draws[i, 0] < FEEDBACK_PROBABILITY:
                    liked = float(draws[i, 1] < THUMBS_UP_PROBABILITY.get(version, 0.5))
                    fb = await client.post(
                        f"{router_url}/feedback",
                        json={
                            "request_id": data["request_id"],
                            "metric": "thumbs_up",
                            "value": liked,
                        },
                    )
                    fb.raise_for_status()
                    result.feedback += 1
        progress.advance(task)

    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        await asyncio.gather(*(one(client, i, u) for i, u in enumerate(units)))
    result.seconds = time.perf_counter() - started
    return result


def choose_winner(report: Report) -> tuple[str, str]:
    """The variant to promote and why: the report's decision, else the primary-metric leader."""
    d = report.decision
    if d.action == "ship" and d.variant:
        return d.variant, f"the report says ship {d.variant}"
    if d.action == "roll back" and d.variant:
        return d.variant, "the report says roll back to the control"
    primary = report.metric(report.primary_metric)
    best = max(primary.comparisons, key=lambda c: c.difference or 0.0)
    control = next(v.key for v in report.variants if v.is_control)
    if (best.difference or 0.0) > 0:
        return best.variant, f"not yet significant; {best.variant} leads on {primary.metric}"
    return control, f"not yet significant; nothing beats {control} on {primary.metric}"


def create_demo_experiment(stack: LocalStack, name: str) -> None:
    """Create and start *model-v1 (control) vs model-v2, 50/50*, primary metric thumbs-up."""
    assert stack.db is not None
    spec = service.ExperimentSpec(
        name=name,
        description="Does model-v2 get more thumbs-up than model-v1?",
        variants=[
            service.VariantSpec(
                key="control", model_version="v1", backend_app_id="abplatform/model-v1",
                is_control=True,
            ),
            service.VariantSpec(
                key="treatment", model_version="v2", backend_app_id="abplatform/model-v2"
            ),
        ],
        weights=[50, 50],
        primary_metric="thumbs_up",
        guardrails=["error_rate"],
    )  # fmt: skip
    with stack.db.sessions() as s:
        service.create_experiment(s, spec, actor="demo")
        service.start_experiment(s, name, actor="demo")


def run_traffic(
    stack: LocalStack, name: str, units: list[str], rng: np.random.Generator, *,
    concurrency: int, label: str, console: Console, feedback: bool = True,
) -> TrafficResult:  # fmt: skip
    """Send one request per entry of ``units`` with a progress bar; flush the router's log."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        result = asyncio.run(
            send_traffic(
                stack.router_url, name, units, rng=rng, concurrency=concurrency,
                progress=progress, label=label, feedback=feedback,
            )
        )  # fmt: skip
    _flush(stack.router_url)
    return result


def check_demo(
    first: TrafficResult, second: TrafficResult, winner: str, after_promotion: int,
    logged_first: int, logged_total: int,
) -> None:  # fmt: skip
    """Raise :class:`RuntimeError` naming every check the run failed."""
    problems = []
    if first.missing_model_version or second.missing_model_version:
        problems.append("some responses lacked model_version")
    if logged_first != first.sent or logged_total != first.sent + second.sent:
        problems.append("request log row count differs from requests sent")
    if set(second.by_variant) != {winner} or second.ok != after_promotion:
        problems.append("not every request after the promotion went to the winner")
    if first.failed or second.failed:
        problems.append(f"{first.failed + second.failed} requests failed")
    if problems:
        raise RuntimeError("demo check failed: " + "; ".join(problems))


def run_demo(
    home: Path,
    *,
    requests: int = 1000,
    after_promotion: int = 100,
    units: int = 300,
    concurrency: int = 4,
    seed: int = 7,
    console: Console | None = None,
    rollouts: bool = True,
) -> dict[str, Any]:
    """Run the user's loop end to end and return its key figures (also printed).

    Raises:
        RuntimeError: a step did not produce what it should (the message says which).
    """
    console = console or Console()
    rng = np.random.default_rng(seed)
    name = f"model-v2-rollout-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    console.rule("[bold]abplatform demo")
    backends = {**DEFAULT_BACKENDS, **(ROLLOUT_BACKENDS if rollouts else {})}
    with LocalStack(home, extra_router_env=CONTROLLER_ENV, backends=backends) as stack:
        assert stack.db is not None
        console.print(f"stack up: router {stack.router_url}, database {_safe(stack.db.url)}")
        create_demo_experiment(stack, name)
        console.print(f"created and started experiment [bold]{name}[/] (v1 control vs v2, 50/50)")
        first = run_traffic(
            stack, name, unit_ids(units, requests, rng), rng, concurrency=concurrency,
            label="experiment traffic", console=console,
        )  # fmt: skip
        console.print(
            f"sent {first.sent:,} requests in {first.seconds:.1f} s ({first.ok:,} ok, "
            f"{first.failed} failed), {first.feedback:,} feedback; by variant: "
            f"{dict(first.by_variant)}; responses without model_version: "
            f"{first.missing_model_version}"
        )
        with stack.db.sessions() as s:
            report = build_report(s, name)
        render(report, console)
        winner, why = choose_winner(report)
        with stack.db.sessions() as s:
            service.promote(s, name, winner, actor="demo")
            logged_first = sum(service.request_counts(s, name).values())
        console.print(f"promoted [bold green]{winner}[/] ({why})")
        time.sleep(stack.config_ttl_s * 2 + 0.5)  # the router refreshes its config
        second = run_traffic(
            stack, name, unit_ids(units, after_promotion, rng), rng, concurrency=concurrency,
            label="after promotion", console=console, feedback=False,
        )  # fmt: skip
        with stack.db.sessions() as s:
            logged_total = sum(service.request_counts(s, name).values())
        all_winner = set(second.by_variant) == {winner} and second.ok == after_promotion
        console.print(
            f"after promotion: {second.ok}/{after_promotion} requests served by "
            f"{dict(second.by_variant)} → all to the winner: {all_winner}"
        )
        console.print(
            f"request log: {first.sent:,} requests in → {logged_first:,} rows; "
            f"{first.sent + second.sent:,} in total → {logged_total:,} rows"
        )
        check_demo(first, second, winner, after_promotion, logged_first, logged_total)
        ramp = run_rollout_demo(stack, console, rng=rng) if rollouts else None
    if ramp is not None:
        console.print(f"safe rollouts: {ramp.requests:,} requests in {ramp.seconds:.0f} s")
        for view in ramp.rollouts.values():
            line = f"  {view.experiment}: rollout [bold]{view.status}[/] at {view.step_label}"
            console.print(f"{line}: {(view.last_action or {}).get('code', '')}")
    console.rule("[bold green]demo complete: stack stopped")
    return {
        "experiment": name,
        "requests": first.sent,
        "rows": logged_first,
        "winner": winner,
        "after_promotion": dict(second.by_variant),
        "decision": report.decision.action,
        "rollouts": {n: v.status for n, v in ramp.rollouts.items()} if ramp else {},
    }


def _flush(router_url: str) -> None:
    httpx.post(f"{router_url}/flush", json={}, timeout=60.0).raise_for_status()


def _safe(url: str) -> str:
    return url.split("?")[0] + ("?host=<socket>" if "?host=" in url else "")
