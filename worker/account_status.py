"""One provider account in `invoicer status` and the dashboard: what remains, how fast.

Its own rate (invoices finished in the last 60 s, from the sorted set the
ledger's scripts keep per account) and its own ETA at that
rate: never another account's, never another provider's. Read by
`worker.status.read_status`, which owns the snapshot around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from jobs.models import Provider
from worker.keys import Keys, account_name
from worker.ledger import State
from worker.pauses import pause_state
from worker.replies import RawHash, decoded

PENDING_STATES = (State.QUEUED, State.SENDING, State.IN_DOUBT)
"""States whose invoices still need work; the ETA is how long they will take."""


@dataclass(frozen=True)
class ProviderStatus:
    """One provider account: what remains, how deep its queue, whether paused, how fast."""

    provider: Provider
    account: str
    due: int
    """Jobs whose run time has come: a worker takes them as soon as it is free
    (the provider's queue, which every account of it shares)."""
    deferred: int
    """Jobs waiting for a backoff or a rate-limit deferral to expire."""
    finished_last_minute: int
    """This account's invoices that reached created, sent or rejected in the last 60 s."""
    paused_reason: str | None = None
    paused_until_ms: int | None = None
    """`None` with a reason: paused until an operator runs `invoicer resume`,
    or, with `paused_kind` "unreachable", until a probe gets an answer."""
    remaining: int = 0
    """This account's invoices still queued, sending or in doubt."""
    paused_kind: str | None = None
    """"unreachable" for a pause the workers end themselves (`worker.reachability`)."""

    @property
    def paused(self) -> bool:
        """Whether workers currently hold off this provider account."""
        return self.paused_reason is not None

    @property
    def eta_s(self) -> float | None:
        """Seconds until `remaining` is done at this account's own rate; 0 when
        nothing remains; `None` while paused or when nothing finished lately."""
        return eta(self.remaining, float(self.finished_last_minute), paused=self.paused)

    def as_dict(self) -> dict[str, object]:
        """Stable JSON shape (documented in docs/operations.md)."""
        eta = self.eta_s
        return {
            "provider": self.provider.value,
            "account": self.account,
            "remaining": self.remaining,
            "queue_due": self.due,
            "queue_deferred": self.deferred,
            "finished_last_minute": self.finished_last_minute,
            "eta_s": None if eta is None else round(eta, 1),
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "paused_until_ms": self.paused_until_ms,
            "paused_kind": self.paused_kind,
        }


def eta(remaining: int, per_minute: float, *, paused: bool) -> float | None:
    """Seconds to finish `remaining` at `per_minute`; 0 when nothing remains, `None`
    while paused or when nothing finished lately (an ETA would be a guess)."""
    if remaining == 0:
        return 0.0
    if paused or per_minute <= 0:
        return None
    return remaining / (per_minute / 60.0)


async def provider_status(
    redis: aioredis.Redis,
    keys: Keys,
    provider: Provider,
    account: str,
    queued: int,
    due: int,
    finished: int,
    totals: RawHash,
) -> ProviderStatus:
    """One account's row from what `read_status` read for it in its pipeline."""
    pause = await pause_state(redis, keys, provider, account)
    counts = decoded(totals)
    return ProviderStatus(
        provider=provider,
        account=account,
        due=int(due),
        deferred=max(0, int(queued) - int(due)),
        finished_last_minute=int(finished),
        paused_reason=None if pause is None else pause.reason,
        paused_until_ms=None if pause is None else pause.until_ms,
        paused_kind=None if pause is None else pause.kind,
        remaining=sum(max(0, _int(counts.get(s.value))) for s in PENDING_STATES),
    )


def _int(value: str | None) -> int:
    # Counters are written by Lua HINCRBY, so they are integers; a missing
    # field is a state nothing has reached yet.
    return 0 if value is None else int(value)


async def read_account_counts(
    redis: aioredis.Redis, keys: Keys, accounts: Mapping[Provider, str]
) -> dict[Provider, dict[State, int]]:
    """Per-state counts of each provider account's invoices, in one round trip.

    The ledger's scripts keep these counters beside the batch and global
    ones (`Keys.account_totals`), so in flight and in doubt per provider
    cost one read, whatever the number of invoices.
    """
    providers = list(accounts)
    async with redis.pipeline(transaction=False) as pipe:
        for p in providers:
            pipe.hgetall(keys.account_totals(account_name(p, accounts[p])))
        replies = await pipe.execute()
    return {
        p: {state: max(0, _int(decoded(raw).get(state.value))) for state in State}
        for p, raw in zip(providers, replies, strict=True)
    }
