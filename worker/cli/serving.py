"""What `invoicer worker` says: what it serves when it starts, and what a `--burst` run did.

At start, one line per provider account it drains (where, how fast it may
go) and one about the process (jobs in flight, the Redis, how it stops), on
stderr with the logs. At the end of `--burst`, a summary on stdout: how long
it ran, the jobs this process ran, and per account what reached created or
was dead-lettered meanwhile (by every worker sharing that Redis: the ledger
counts invoices, not processes) and what is left; and on stderr, one
`stopped:` line per queue it left behind a pause with no end (`worker.burst`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from rich.console import Console

from jobs.models import Provider
from worker.burst import Stalled
from worker.keys import Keys, account_name
from worker.ledger import State
from worker.settings import Settings
from worker.status import PENDING_STATES, read_account_counts

Counts = dict[Provider, dict[State, int]]


def serving_lines(
    s: Settings, providers: Sequence[Provider], *, redis: str, burst: bool
) -> list[str]:
    """The start banner: one line per provider account, then the process."""
    lines = []
    for p in providers:
        ps = s.provider(p)
        rate = (
            "no shared limit"
            if ps.rate_per_minute is None
            else f"{ps.rate_per_minute:g}/min shared"
        )
        if ps.failed_per_minute is not None:
            rate += f", pauses after {ps.failed_per_minute} failed requests/min"
        lines.append(f"worker: draining {account_name(p, ps.account)} at {ps.base_url} ({rate})")
    stop = "until its queues are empty (--burst)" if burst else "until SIGTERM or Ctrl-C"
    lines.append(f"worker: {s.concurrency} jobs in flight per queue, {redis}; runs {stop}")
    return lines


async def account_counts(
    redis: aioredis.Redis, keys: Keys, s: Settings, providers: Sequence[Provider]
) -> Counts:
    """Each drained account's per-state counters (one round trip)."""
    return await read_account_counts(redis, keys, {p: s.provider(p).account for p in providers})


@dataclass(frozen=True)
class BurstSummary:
    """What a `--burst` run did, for its closing lines."""

    seconds: float
    jobs: int
    before: Counts
    after: Counts
    stalled: tuple[Stalled, ...] = ()
    """Queues it left behind a pause with no end (`worker.burst`)."""

    def lines(self, s: Settings) -> list[str]:
        """`burst done in 12.4 s, 25 jobs run`, then one line per account."""
        lines = [f"burst done in {self.seconds:.1f} s, {self.jobs:,} jobs run by this worker"]
        for p, now in self.after.items():
            was = self.before.get(p, {})
            created = _delta(was, now, State.CREATED) + _delta(was, now, State.SENT)
            rejected = _delta(was, now, State.REJECTED)
            left = sum(now[state] for state in PENDING_STATES)
            lines.append(
                f"  {account_name(p, s.provider(p).account)}: {created:,} created, "
                f"{rejected:,} dead-lettered meanwhile (all workers); {left:,} left"
            )
        return lines


def _delta(was: Mapping[State, int], now: Mapping[State, int], state: State) -> int:
    return max(0, now.get(state, 0) - was.get(state, 0))


def print_lines(console: Console, lines: Sequence[str]) -> None:
    """Each line as written (no markup, no wrapping into two)."""
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
