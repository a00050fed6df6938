"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: the share of samples
in which each function or module appears (inclusive), and where samples end (self).

    .venv/bin/python -m benchmarks.pyspy_summary /tmp/prof-run.txt [--top 30] [--by module]

Idle samples (the event loop waiting in ``select``/``epoll``) are counted apart, so the
shares are of the time the process was on a CPU.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = re.compile(r"\b(select|poll|epoll_wait|_run_once \(asyncio|wait \(threading)")
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _key(frame: str, by: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    module = path.split("site-packages/")[-1].split("python3.11/")[-1]
    if by == "module":
        return module.split("/")[0] if "/" in module else module
    return f"{m['func']} ({module})"


def summarise(path: Path, by: str) -> tuple[int, int, Counter[str], Counter[str]]:
    """(busy samples, idle samples, inclusive counts, self counts) of a collapsed profile."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if IDLE.search(frames[-1]) or "select (selectors" in frames[-1]:
            idle += n
            continue
        busy += n
        for key in {_key(f, by) for f in frames}:
            inclusive[key] += n
        own[_key(frames[-1], by)] += n
    return busy, idle, inclusive, own


def main() -> None:
    """Print the top entries by inclusive and by self share."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pyspy_summary")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--by", choices=("function", "module"), default="function")
    args = parser.parse_args()
    busy, idle, inclusive, own = summarise(args.profile, args.by)
    print(f"{busy} busy samples, {idle} idle (waiting) samples")
    print("inclusive (share of busy samples in which it is on the stack):")
    for key, n in inclusive.most_common(args.top):
        print(f"  {n / busy:6.1%}  {key}")
    print("self (share of busy samples that end in it):")
    for key, n in own.most_common(args.top):
        print(f"  {n / busy:6.1%}  {key}")


if __name__ == "__main__":
    main()
