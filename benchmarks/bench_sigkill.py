"""Measurement: how many answered requests lose their log row when the router is killed
with SIGKILL (no drain), against the flush window that bounds it.

One local stack (embedded PostgreSQL, the fal gateway stand-in, one router, a CPU-free
echo backend). ``--clients`` concurrent clients send requests for ``--seconds``; then the
router gets SIGKILL. Every answered request's id is kept; after the local supervisor has
restarted the router, the script counts how many of those ids have a row. Prints the
answered requests, the lost rows, the request rate and the loss expressed as a time
window (lost / rate), next to ``ABPLATFORM_LOG_FLUSH_INTERVAL_MS``. Run::

    .venv/bin/python -m benchmarks.bench_sigkill [--clients 8] [--seconds 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from abplatform.local.echo import DELAY_ENV
from abplatform.local.falcloud import BackendSpec
from abplatform.local.stack import LocalStack
from abplatform.settings import Settings
from benchmarks.bench_router import ECHO, make_experiments


async def load(url: str, clients: int, seconds: float, stop: asyncio.Event) -> list[str]:
    """Request ids of every answered request until ``stop`` (or ``seconds``)."""
    ids: list[str] = []
    deadline = time.monotonic() + seconds + 30

    async def loop(c: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            i = 0
            while not stop.is_set() and time.monotonic() < deadline:
                body = {"experiment": "bench-run", "unit_id": f"k{c}-{i}", "arguments": {}}
                i += 1
                try:
                    r = await client.post(f"{url}/", json=body)
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    ids.append(r.json()["request_id"])

    await asyncio.gather(*(loop(c) for c in range(clients)))
    return ids


async def one_kill(stack: LocalStack, clients: int, seconds: float) -> tuple[int, int, float]:
    """(answered, lost, requests per second) of one run ended by SIGKILL."""
    assert stack.router is not None and stack.db is not None
    stop = asyncio.Event()
    task = asyncio.create_task(load(stack.router_url, clients, seconds, stop))
    await asyncio.sleep(seconds)
    restarts = stack.router.restarts
    stack.router.process.send_signal(signal.SIGKILL)
    await asyncio.sleep(0.5)
    stop.set()
    ids = await task
    deadline = time.monotonic() + 60
    while stack.router.restarts == restarts:  # the local supervisor starts a new runner
        if time.monotonic() > deadline:
            raise SystemExit("the router was not restarted within 60 s")
        await asyncio.sleep(0.1)
    stack.router.wait_healthy(120)
    with stack.db.engine.connect() as conn:
        logged = set(
            conn.execute(
                sa.text("SELECT request_id FROM requests WHERE request_id = ANY(:ids)"),
                {"ids": ids},
            ).scalars()
        )
    return len(ids), len(set(ids) - logged), len(ids) / seconds


def main() -> None:
    """Run ``--repeat`` kills and print each and the median loss window."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sigkill")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="abplatform-bench-sigkill-", dir="/tmp"))
    backends = {ECHO: BackendSpec(target="abplatform.local.echo:EchoBackend", concurrency=1024,
                                  env={DELAY_ENV: "20"})}  # fmt: skip
    env = {"ABPLATFORM_BACKEND_APPS": ECHO}
    os.environ.update(env)
    flush_ms = Settings().log_flush_interval_ms
    try:
        with LocalStack(home, backends=backends, extra_router_env=env) as stack:
            make_experiments(stack, ["run"])
            windows = []
            for _ in range(args.repeat):
                answered, lost, rate = asyncio.run(one_kill(stack, args.clients, args.seconds))
                window = lost / rate * 1000 if rate else 0.0
                windows.append(window)
                print(f"answered {answered:5d}  lost rows {lost:4d}  rate {rate:6.1f} req/s  "
                      f"loss window {window:6.1f} ms", flush=True)  # fmt: skip
            print(f"median loss window {statistics.median(windows):.1f} ms; flush interval "
                  f"ABPLATFORM_LOG_FLUSH_INTERVAL_MS = {flush_ms:g} ms")  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
