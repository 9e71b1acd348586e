"""Invoices created and rejected per minute over the last hour: the dashboard's chart.

The ledger's scripts count every invoice that becomes created or rejected in
a small hash per provider and minute (`Keys.per_minute`, kept two hours; see
`per_minute` in `worker/lua/common.lua`). This module reads the last hour of
them in one pipelined round trip: sixty small reads, whatever the batch
size. It never writes. Minutes are Unix time // 60 on this host's clock; the
scripts count on Redis's, so a skewed host shifts the chart, not the counts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from jobs.models import Provider
from worker.keys import Keys

MINUTES = 60
"""How far back the chart looks."""


@dataclass(frozen=True)
class Minute:
    """What one provider finished in one minute."""

    start_ms: int
    created: int
    rejected: int


async def last_minutes(
    redis: aioredis.Redis,
    keys: Keys,
    provider: Provider,
    *,
    minutes: int = MINUTES,
    now_ms: int | None = None,
) -> list[Minute]:
    """The last `minutes` minutes, oldest first, the current (partial) minute last."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    current = now // 60_000
    first = current - minutes + 1
    async with redis.pipeline(transaction=False) as pipe:
        for minute in range(first, current + 1):
            pipe.hmget(keys.per_minute(provider, minute), ["created", "rejected"])
        replies: Sequence[Sequence[bytes | str | None]] = await pipe.execute()
    return [
        Minute(start_ms=(first + i) * 60_000, created=_int(created), rejected=_int(rejected))
        for i, (created, rejected) in enumerate(replies)
    ]


def _int(value: bytes | str | None) -> int:
    return 0 if value is None else int(value)
