"""Per-minute counts of created and rejected invoices, as the ledger's scripts keep them."""

from __future__ import annotations

import itertools
import time

import redis.asyncio as aioredis

from jobs.models import Provider
from tests.worker.test_ledger import KEYS, REJECTED, claim, enqueue, hset, make_invoice, receipt
from worker.activity import last_minutes
from worker.ledger import Ledger


async def test_created_and_rejected_are_counted_in_their_minute(
    redis_client: aioredis.Redis,
) -> None:
    ledger = Ledger(redis_client, KEYS)
    await enqueue(redis_client, *(make_invoice(n, send=n == "A") for n in "ABC"))
    for number in "AB":
        held = await claim(ledger, f"maast:{number}")
        await held.mark_sending()
        await held.mark_created(receipt(number))
        await held.release()
    sent = await claim(ledger, "maast:A")  # created -> sent creates nothing new
    await sent.mark_sent(receipt("A", sent=True))
    await sent.release()
    held = await claim(ledger, "maast:C")
    await held.mark_sending()
    await held.dead_letter(REJECTED, attempts=1)
    await held.release()

    minutes = await last_minutes(redis_client, KEYS, Provider.MAAST)
    assert len(minutes) == 60
    assert sum(m.created for m in minutes) == 2 and sum(m.rejected for m in minutes) == 1
    busy = [m for m in minutes if m.created or m.rejected]
    assert len(busy) <= 2  # all in this minute (or the one before, at a boundary)
    assert minutes[-1].start_ms <= time.time() * 1000 < minutes[-1].start_ms + 60_000
    assert [m.start_ms for m in minutes] == sorted(m.start_ms for m in minutes)
    assert all(b.start_ms - a.start_ms == 60_000 for a, b in itertools.pairwise(minutes))
    assert sum(m.created for m in await last_minutes(redis_client, KEYS, Provider.STAX)) == 0
    ttl = await redis_client.ttl(KEYS.per_minute(Provider.MAAST, busy[-1].start_ms // 60_000))
    assert 3600 < ttl <= 7200


async def test_minutes_outside_the_window_are_not_read(redis_client: aioredis.Redis) -> None:
    now_ms = 1_800_000_000_000
    old = now_ms // 60_000 - 60
    await hset(redis_client, KEYS.per_minute(Provider.MAAST, old), {"created": "7"})
    await hset(redis_client, KEYS.per_minute(Provider.MAAST, old + 1), {"created": "5"})
    minutes = await last_minutes(redis_client, KEYS, Provider.MAAST, now_ms=now_ms)
    assert [m.created for m in minutes] == [5] + [0] * 59
