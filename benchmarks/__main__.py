"""Run every benchmark: ``python -m benchmarks`` (``make bench``).

Each prints seconds and a ratio against a baseline computed in the same process.
Benchmarks are never timed tests; they are run by hand and quoted in issue notes.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "benchmarks.bench_report",
    "benchmarks.bench_dashboard",
    "benchmarks.bench_router",
    "benchmarks.bench_ingest",
    "benchmarks.bench_sigkill",
    "benchmarks.bench_rollout",
)


def main() -> int:
    """Run each benchmark module in its own process; return the worst exit code."""
    worst = 0
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        worst = max(worst, subprocess.call([sys.executable, "-m", module]))
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
