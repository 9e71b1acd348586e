"""When `invoicer worker --burst` stops before its queues are empty: a pause with no end.

arq's burst mode stops once a queue is empty. A queue behind a pause never
empties (its jobs are deferred, again and again), so a `--burst` worker
whose provider's key was refused ran forever. Now it stops when nothing of
that queue can move until a person acts: no job of it is running and the
provider account is paused with no end (a refused key, `invoicer pause`
without `--minutes`), or paused as unreachable and this process's own
probes kept failing for `worker.reachability.BURST_PATIENCE_S`. A pause that
ends by itself (a 429, the failure budget) is waited out. The worker then
reports what waits on which pause (`Stalled`), and `invoicer worker` exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.models import Provider
from worker.keys import account_name
from worker.limits import ProviderLimiter

CHECK_EVERY_S = 1.0
"""How often an idle `--burst` worker looks whether it is stalled by a pause."""


@dataclass(frozen=True)
class Stalled:
    """A provider queue a `--burst` worker left behind a pause."""

    provider: Provider
    account: str
    reason: str
    """The pause's reason, as `invoicer status` shows it."""
    waiting: int
    """Jobs left in the queue, each an invoice still queued."""
    unreachable: bool
    """Paused because it cannot be reached: workers resume it themselves once it answers."""

    def describe(self) -> str:
        """One line for people: who, how many, why, and how it ends."""
        who = account_name(self.provider, self.account)
        ends = (
            "the next worker resumes it by itself once it answers"
            if self.unreachable
            else f"once fixed, run `invoicer resume {self.provider.value}`"
        )
        return (
            f"{who}: {self.waiting:,} invoice(s) wait on its pause ({self.reason}); "
            f"they stay queued (invoicer status); {ends}"
        )


@dataclass(frozen=True)
class WorkerRun:
    """What a worker process did when its run ends (`worker.app.run_workers`)."""

    jobs: int
    """Jobs it ran (arq's count: complete, failed or retried)."""
    stalled: tuple[Stalled, ...] = ()
    """With `--burst`: the queues it left behind a pause with no end."""


async def stalled_by(limiter: ProviderLimiter) -> str | None:
    """The reason nothing of this account's queue can move until a person acts, or None."""
    pause = await limiter.pause_state()
    if pause is None or not pause.indefinite:
        return None
    if pause.kind == "unreachable" and not limiter.reachability.gave_up():
        return None
    return pause.reason
