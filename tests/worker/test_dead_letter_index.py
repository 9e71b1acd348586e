"""The dead-letter indexes: per-reason counts and per-reason / per-batch lists stay exact."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from jobs.models import Provider
from jobs.sources import RecordError
from tests.worker.support import enqueue_records
from tests.worker.test_dlq import park
from tests.worker.test_ledger import (
    KEYS,
    REJECTED,
    UNAVAILABLE,
    UNKNOWN,
    assert_counts_match,
    claim,
    enqueue,
    hgetall,
    make_invoice,
)
from worker.dlq import DeadLetters
from worker.ledger import Ledger


@pytest.fixture
def ledger(redis_client: aioredis.Redis) -> Ledger:
    return Ledger(redis_client, KEYS)


@pytest.fixture
def dlq(redis_client: aioredis.Redis) -> DeadLetters:
    return DeadLetters(redis_client, KEYS)


async def exhaust(ledger: Ledger, number: str) -> None:
    """Dead-letter as when the retry budget runs out before any request left."""
    held = await claim(ledger, f"maast:{number}")
    await held.dead_letter(UNAVAILABLE, attempts=8)
    await held.release()


async def assert_indexes_match(redis: aioredis.Redis, dlq: DeadLetters) -> None:
    """Counts and indexes agree with the entries themselves."""
    entries = [e async for e in dlq._scan()]
    by_reason: dict[str, set[str]] = {}
    by_batch: dict[str, set[str]] = {}
    for e in entries:
        by_reason.setdefault(e.reason, set()).add(e.invoice_key)
        by_batch.setdefault(e.batch, set()).add(e.invoice_key)
    assert await dlq.reason_counts() == {r: len(k) for r, k in by_reason.items()}
    for reason, members in by_reason.items():
        indexed = await redis.zrange(KEYS.dead_letters_by_reason(reason), 0, -1)
        assert {m.decode() for m in indexed} == members
    for batch, members in by_batch.items():
        indexed = await redis.zrange(KEYS.dead_letters_of_batch(batch), 0, -1)
        assert {m.decode() for m in indexed} == members
        of_batch = {e.reason for e in entries if e.batch == batch}
        assert await dlq.reason_counts(batch=batch) == {
            r: len([e for e in entries if e.batch == batch and e.reason == r]) for r in of_batch
        }
        for reason in of_batch:
            both = await redis.zrange(KEYS.dead_letters_of_batch_reason(batch, reason), 0, -1)
            assert {m.decode() for m in both} == by_reason[reason] & members
    for provider in Provider:
        mine = {e.invoice_key for e in entries if e.provider is provider}
        indexed = await redis.zrange(KEYS.dead_letters_of_provider(provider), 0, -1)
        assert {m.decode() for m in indexed} == mine
        for reason, members in by_reason.items():
            key = KEYS.dead_letters_of_provider_reason(provider, reason)
            assert {m.decode() for m in await redis.zrange(key, 0, -1)} == members & mine


async def test_counts_by_reason_and_filtered_lists_read_the_indexes(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    first = await enqueue(redis_client, *(make_invoice(n) for n in "ABCD"))
    second = await enqueue(redis_client, make_invoice("E"))
    await park(ledger, "A", REJECTED)
    await park(ledger, "B", REJECTED)
    await park(ledger, "C", UNKNOWN, in_doubt=True)
    await exhaust(ledger, "D")
    await park(ledger, "E", REJECTED)

    assert await dlq.reason_counts() == {"rejected": 3, "exhausted": 1, "in_doubt": 1}
    assert list(await dlq.reason_counts()) == ["rejected", "exhausted", "in_doubt"]
    assert await dlq.count(reason="rejected") == 3
    assert await dlq.count(batch=first.batch_id) == 4
    assert await dlq.count(batch=second.batch_id, reason="rejected") == 1
    assert await dlq.count(batch=second.batch_id, reason="in_doubt") == 0
    assert [e.number for e in await dlq.list(reason="rejected")] == ["E", "B", "A"]
    assert [e.number for e in await dlq.list(reason="rejected", offset=1, limit=1)] == ["B"]
    assert [e.number for e in await dlq.list(batch=first.batch_id, offset=3)] == ["A"]
    assert [
        e.number for e in await dlq.list(batch=first.batch_id, reason="rejected", offset=1)
    ] == ["A"]
    await assert_indexes_match(redis_client, dlq)


async def test_requeue_discard_and_parking_again_keep_the_indexes_exact(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    report = await enqueue(redis_client, *(make_invoice(n) for n in "ABC"))
    await park(ledger, "A", REJECTED)
    await park(ledger, "B", UNKNOWN, in_doubt=True)
    await park(ledger, "C", REJECTED)

    await dlq.requeue("maast:A")
    assert await dlq.reason_counts() == {"rejected": 1, "in_doubt": 1}
    assert await dlq.discard("maast:B")
    assert await dlq.reason_counts() == {"rejected": 1}
    await assert_indexes_match(redis_client, dlq)

    # A requeued invoice that fails again is parked under its new reason.
    await exhaust(ledger, "A")
    assert await dlq.reason_counts() == {"rejected": 1, "exhausted": 1}
    assert await dlq.count(batch=report.batch_id) == 2
    await dlq.requeue_many(all=True)
    assert await dlq.reason_counts() == {}
    assert await redis_client.exists(KEYS.dead_letter_reasons()) == 0
    assert await redis_client.exists(KEYS.dead_letters_of_batch(report.batch_id)) == 0
    assert await redis_client.exists(KEYS.dead_letter_reasons_of_batch(report.batch_id)) == 0
    await assert_counts_match(redis_client, ledger)


async def test_records_invalid_at_enqueue_are_indexed_and_replaced_not_doubled(
    redis_client: aioredis.Redis, dlq: DeadLetters
) -> None:
    bad = RecordError(line=3, message="not a number", field="quantity", invoice_number="BAD-1")
    for batch in ("b1", "b2"):  # the same bad record in two runs: one entry
        await enqueue_records(redis_client, KEYS, [bad], provider=Provider.MAAST, batch=batch)
    batches = [b.decode() for b in await redis_client.zrange(KEYS.batches(), 0, -1)]
    assert await dlq.reason_counts() == {"invalid": 1}
    assert [await dlq.count(batch=b) for b in batches] == [0, 1]
    await assert_indexes_match(redis_client, dlq)
    raw = await hgetall(redis_client, KEYS.dead_letter_reasons())
    assert raw == {b"invalid": b"1"}


class RoundTrips:
    """Counts what a client sends to Redis: one per command, one per pipeline."""

    def __init__(self, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        command: Callable[..., Awaitable[Any]] = redis.execute_command
        execute = Pipeline.execute

        async def counted_command(*args: Any, **options: Any) -> Any:
            self.count += 1
            return await command(*args, **options)

        async def counted_execute(pipe: Pipeline, raise_on_error: bool = True) -> list[Any]:
            self.count += 1
            return await execute(pipe, raise_on_error)

        monkeypatch.setattr(redis, "execute_command", counted_command)
        monkeypatch.setattr(Pipeline, "execute", counted_execute)


async def test_a_rare_provider_or_reason_is_one_page_of_reads_not_a_walk(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 Maast entries parked after 5 Stax ones: a Stax page reads its index, not 1,000."""
    stax = [RecordError(2, "bad", field="lines", invoice_number=f"S-{i}") for i in range(5)]
    old = await enqueue_records(redis_client, KEYS, stax, provider=Provider.STAX, batch="old")
    await enqueue(redis_client, make_invoice("R"))
    await park(ledger, "R", REJECTED)
    common = [RecordError(2, "bad", field="lines", invoice_number=f"M-{i}") for i in range(1000)]
    big = await enqueue_records(redis_client, KEYS, common, provider=Provider.MAAST, batch="big")
    await assert_indexes_match(redis_client, dlq)

    trips = RoundTrips(redis_client, monkeypatch)
    page = await dlq.list(provider=Provider.STAX, limit=50)
    assert sorted(e.number for e in page) == [f"S-{i}" for i in range(5)]
    assert trips.count <= 2  # the index range, then the entries in one pipeline
    trips.count = 0
    page = await dlq.list(provider=Provider.MAAST, reason="rejected", limit=50)
    assert [e.number for e in page] == ["R"] and trips.count <= 2
    trips.count = 0
    assert [e.number for e in await dlq.list(provider=Provider.STAX, offset=3)] == ["S-1", "S-0"]
    assert trips.count <= 2
    trips.count = 0
    assert await dlq.list(batch=big.batch_id, provider=Provider.STAX) == []
    assert await dlq.count(batch=big.batch_id, provider=Provider.STAX) == 0
    assert trips.count <= 2  # the batch's provider is one read
    assert len(await dlq.list(batch=old.batch_id, provider=Provider.STAX, reason="invalid")) == 5
    assert await dlq.count(provider=Provider.STAX) == 5
    assert await dlq.count(provider=Provider.MAAST, reason="invalid") == 1000
    await dlq.discard("stax:S-0")
    assert await dlq.count(provider=Provider.STAX, reason="invalid") == 4
    await assert_indexes_match(redis_client, dlq)
