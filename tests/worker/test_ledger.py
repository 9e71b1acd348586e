"""The Redis ledger: claim rules, every transition, leases, reaping, counters."""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Awaitable
from decimal import Decimal
from typing import cast

import pytest
import redis.asyncio as aioredis

from jobs.errors import ErrorInfo, FieldError
from jobs.models import Customer, Invoice, InvoiceReceipt, LineItem, Provider
from jobs.sources import Record
from tests.worker.support import enqueue_records
from worker.dlq import DeadLetters
from worker.enqueue import EnqueueReport
from worker.held import HeldEntry, InvalidTransition, LeaseLost
from worker.keys import ARQ_IN_PROGRESS, ARQ_JOB, Keys
from worker.ledger import Ledger, State

KEYS = Keys("t:")
UNAVAILABLE = ErrorInfo(kind="ProviderUnavailable", reason="unavailable", message="503")
UNKNOWN = ErrorInfo(kind="OutcomeUnknown", reason="outcome_unknown", message="read timeout")
REJECTED = ErrorInfo(
    kind="InvoiceRejected",
    reason="rejected",
    message="bad customer",
    status=422,
    code="2",
    field_errors=(FieldError("customer.id", "unknown"),),
)


def make_invoice(number: str = "INV-1", *, price: str = "10.00", send: bool = False) -> Invoice:
    """A small valid invoice; `price` changes its content (and fingerprint)."""
    return Invoice(
        number=number,
        customer=Customer(id="cust1"),
        lines=[LineItem(description="Widget", quantity=Decimal(1), unit_price=Decimal(price))],
        send=send,
    )


def receipt(number: str = "INV-1", *, sent: bool = False) -> InvoiceReceipt:
    return InvoiceReceipt(
        provider=Provider.MAAST,
        provider_id=f"p-{number}",
        invoice_number=number,
        status="SENT" if sent else "SAVED",
        sent=sent,
    )


async def enqueue(
    redis: aioredis.Redis, *invoices: Invoice, batch: str | None = None
) -> EnqueueReport:
    records = [Record(line=i + 2, invoice=inv) for i, inv in enumerate(invoices)]
    return await enqueue_records(redis, KEYS, records, provider=Provider.MAAST, batch=batch)


async def claim(ledger: Ledger, key: str = "maast:INV-1") -> HeldEntry:
    record = await ledger.get(key)
    assert record is not None
    held = await ledger.claim(key, record.job_id)
    assert held is not None
    return held


async def state_of(ledger: Ledger, key: str = "maast:INV-1") -> State:
    record = await ledger.get(key)
    assert record is not None
    return record.state


async def hgetall(redis: aioredis.Redis, key: str) -> dict[bytes, bytes]:
    """HGETALL, typed (redis-py's stubs mix the sync and async return types)."""
    return await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(key))


async def hset(redis: aioredis.Redis, key: str, mapping: dict[str, str]) -> None:
    """HSET, typed."""
    await cast(Awaitable[int], redis.hset(key, mapping=mapping))


async def counters(redis: aioredis.Redis, key: str) -> dict[str, int]:
    raw = await hgetall(redis, key)
    return {k.decode(): int(v) for k, v in raw.items() if v.isdigit() or v.lstrip(b"-").isdigit()}


