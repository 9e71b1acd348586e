"""`python -m bench [GOAL...]` (`make bench`): run the speed goals, print one verdict each.

Prints `GOAL <name>: <value> (target <target>) PASS|FAIL` per goal, each
followed by the baseline measured in the same run, then
`bench: N/M goals passed`. Exits 0 whatever the verdicts (figures on a noisy
machine are for reading, not for gating); non-zero only if the bench crashed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable

from bench import dashboard, enqueue, limit_fidelity, overhead, pickup, web
from bench.common import Bench, Goal, bench_env, machine

GOALS: dict[str, Callable[[Bench], Awaitable[Goal]]] = {
    "overhead": overhead.run,
    "limit_fidelity": limit_fidelity.run,
    "pickup": pickup.run,
    "enqueue": enqueue.run,
    "web": web.run,
    "dashboard": dashboard.run,
}


def report(goal: Goal, elapsed_s: float) -> None:
    """Print one goal's verdict, its baseline and notes."""
    print(goal.line())
    print(f"  baseline: {goal.baseline}")
    for note in goal.notes:
        print(f"  {note}")
    print(f"  ({elapsed_s:.0f} s)", flush=True)


async def run(names: list[str]) -> int:
    """Run the named goals in order; how many passed."""
    passed = 0
    with bench_env() as bench:
        for line in machine(bench):
            print(line, flush=True)
        for name in names:
            started = time.monotonic()
            goal = await GOALS[name](bench)
            report(goal, time.monotonic() - started)
            passed += goal.passed
        bench.flush()
    return passed


def main(argv: list[str]) -> None:
    """Entry point: every goal, or those named on the command line."""
    names = argv or list(GOALS)
    unknown = [n for n in names if n not in GOALS]
    if unknown:
        raise SystemExit(f"unknown goal(s) {unknown}; choose from {list(GOALS)}")
    # Our in-process enqueue steps would log per batch; the figures are the output.
    logging.getLogger("invoicer").setLevel(logging.WARNING)
    started = time.monotonic()
    passed = asyncio.run(run(names))
    print(f"bench: {passed}/{len(names)} goals passed in {time.monotonic() - started:.0f} s")


main(sys.argv[1:])
