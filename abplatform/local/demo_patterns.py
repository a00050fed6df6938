"""``abplatform demo --scenario patterns``: the routing patterns of fal's multi-app guide
on the local stack, measured.

1. Start the stack (embedded PostgreSQL, the model-v1/model-v2 diffusers apps, the
   upscale and remove-background apps, the local fal gateway, the router).
2. Create an experiment for large images: the control generates at full size on
   model-v2 (an H100 app); the treatment is a **pipeline**: model-v1 (an A100 app) at
   64×64 → upscale ×2 → remove background. Primary metric: cost per request; guardrails:
   error rate and thumbs-up (the cheaper pipeline ships only if users like it as much).
3. Create a **route** by input size: ``width * height <= 4096`` (small) → model-v1 alone;
   else → the experiment. (Locally images are tiny; on fal the same rule reads
   ``<= 1048576`` and sends large images to an H100 app.)
4. Send real requests through the route from many users, small and large images, with
   simulated thumbs-up feedback on the large ones.
5. Print traffic per rule (requests, latency, cost per 1k requests), the experiment's
   report (cost with intervals, pipeline steps, the verdict), and check that every small
   image went to model-v1, every large one into the experiment, and that the log has
   one row per request.
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

from abplatform import service
from abplatform.cli.render import render, route_table
from abplatform.core import wording
from abplatform.core.report import Report
from abplatform.local.demo import PROMPTS, unit_ids
from abplatform.local.stack import LocalStack
from abplatform.service.reports import build_report

SMALL, LARGE = (64, 64), (128, 128)
#: Simulated raters: probability of a thumbs-up per variant of the large-image experiment.
THUMBS_UP = {"control": 0.55, "treatment": 0.60}


@dataclass
class RouteTraffic:
    """What the patterns demo's traffic produced."""

    sent: int = 0
    failed: int = 0
    by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)
    wrong: int = 0
    feedback: int = 0
    seconds: float = 0.0


def create_patterns(stack: LocalStack, stamp: str) -> tuple[str, str]:
    """Create and start the large-image experiment, then the route; return their names."""
    assert stack.db is not None
    experiment, route = f"large-images-{stamp}", f"images-{stamp}"
    pipeline = [
        service.StepSpec(app="abplatform/upscale", inputs={"image_url": "image.url"},
                         arguments={"scale": 2}),
        service.StepSpec(app="abplatform/remove-background", inputs={"image_url": "image.url"}),
    ]  # fmt: skip
    spec = service.ExperimentSpec(
        name=experiment,
        description="Large images: generate on an H100, or small on an A100 then upscale?",
        variants=[
            service.VariantSpec(key="control", model_version="v2-full",
                                backend_app_id="abplatform/model-v2", is_control=True),
            service.VariantSpec(key="treatment", model_version="v1-upscaled",
                                backend_app_id="abplatform/model-v1",
                                arguments={"width": SMALL[0], "height": SMALL[1]}, steps=pipeline),
        ],
        primary_metric="cost_per_request",
        guardrails=["error_rate", "thumbs_up"],
    )  # fmt: skip
    rules = [
        service.RuleSpec(name="small", when=f"width * height <= {SMALL[0] * SMALL[1]}",
                         app="abplatform/model-v1"),
        service.RuleSpec(name="large", experiments=[experiment]),
    ]  # fmt: skip
    arguments = {"width": service.ArgumentSpec(type="number", default=64),
                 "height": service.ArgumentSpec(type="number", default=64)}  # fmt: skip
    with stack.db.sessions() as s:
        service.create_experiment(s, spec, actor="demo")
        service.start_experiment(s, experiment, actor="demo")
        service.create_route(s, service.RouteSpec(name=route, arguments=arguments, rules=rules),
                             actor="demo")  # fmt: skip
    return experiment, route


async def send_route_traffic(
    router_url: str, route: str, units: list[str], *, rng: np.random.Generator,
    concurrency: int,
) -> RouteTraffic:  # fmt: skip
    """One request per entry of ``units`` through ``route``, half small and half large
    images; thumbs-up feedback on about half of the large ones."""
    out = RouteTraffic()
    sem = asyncio.Semaphore(concurrency)
    draws = rng.random((len(units), 3))
    started = time.perf_counter()

    async def one(client: httpx.AsyncClient, i: int, unit: str) -> None:
        width, height = SMALL if draws[i, 0] < 0.5 else LARGE
        args = {"prompt": PROMPTS[i % len(PROMPTS)], "seed": i, "num_inference_steps": 2,
                "width": width, "height": height}  # fmt: skip
        async with sem:
            r = await client.post(f"{router_url}/", json={"route": route, "unit_id": unit,
                                                          "arguments": args})  # fmt: skip
            out.sent += 1
            if r.status_code != 200:
                out.failed += 1
                return
            body: dict[str, Any] = r.json()
            served = body["variant"] if body.get("experiment") else body["backend_app"]
            out.by_rule[(body["rule"], served)] += 1
            large = (width, height) == LARGE
            out.wrong += (body["rule"] == "large") != large
            if large and body.get("in_experiment") and draws[i, 1] < 0.5:
                liked = float(draws[i, 2] < THUMBS_UP[body["variant"]])
                fb = await client.post(
                    f"{router_url}/feedback",
                    json={"request_id": body["request_id"], "metric": "thumbs_up", "value": liked},
                )
                fb.raise_for_status()
                out.feedback += 1

    async with httpx.AsyncClient(timeout=120.0) as client:
        await asyncio.gather(*(one(client, i, u) for i, u in enumerate(units)))
    out.seconds = time.perf_counter() - started
    return out