async def assert_counts_match(redis: aioredis.Redis, ledger: Ledger) -> None:
    """For every batch: sum(state counters) + superseded == total == members, the
    state counters == its current records by state, `superseded` == its members a
    later batch took over; the totals count every record once, as it is now."""
    grand: Counter[str] = Counter()
    for raw_batch in await redis.zrange(KEYS.batches(), 0, -1):
        batch = raw_batch.decode()
        members = [m.decode() for m in await redis.zrange(KEYS.batch_members(batch), 0, -1)]
        records = await ledger.get_many(members)
        assert all(r is not None for r in records)
        current = [r for r in records if r is not None and r.batch == batch]
        by_state = Counter(r.state.value for r in current)
        c = await counters(redis, KEYS.batch(batch))
        total = c.pop("total", 0)
        superseded = c.pop("superseded", 0)
        for not_a_state in ("created_at_ms", "send", "unverified", "voided", "duplicates_open"):
            c.pop(not_a_state, None)
        states = {k: v for k, v in c.items() if v}
        assert states == dict(by_state), batch
        assert superseded == len(members) - len(current), batch
        assert total == sum(states.values()) + superseded == len(members)
        grand.update(by_state)
    totals = await counters(redis, KEYS.totals())
    for not_a_state in ("unverified", "voided", "duplicates_open"):
        totals.pop(not_a_state, None)
    assert totals.pop("total", 0) == sum(grand.values())
    assert {k: v for k, v in totals.items() if v} == dict(grand)


@pytest.fixture
def ledger(redis_client: aioredis.Redis) -> Ledger:
    return Ledger(redis_client, KEYS, lease_s=5.0)


