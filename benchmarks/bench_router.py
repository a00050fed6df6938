"""Benchmark: what the router adds over calling the backend directly, same call mode.

One local stack (embedded PostgreSQL, the fal gateway stand-in, the router with logging on)
in front of a CPU-free echo backend that waits ``--delay-ms``. For each call mode (``run``:
one direct HTTP call; ``queue``: submit, status stream, result) and each number of
concurrent clients, the same client alternates rounds of

* **direct**: the backend through the gateway, in that call mode (the baseline);
* **router**: ``POST /`` of the router, whose variant calls the same backend in that mode;

and prints p50/p99 latency of both, the router's overhead (router minus direct, at p50 and
p99), the ratio, and the router process's CPU time per request (from /proc: user+system).
Targets (issue 10): overhead p50 ≤ 2 ms and p99 ≤ 10 ms at 64 clients, CPU ≤ 2 ms/request.

Mode ``shadow`` (issue 11) asks whether mirroring slows the live answer: its baseline
("direct") is the router serving a plain experiment in run mode, and its "router" is the
same experiment with every request mirrored to a shadow app that takes ten times longer
(``--delay-ms`` × 10): the overhead is what mirroring adds to the live answer. Run::

    .venv/bin/python -m benchmarks.bench_router [--clients 1,8,64] [--seconds 4] \\
        [--rounds 3] [--delay-ms 20] [--modes run,queue,shadow] [--py-spy FILE]

With ``--py-spy FILE`` the router is sampled with py-spy (``pip install py-spy``) during the
64-client router rounds and a flame graph written to FILE.svg (and FILE.txt, collapsed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from abplatform import service
from abplatform.core.specs import ExperimentSpec, ShadowSpec, VariantSpec
from abplatform.local.echo import DELAY_ENV
from abplatform.local.falcloud import BackendSpec
from abplatform.local.stack import LocalStack

ECHO = "abplatform/echo"
ECHO_SLOW = "abplatform/echo-slow"  # the shadow app: ten times slower
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Round:
    """Latencies (ms) of one timed round, and the router's CPU seconds during it."""

    latencies: list[float]
    cpu_s: float = 0.0


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Caller:
    """Makes one call of a kind (direct run, direct queue, router) with one httpx client."""

    def __init__(self, stack: LocalStack, clients: int, delay_ms: float) -> None:
        assert stack.fal is not None and stack.fal.trust_bundle is not None
        self.gateway = stack.fal.queue_url
        self.router = stack.router_url
        self.delay_ms = delay_ms
        verify = ssl.create_default_context(cafile=str(stack.fal.trust_bundle))
        # Idle connections expire before uvicorn's 5 s keep-alive closes them between rounds
        limits = httpx.Limits(
            max_connections=clients * 2, max_keepalive_connections=clients * 2, keepalive_expiry=2.0
        )
        self.client = httpx.AsyncClient(
            verify=verify, limits=limits, timeout=60, trust_env=False,
            headers={"authorization": "Key local-key-id:local-key-secret"},
        )  # fmt: skip

    async def direct(self, mode: str, unit: str) -> None:
        args = {"delay_ms": self.delay_ms}
        if mode == "shadow":  # the baseline: the router without mirroring
            await self.via_router("run", unit)
            return
        if mode == "run":
            r = await self.client.post(f"{self.gateway}/{ECHO}", json=args)
            r.raise_for_status()
            return
        sub = await self.client.post(f"{self.gateway}/queue/{ECHO}", json=args)
        sub.raise_for_status()
        urls = sub.json()
        async with self.client.stream("GET", urls["status_url"] + "/stream") as events:
            async for line in events.aiter_lines():
                if line.startswith("data:") and '"COMPLETED"' in line:
                    break
        r = await self.client.get(urls["response_url"])
        r.raise_for_status()

    async def via_router(self, mode: str, unit: str) -> None:
        args = {} if mode == "shadow" else {"delay_ms": self.delay_ms}  # the shadow: its own
        body = {"experiment": f"bench-{mode}", "unit_id": unit, "arguments": args}
        r = await self.client.post(f"{self.router}/", json=body)
        r.raise_for_status()


