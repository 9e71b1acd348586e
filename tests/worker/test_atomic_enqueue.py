"""All-or-nothing enqueue of a list: every invoice accepted, or nothing written at all."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from jobs.models import Invoice, Provider
from jobs.sources import Record, RecordError
from tests.worker.test_ledger import (
    KEYS,
    REJECTED,
    assert_counts_match,
    claim,
    enqueue,
    make_invoice,
    state_of,
)
from worker.atomic_enqueue import MAX_INVOICES, ListRefused, enqueue_atomically
from worker.enqueue import EnqueueReport
from worker.intake import Intake, prepared
from worker.ledger import Ledger, State

INTAKE = Intake(Provider.MAAST, rules=lambda invoice: None)


async def atomically(
    redis: aioredis.Redis, *items: Invoice | RecordError, batch: str | None = None
) -> EnqueueReport:
    records = [
        Record(line=i + 1, invoice=x) if isinstance(x, Invoice) else x for i, x in enumerate(items)
    ]
    return await enqueue_atomically(redis, KEYS, prepared(records, INTAKE), INTAKE, batch=batch)


async def keys_left(redis: aioredis.Redis) -> list[bytes]:
    """Every key, but the Redis instance check (written once per process, `worker.epoch`)."""
    return [k for k in await redis.keys("*") if k != KEYS.epoch().encode()]


async def snapshot(redis: aioredis.Redis) -> dict[bytes, bytes | None]:
    """Every key and its DUMP: equal snapshots mean nothing was written."""
    return {k: await redis.dump(k) for k in sorted(await redis.keys("*"))}


async def test_a_list_is_enqueued_whole_with_each_outcome(redis_client: aioredis.Redis) -> None:
    await enqueue(redis_client, make_invoice("DUP"))
    report = await atomically(
        redis_client, make_invoice("A"), make_invoice("DUP"), make_invoice("B"), batch="api"
    )
    assert (report.accepted, report.duplicates, report.conflicts) == (2, 1, [])
    ledger = Ledger(redis_client, KEYS)
    assert await state_of(ledger, "maast:A") is State.QUEUED
    record = await ledger.get("maast:B")
    assert record is not None and record.batch == report.batch_id
    info = await redis_client.hgetall(KEYS.batch(report.batch_id))  # type: ignore[misc]
    assert info[b"name"] == b"api" and info[b"provider"] == b"maast" and info[b"total"] == b"2"
    assert await redis_client.zscore(KEYS.batches(), report.batch_id) is not None
    assert await redis_client.zcard(KEYS.queue(Provider.MAAST)) == 3
    await assert_counts_match(redis_client, ledger)


async def test_one_conflict_and_nothing_of_the_list_is_written(
    redis_client: aioredis.Redis,
) -> None:
    await enqueue(redis_client, make_invoice("TAKEN"), batch="first")
    before = await snapshot(redis_client)
    with pytest.raises(ListRefused) as refused:
        await atomically(
            redis_client,
            make_invoice("NEW-1"),
            make_invoice("TAKEN", price="99.00"),
            make_invoice("NEW-2"),
        )
    assert refused.value.report.conflicts == [
        (2, "TAKEN", "invoice TAKEN is already queued with different content")
    ]
    assert refused.value.report.accepted == 0
    assert await snapshot(redis_client) == before  # no invoice, no job, no batch, no counter


async def test_two_copies_of_a_number_with_other_content_in_one_list_conflict(
    redis_client: aioredis.Redis,
) -> None:
    with pytest.raises(ListRefused) as refused:
        await atomically(redis_client, make_invoice("TWICE"), make_invoice("TWICE", price="2.00"))
    assert [(line, number) for line, number, _ in refused.value.report.conflicts] == [(2, "TWICE")]
    assert await keys_left(redis_client) == []
    same = await atomically(redis_client, make_invoice("TWICE"), make_invoice("TWICE"))
    assert (same.accepted, same.duplicates) == (1, 1)


async def test_a_rejected_number_with_new_content_supersedes_instead_of_conflicting(
    redis_client: aioredis.Redis,
) -> None:
    await enqueue(redis_client, make_invoice("FIX"))
    held = await claim(Ledger(redis_client, KEYS), "maast:FIX")
    await held.mark_sending()
    await held.dead_letter(REJECTED, attempts=1)
    await held.release()
    report = await atomically(redis_client, make_invoice("FIX", price="11.00"), make_invoice("C"))
    assert (report.accepted, report.superseded) == (2, 1)
    assert await state_of(Ledger(redis_client, KEYS), "maast:FIX") is State.QUEUED
    await assert_counts_match(redis_client, Ledger(redis_client, KEYS))


async def test_an_invalid_record_refuses_the_list_before_any_write(
    redis_client: aioredis.Redis,
) -> None:
    bad = RecordError(2, "must be greater than 0", field="lines[0].quantity", invoice_number="X")
    with pytest.raises(ListRefused) as refused:
        await atomically(redis_client, make_invoice("OK"), bad)
    assert refused.value.report.invalid == [bad]
    assert await keys_left(redis_client) == []


async def test_more_than_the_bound_is_refused(redis_client: aioredis.Redis) -> None:
    too_many = [make_invoice(f"N-{i}") for i in range(MAX_INVOICES + 1)]
    with pytest.raises(ValueError, match="at most 1,000"):
        await atomically(redis_client, *too_many)
    assert await keys_left(redis_client) == []


async def test_racing_lists_with_a_shared_number_one_wins_whole(redis_url: str) -> None:
    """Two lists sharing a number with other content, sent at once from two clients:
    one is enqueued whole, the other not at all (never half of each)."""
    left = [make_invoice(f"L-{i}") for i in range(300)] + [make_invoice("SHARED", price="1.00")]
    right = [make_invoice("SHARED", price="2.00")] + [make_invoice(f"R-{i}") for i in range(300)]
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        await clients[0].flushdb()
        results = await asyncio.gather(
            atomically(clients[0], *left), atomically(clients[1], *right), return_exceptions=True
        )
        won = [r for r in results if isinstance(r, EnqueueReport)]
        lost = [r for r in results if isinstance(r, ListRefused)]
        assert len(won) == 1 and len(lost) == 1, results
        assert won[0].accepted == 301
        assert await clients[0].zcard(KEYS.queue(Provider.MAAST)) == 301
        assert await clients[0].zcard(KEYS.batches()) == 1
        await assert_counts_match(clients[0], Ledger(clients[0], KEYS))
    finally:
        for c in clients:
            await c.aclose()