async def test_claim_returns_none_when_nothing_is_left_to_do(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    assert await ledger.claim("maast:NOPE", "t:maast:NOPE#1") is None
    await enqueue(redis_client, make_invoice())
    assert await ledger.claim("maast:INV-1", "t:maast:INV-1#7") is None  # superseded job
    held = await claim(ledger)
    await held.mark_sending()
    await held.mark_created(receipt())  # created, no send asked
    await held.release()
    assert await ledger.claim("maast:INV-1", held.job_id) is None


async def test_claim_of_rejected_and_dead_lettered_is_none(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.mark_sending()
    await held.dead_letter(REJECTED, attempts=1)
    await held.release()
    assert await state_of(ledger) is State.REJECTED
    assert await ledger.claim("maast:INV-1", held.job_id) is None


async def test_claim_of_sending_record_turns_it_in_doubt(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    # Given a worker cancelled mid-create (it released, the state says sending)
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.mark_sending()
    await held.release()
    # When the job runs again
    again = await claim(ledger)
    # Then the record is in doubt and the runner must look it up first
    assert again.claim.create_maybe_landed
    assert await state_of(ledger) is State.IN_DOUBT
    assert (await ledger.history("maast:INV-1"))[-1]["event"] == "claimed after interruption"
    await again.mark_created(receipt())
    assert await state_of(ledger) is State.CREATED
    await assert_counts_match(redis_client, ledger)


async def test_claim_does_not_steal_a_live_lease(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    assert await ledger.claim("maast:INV-1", held.job_id) is None
    await held.mark_sending()  # the first holder is unaffected


async def test_heartbeat_extends_only_leases_still_held(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice("A"), make_invoice("B"))
    a, b = await claim(ledger, "maast:A"), await claim(ledger, "maast:B")
    await redis_client.zadd(KEYS.leases(), {"maast:A": 1, "maast:B": 1})
    await ledger.reap_expired(now_ms=2)  # both expired; tokens cleared
    a2 = await claim(ledger, "maast:A")
    before = await redis_client.zscore(KEYS.leases(), "maast:A")
    await ledger.heartbeat([a, b, a2])
    assert await redis_client.zscore(KEYS.leases(), "maast:B") is None  # b lost its lease
    after = await redis_client.zscore(KEYS.leases(), "maast:A")
    assert before is not None and after is not None and after >= before


async def test_reap_turns_sending_in_doubt_and_hands_the_job_back(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    # Given a worker that died mid-create, arq's in-progress key still set
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.mark_sending()
    await redis_client.set(ARQ_IN_PROGRESS + held.job_id, b"1", px=310_000)
    await redis_client.zadd(KEYS.queue(Provider.MAAST), {held.job_id: 10**15})  # deferred
    # When its lease has expired and the reaper runs
    assert await ledger.reap_expired(now_ms=10**13) == ["maast:INV-1"]
    # Then: in doubt, arq's lock gone, job due now, lease removed
    assert await state_of(ledger) is State.IN_DOUBT
    assert not await redis_client.exists(ARQ_IN_PROGRESS + held.job_id)
    assert await redis_client.zscore(KEYS.queue(Provider.MAAST), held.job_id) == 10**13
    assert await redis_client.zscore(KEYS.leases(), "maast:INV-1") is None
    assert (await ledger.history("maast:INV-1"))[-1]["event"] == "lease expired"
    assert await ledger.reap_expired(now_ms=10**13) == []
    await assert_counts_match(redis_client, ledger)


async def test_reap_writes_the_job_again_when_arq_dropped_it(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await redis_client.delete(ARQ_JOB + held.job_id)
    await redis_client.zrem(KEYS.queue(Provider.MAAST), held.job_id)
    await ledger.reap_expired(now_ms=2**50)
    assert await redis_client.exists(ARQ_JOB + held.job_id)
    assert await redis_client.zscore(KEYS.queue(Provider.MAAST), held.job_id) == 2**50


async def test_reap_leaves_live_leases(redis_client: aioredis.Redis, ledger: Ledger) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    assert await ledger.reap_expired() == []
    await held.mark_sending()


OPS = (
    "claim",
    "sending",
    "created",
    "sent",
    "doubt",
    "retry",
    "dead",
    "release",
    "reap",
    "enq",
    "requeue",
    "discard",
)


async def test_counters_match_the_ledger_after_a_random_walk(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    rng = random.Random(20261122)
    numbers = [f"N{i}" for i in range(12)]
    held: dict[str, HeldEntry] = {}
    for _ in range(6):
        await enqueue(redis_client, *(make_invoice(n) for n in rng.sample(numbers, 6)))
    for step in range(1500):
        number, op = rng.choice(numbers), rng.choice(OPS)
        await _random_step(redis_client, ledger, held, number, op, rng)
        if step % 100 == 0:
            await assert_counts_match(redis_client, ledger)
    await assert_counts_match(redis_client, ledger)


async def _random_step(
    redis: aioredis.Redis,
    ledger: Ledger,
    held: dict[str, HeldEntry],
    number: str,
    op: str,
    rng: random.Random,
) -> None:
    key = f"maast:{number}"
    entry = held.get(key)
    try:
        if op == "enq":
            price = rng.choice(["10.00", "11.00"])
            await enqueue(redis, make_invoice(number, price=price, send=rng.random() < 0.5))
        elif op == "claim":
            record = await ledger.get(key)
            if record is not None and (new := await ledger.claim(key, record.job_id)):
                held[key] = new
        elif op == "reap":
            await ledger.reap_expired(now_ms=2**50 if rng.random() < 0.3 else None)
        elif op == "requeue":
            fix = rng.choice([None, "10.00", "12.00"])
            fixed = None if fix is None else make_invoice(number, price=fix)
            with contextlib.suppress(KeyError):
                await DeadLetters(redis, KEYS).requeue(key, payload=fixed)
        elif op == "discard":
            await DeadLetters(redis, KEYS).discard(key)
        elif entry is not None:
            await _held_step(entry, op, rng)
    except (LeaseLost, InvalidTransition):
        held.pop(key, None)


async def _held_step(entry: HeldEntry, op: str, rng: random.Random) -> None:
    number = entry.invoice_key.split(":")[1]
    if op == "sending":
        await entry.mark_sending()
    elif op == "created":
        await entry.mark_created(receipt(number, sent=rng.random() < 0.2))
    elif op == "sent":
        await entry.mark_sent(receipt(number, sent=True))
    elif op == "doubt":
        await entry.mark_in_doubt(UNKNOWN)
    elif op == "retry":
        await entry.retry_later(UNAVAILABLE, count_failure=True)
    elif op == "dead":
        await entry.dead_letter(rng.choice([REJECTED, UNKNOWN]), attempts=1)
    elif op == "release":
        await entry.release()
