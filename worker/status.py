"""What `invoicer status` and the dashboard show: one consistent read of the counters.

Owns the read side of the operator view: per-state counts (everything, or one
batch), queue depth per provider (due now vs deferred), pause state, the
dead-letter count, the finish rate over the last minute and the ETA. It reads
only counters and indexes the ledger maintains (`keys.totals()`,
`keys.batch(...)`, queue and throughput sorted sets): never a `KEYS` scan,
never a per-invoice read, so it costs the same for 10 or 100,000 invoices.
It must not write anything and must not render: `worker/cli/status.py` draws
the snapshot, the dashboard serves `as_dict()`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from jobs.models import Provider
from worker.keys import Keys, account_name
from worker.ledger import State
from worker.pauses import pause_state
from worker.replies import decoded

RATE_WINDOW_S = 60
"""The rate is counted over this window: finished invoices in the last minute."""

PENDING_STATES = (State.QUEUED, State.SENDING, State.IN_DOUBT)
"""States whose invoices still need work; the ETA is how long they will take."""


class UnknownBatch(LookupError):
    """No batch with this id: it was never created, or was typed wrong."""

    def __init__(self, batch: str) -> None:
        super().__init__(f"unknown batch {batch!r}")
        self.batch = batch


@dataclass(frozen=True)
class ProviderStatus:
    """One provider queue: how deep, whether paused, how fast it finishes invoices."""

    provider: Provider
    account: str
    due: int
    """Jobs whose run time has come: a worker takes them as soon as it is free."""
    deferred: int
    """Jobs waiting for a backoff or a rate-limit deferral to expire."""
    finished_last_minute: int
    paused_reason: str | None = None
    paused_until_ms: int | None = None
    """`None` with a reason: paused until an operator runs `invoicer resume`."""

    @property
    def paused(self) -> bool:
        """Whether workers currently hold off this provider account."""
        return self.paused_reason is not None

    def as_dict(self) -> dict[str, object]:
        """Stable JSON shape (documented in docs/operations.md)."""
        return {
            "provider": self.provider.value,
            "account": self.account,
            "queue_due": self.due,
            "queue_deferred": self.deferred,
            "finished_last_minute": self.finished_last_minute,
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "paused_until_ms": self.paused_until_ms,
        }


@dataclass(frozen=True)
class BatchInfo:
    """The batch a snapshot is restricted to."""

    batch_id: str
    name: str | None
    provider: str | None
    created_at_ms: int | None


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything `invoicer status` shows, read at `at_ms`."""

    at_ms: int
    counts: dict[State, int]
    total: int
    providers: list[ProviderStatus]
    dead_letters: int
    rate_per_minute: float
    """Invoices finished (created, sent or rejected) in the last minute."""
    batch: BatchInfo | None = None
    refused_jobs: int = 0
    """Entries of the refused-jobs list (`worker.refused`): jobs no worker may run."""

    @property
    def remaining(self) -> int:
        """Invoices still to be worked on (queued, sending, in doubt)."""
        return sum(self.counts[s] for s in PENDING_STATES)

    @property
    def eta_s(self) -> float | None:
        """Seconds until `remaining` reaches zero at the current rate; `None` if idle."""
        if self.remaining == 0:
            return 0.0
        if self.rate_per_minute <= 0:
            return None
        return self.remaining / (self.rate_per_minute / 60.0)

    def as_dict(self) -> dict[str, object]:
        """One JSON object with stable field names (documented in docs/operations.md)."""
        batch = self.batch
        return {
            "at_ms": self.at_ms,
            "batch": None
            if batch is None
            else {
                "id": batch.batch_id,
                "name": batch.name,
                "provider": batch.provider,
                "created_at_ms": batch.created_at_ms,
            },
            "counts": {state.value: self.counts[state] for state in State},
            "total": self.total,
            "remaining": self.remaining,
            "dead_letters": self.dead_letters,
            "rate_per_minute": self.rate_per_minute,
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "providers": [p.as_dict() for p in self.providers],
            "refused_jobs": self.refused_jobs,
        }


async def read_status(
    redis: aioredis.Redis,
    keys: Keys,
    *,
    batch: str | None,
    providers: Sequence[Provider],
    accounts: Mapping[Provider, str],
    now_ms: int | None = None,
) -> StatusSnapshot:
    """Read one snapshot: counts of everything (or of `batch`), queues, pauses, rate.

    The counters and queue sizes come from one pipelined round trip; pause
    states are read through `worker.pauses.pause_state`, which owns their format.

    Raises:
        UnknownBatch: `batch` is given and no such batch exists.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    counters_key = keys.totals() if batch is None else keys.batch(batch)
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(counters_key)
    pipe.zcard(keys.dead_letters())
    pipe.llen(keys.refused_jobs())
    for p in providers:
        pipe.zcard(keys.queue(p))
        pipe.zcount(keys.queue(p), "-inf", now)
        pipe.zcount(keys.throughput(p), now - RATE_WINDOW_S * 1000, "+inf")
    raw_counters, dead, refused, *per_provider = await pipe.execute()
    counters = decoded(raw_counters)
    if batch is not None and not counters:
        raise UnknownBatch(batch)
    statuses = [
        await _provider_status(
            redis, keys, p, accounts.get(p, "default"), *per_provider[3 * i : 3 * i + 3]
        )
        for i, p in enumerate(providers)
    ]
    info = None if batch is None else _batch_info(batch, counters)
    return StatusSnapshot(
        at_ms=now,
        counts={state: _int(counters.get(state.value)) for state in State},
        total=_total(counters),
        providers=statuses,
        dead_letters=int(dead),
        rate_per_minute=_rate(statuses, info),
        batch=info,
        refused_jobs=int(refused),
    )


async def _provider_status(
    redis: aioredis.Redis,
    keys: Keys,
    provider: Provider,
    account: str,
    queued: int,
    due: int,
    finished: int,
) -> ProviderStatus:
    pause = await pause_state(redis, keys, provider, account)
    return ProviderStatus(
        provider=provider,
        account=account,
        due=int(due),
        deferred=max(0, int(queued) - int(due)),
        finished_last_minute=int(finished),
        paused_reason=None if pause is None else pause.reason,
        paused_until_ms=None if pause is None else pause.until_ms,
    )


def _rate(statuses: Sequence[ProviderStatus], batch: BatchInfo | None) -> float:
    # Throughput is recorded per provider, not per batch: a batch's rate is
    # its provider's rate, which is exact while it is the only batch running
    # there and an upper bound otherwise.
    if batch is not None and batch.provider is not None:
        statuses = [s for s in statuses if s.provider.value == batch.provider]
    return float(sum(s.finished_last_minute for s in statuses))


def _total(counters: Mapping[str, str]) -> int:
    if "total" in counters:
        return _int(counters["total"])
    return sum(_int(counters.get(state.value)) for state in State)


def _batch_info(batch: str, counters: Mapping[str, str]) -> BatchInfo:
    created = counters.get("created_at_ms")
    return BatchInfo(
        batch_id=batch,
        name=counters.get("name"),
        provider=counters.get("provider"),
        created_at_ms=None if created is None else _int(created),
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