def cost_line(report: Report) -> str:
    """Cost per 1k requests next to latency, per variant, and the verdict, in one line."""
    parts = [
        f"{v.key} ({v.model_version}): "
        f"{wording.usd_k_interval(v.cost_per_request, v.cost_per_request_ci)} per 1k requests, "
        f"p50 {wording.num(v.latency_p50_ms)} ms"
        for v in report.variants
    ]
    return "; ".join(parts) + f" → verdict: {wording.decision_text(report)}"


def check_patterns(traffic: RouteTraffic, logged: int, report: Report) -> None:
    """Raise :class:`RuntimeError` naming every check the run failed."""
    problems = []
    if traffic.failed:
        problems.append(f"{traffic.failed} requests failed")
    if traffic.wrong:
        problems.append(f"{traffic.wrong} requests went to the wrong rule")
    if any(rule == "small" and served != "abplatform/model-v1"
           for rule, served in traffic.by_rule):  # fmt: skip
        problems.append("a small image was not served by abplatform/model-v1")
    if logged != traffic.sent:
        problems.append(f"{traffic.sent} requests sent but {logged} logged")
    if sorted({(s.variant, s.step) for s in report.steps}) != [("treatment", i) for i in range(3)]:
        problems.append("the pipeline's three steps are not in the report")
    if problems:
        raise RuntimeError("patterns demo check failed: " + "; ".join(problems))


def _logged(stack: LocalStack, experiment: str, route: str) -> int:
    assert stack.db is not None
    with stack.db.sessions() as s:
        rules = service.route_report(s, route).rules
    return sum(r.calls for r in rules)


def run_patterns_demo(
    home: Path, *, requests: int = 400, units: int = 200, concurrency: int = 4, seed: int = 11,
    console: Console | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the patterns scenario end to end; return its key figures (also printed).

    Raises:
        RuntimeError: a step did not produce what it should (the message says which).
    """
    console = console or Console()
    rng = np.random.default_rng(seed)
    console.rule("[bold]abplatform demo: routing patterns")
    with LocalStack(home) as stack:
        assert stack.db is not None
        experiment, route = create_patterns(stack, f"{datetime.now(UTC):%Y%m%d-%H%M%S}")
        console.print(
            f"route [bold]{route}[/]: small images (width × height ≤ {SMALL[0] * SMALL[1]}) → "
            f"abplatform/model-v1; the rest → experiment [bold]{experiment}[/]: control "
            "model-v2 at full size vs a pipeline model-v1 at 64×64 → upscale ×2 → remove "
            "background", highlight=False,
        )  # fmt: skip
        with console.status(f"sending {requests} requests through the route…"):
            traffic = asyncio.run(send_route_traffic(
                stack.router_url, route, unit_ids(units, requests, rng), rng=rng,
                concurrency=concurrency))  # fmt: skip
        httpx.post(f"{stack.router_url}/flush", json={}, timeout=60.0).raise_for_status()
        console.print(
            f"sent {traffic.sent} requests in {traffic.seconds:.1f} s ({traffic.failed} failed), "
            f"{traffic.feedback} feedback; by rule: "
            + ", ".join(f"{r} → {s}: {n}" for (r, s), n in sorted(traffic.by_rule.items())),
            highlight=False,
        )
        with stack.db.sessions() as s:
            rules = service.route_report(s, route).rules
            report = build_report(s, experiment)
        console.print(route_table(rules, f"Traffic of route {route}"))
        render(report, console)
        console.print(f"[bold]Cost per request:[/] {cost_line(report)}", highlight=False)
        check_patterns(traffic, _logged(stack, experiment, route), report)
    console.rule("[bold green]patterns demo complete: stack stopped")
    return {"route": route, "experiment": experiment, "requests": traffic.sent,
            "by_rule": dict(traffic.by_rule), "decision": report.decision.action,
            "costs": {v.key: v.cost_per_request for v in report.variants}}  # fmt: skip


__all__ = ["check_patterns", "cost_line", "create_patterns", "run_patterns_demo",
           "send_route_traffic"]  # fmt: skip
