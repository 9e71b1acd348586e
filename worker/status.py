"""What `invoicer status` and the dashboard show: one consistent read of the counters.

Owns the read side of the operator view: per-state counts (everything, or one
batch), and per provider account what remains, the queue depth (due now vs
deferred), the pause state, the finish rate over the last minute and the ETA
at that rate; the dead-letter count; an ETA for everything (the slowest
account's: they run side by side) or for one batch (at its account's rate).
Rates are never mixed across accounts: 12,500 Stax invoices are not timed at
Maast's speed. It reads only counters and indexes the ledger maintains
(`keys.totals()`, `keys.batch(...)`, per-account totals, queues, per-minute
counters): never a `KEYS` scan, never a per-invoice read, so it costs the
same for 10 or 100,000 invoices.
It must not write anything and must not render: `worker/cli/status.py` draws
the snapshot, the dashboard serves `as_dict()`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from jobs.models import Provider
from worker.account_status import (
    PENDING_STATES,
    ProviderStatus,
    eta,
    provider_status,
    read_account_counts,
)
from worker.keys import Keys, account_name
from worker.ledger import State
from worker.replies import decoded

RATE_WINDOW_MS = 60_000
"""The rate is counted over this window: finished invoices in the last minute."""

__all__ = [
    "PENDING_STATES",
    "BatchInfo",
    "ProviderStatus",
    "StatusSnapshot",
    "UnknownBatch",
    "read_account_counts",
    "read_status",
]


class UnknownBatch(LookupError):
    """No batch with this id: it was never created, or was typed wrong."""

    def __init__(self, batch: str) -> None:
        super().__init__(f"unknown batch {batch!r}")
        self.batch = batch


@dataclass(frozen=True)
class BatchInfo:
    """The batch a snapshot is restricted to."""

    batch_id: str
    name: str | None
    provider: str | None
    created_at_ms: int | None
    account: str = "default"
    superseded: int = 0
    """Members a later batch took over (history here; counted in `total`)."""


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything `invoicer status` shows, read at `at_ms`."""

    at_ms: int
    counts: dict[State, int]
    total: int
    providers: list[ProviderStatus]
    dead_letters: int
    rate_per_minute: float
    """Invoices finished (created, sent or rejected) in the last minute: of every
    account shown, or of the batch's account."""
    batch: BatchInfo | None = None
    refused_jobs: int = 0
    """Entries of the refused-jobs list (`worker.refused`): jobs no worker may run."""
    unverified: int = 0
    """Created after an unknown outcome, waiting for their landing window to
    be looked up again (counted among created or sent, and in `remaining`)."""
    voided: int = 0
    """Late twins found by verification and voided at the provider."""
    duplicates_found: int = 0
    """Twins verification could not void (sent or paid) among these invoices."""
    duplicates_open: int = 0
    """Invoices on the operator list now (`invoicer duplicates list`), of every batch."""

    @property
    def remaining(self) -> int:
        """Invoices still to be worked on (queued, sending, in doubt, unverified)."""
        return sum(self.counts[s] for s in PENDING_STATES) + self.unverified

    @property
    def eta_s(self) -> float | None:
        """Seconds until `remaining` reaches zero; `None` when it cannot be told.

        A batch: at its account's rate (exact while it is the only batch
        there, an upper bound otherwise), `None` while that account is paused.
        Everything: the slowest account's ETA (they run side by side),
        `None` when an account with work left is paused or stalled.
        """
        if self.remaining == 0:
            return 0.0
        if self.batch is not None:
            row = self.batch_row
            paused = row is not None and row.paused
            return eta(self.remaining, self.rate_per_minute, paused=paused)
        etas = [p.eta_s for p in self.providers if p.remaining]
        if not etas or any(eta is None for eta in etas):
            return None
        return max(eta for eta in etas if eta is not None)

    @property
    def batch_row(self) -> ProviderStatus | None:
        """The provider account the batch goes to (with `batch`)."""
        if self.batch is None:
            return None
        return next(
            (
                p
                for p in self.providers
                if p.provider.value == self.batch.provider and p.account == self.batch.account
            ),
            None,
        )

    @property
    def held_up(self) -> list[ProviderStatus]:
        """Accounts with work left and no ETA: paused, or nothing finished lately."""
        rows = self.providers if self.batch is None else [r for r in [self.batch_row] if r]
        return [p for p in rows if p.remaining and p.eta_s is None]

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
                "account": batch.account,
                "created_at_ms": batch.created_at_ms,
                "superseded": batch.superseded,
            },
            "counts": {state.value: self.counts[state] for state in State},
            "total": self.total,
            "remaining": self.remaining,
            "dead_letters": self.dead_letters,
            "unverified": self.unverified,
            "voided": self.voided,
            "duplicates_found": self.duplicates_found,
            "duplicates_open": self.duplicates_open,
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
    """Read one snapshot: counts of everything (or of `batch`), each provider
    account's queue, remaining work, pause and rate.

    The counters, queue sizes and rates come from one pipelined round trip;
    pause states are read through `worker.pauses.pause_state`, which owns
    their format.

    Raises:
        UnknownBatch: `batch` is given and no such batch exists.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    counters_key = keys.totals() if batch is None else keys.batch(batch)
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(counters_key)
    pipe.zcard(keys.dead_letters())
    pipe.llen(keys.refused_jobs())
    pipe.zcard(keys.duplicates())
    for p in providers:
        who = account_name(p, accounts.get(p, "default"))
        pipe.zcard(keys.queue(p))
        pipe.zcount(keys.queue(p), "-inf", now)
        pipe.zcount(keys.account_throughput(who), now - RATE_WINDOW_MS, "+inf")
        pipe.hgetall(keys.account_totals(who))
    raw_counters, dead, refused, listed, *per_provider = await pipe.execute()
    counters = decoded(raw_counters)
    if batch is not None and not counters:
        raise UnknownBatch(batch)
    statuses = [
        await provider_status(
            redis, keys, p, accounts.get(p, "default"), *per_provider[4 * i : 4 * i + 4]
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
        unverified=max(0, _int(counters.get("unverified"))),
        voided=_int(counters.get("voided")),
        duplicates_found=_int(counters.get("duplicates_open")),
        duplicates_open=int(listed),
    )


def _rate(statuses: Sequence[ProviderStatus], batch: BatchInfo | None) -> float:
    # Rates are counted per provider account, not per batch: a batch's rate
    # is its account's, exact while it is the only batch running there and
    # an upper bound otherwise.
    if batch is not None:
        statuses = [
            s for s in statuses if s.provider.value == batch.provider and s.account == batch.account
        ]
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
        account=counters.get("account") or "default",
        superseded=_int(counters.get("superseded")),
    )


def _int(value: str | None) -> int:
    # Counters are written by Lua HINCRBY, so they are integers; a missing
    # field is a state nothing has reached yet.
    return 0 if value is None else int(value)