async def timed_round(call: Any, mode: str, clients: int, seconds: float) -> list[float]:
    """``clients`` loops calling ``call(mode, unit)`` for ``seconds``; every latency (ms)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(c: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await call(mode, f"u-{c}-{i}")
            latencies.append((time.perf_counter() - t0) * 1000.0)
            i += 1

    await asyncio.gather(*(loop(c) for c in range(clients)))
    return latencies


def make_experiments(stack: LocalStack, modes: list[str]) -> None:
    """One running experiment per call mode, both variants on the echo backend (``shadow``:
    run mode, every request mirrored to the slow echo; it needs ``bench-run`` too)."""
    assert stack.db is not None
    with stack.db.sessions() as s:
        for mode in dict.fromkeys(["run", *modes] if "shadow" in modes else modes):
            call_mode = "run" if mode == "shadow" else mode
            shadow = ShadowSpec(app=ECHO_SLOW, percent=100) if mode == "shadow" else None
            variants = [
                VariantSpec(key="control", model_version="a", backend_app_id=ECHO,
                            is_control=True, call_mode=call_mode, shadow=shadow),
                VariantSpec(key="treatment", model_version="b", backend_app_id=ECHO,
                            call_mode=call_mode, shadow=shadow),
            ]  # fmt: skip
            spec = ExperimentSpec(name=f"bench-{mode}", variants=variants)
            service.create_experiment(s, spec, actor="bench")
            service.start_experiment(s, f"bench-{mode}", actor="bench")


def start_py_spy(pid: int, out: str, seconds: float) -> subprocess.Popen[bytes] | None:
    """Sample ``pid`` with py-spy for ``seconds`` into ``out``.txt (collapsed stacks)."""
    exe = shutil.which("py-spy") or str(Path(os.sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy not found: pip install py-spy")
        return None
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
         "--format", "raw", "--output", f"{out}.txt", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip


async def measure(stack: LocalStack, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (mode, clients) cell: direct and router rounds alternated."""
    assert stack.router is not None
    pid = stack.router.process.pid
    rows = []
    for mode in args.modes:
        for clients in args.clients:
            caller = Caller(stack, clients, args.delay_ms)
            await timed_round(caller.direct, mode, clients, 1.0)  # warm connections
            await timed_round(caller.via_router, mode, clients, 1.0)
            direct: list[float] = []
            routed: list[float] = []
            cpu = 0.0
            for r in range(args.rounds):
                direct += await timed_round(caller.direct, mode, clients, args.seconds)
                spy = None
                if args.py_spy and clients == max(args.clients) and r == 0:
                    spy = start_py_spy(pid, f"{args.py_spy}-{mode}", args.seconds)
                before = cpu_seconds(pid)
                got = await timed_round(caller.via_router, mode, clients, args.seconds)
                cpu += cpu_seconds(pid) - before
                routed += got
                if spy is not None:
                    spy.wait()
            if mode == "shadow":
                health = (await caller.client.post(f"{caller.router}/healthz")).json()
                print(f"        shadows so far: {health['shadows']}", flush=True)
            await caller.client.aclose()
            rows.append(report_row(mode, clients, direct, routed, cpu))
    return rows


def report_row(
    mode: str, clients: int, direct: list[float], routed: list[float], cpu_s: float
) -> dict[str, Any]:
    """One printed line: latencies, overhead, ratio, CPU per request."""
    d50, d99, r50, r99 = pct(direct, 0.5), pct(direct, 0.99), pct(routed, 0.5), pct(routed, 0.99)
    row = {
        "mode": mode, "clients": clients, "n_direct": len(direct), "n_router": len(routed),
        "direct_p50": d50, "direct_p99": d99, "router_p50": r50, "router_p99": r99,
        "overhead_p50": r50 - d50, "overhead_p99": r99 - d99,
        "ratio_p50": r50 / d50, "cpu_ms_per_request": cpu_s * 1000.0 / max(1, len(routed)),
    }  # fmt: skip
    print(
        f"{mode:5} {clients:3} clients | direct p50 {d50:7.2f} p99 {d99:7.2f} | router p50 "
        f"{r50:7.2f} p99 {r99:7.2f} ms | overhead p50 {r50 - d50:+7.2f} p99 {r99 - d99:+7.2f} ms"
        f" | ratio p50 {r50 / d50:5.3f} | router CPU {row['cpu_ms_per_request']:.2f} ms/req "
        f"({len(routed)} req)",
        flush=True,
    )
    return row


def main() -> None:
    """Parse arguments, start the stack, run every cell, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_router")
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--seconds", type=float, default=4.0, help="per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="backend wait (ms)")
    parser.add_argument("--modes", default="run,queue")
    parser.add_argument("--py-spy", default=None, help="profile the router into FILE-MODE.txt")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.modes = args.modes.split(",")
    home = Path(tempfile.mkdtemp(prefix="abplatform-bench-router-", dir="/tmp"))
    backends = {ECHO: BackendSpec(target="abplatform.local.echo:EchoBackend", concurrency=1024,
                                  env={DELAY_ENV: str(args.delay_ms)})}  # fmt: skip
    if "shadow" in args.modes:
        backends[ECHO_SLOW] = BackendSpec(target="abplatform.local.echo:EchoBackend",
                                          concurrency=1024,
                                          env={DELAY_ENV: str(args.delay_ms * 10)})  # fmt: skip
    env = {"ABPLATFORM_BACKEND_APPS": f"{ECHO},{ECHO_SLOW}"}
    os.environ.update(env)
    print(
        f"backend waits {args.delay_ms:g} ms; {args.rounds} rounds of {args.seconds:g} s per "
        "cell, direct and router alternated; logging on (embedded PostgreSQL)",
        flush=True,
    )
    try:
        with LocalStack(home, backends=backends, extra_router_env=env) as stack:
            make_experiments(stack, args.modes)
            asyncio.run(measure(stack, args))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
