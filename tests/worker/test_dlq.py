"""Dead letters: put, list, filter, get, requeue (corrected), discard, export."""

from __future__ import annotations

import csv
import io

import pytest
import redis.asyncio as aioredis

from jobs.errors import ErrorInfo
from jobs.models import Provider
from tests.worker.test_ledger import (
    KEYS,
    REJECTED,
    UNKNOWN,
    assert_counts_match,
    claim,
    enqueue,
    hset,
    make_invoice,
    receipt,
)
from worker.dlq import DeadLetters
from worker.enqueue import EnqueueOutcome
from worker.keys import ARQ_JOB
from worker.ledger import Ledger, State

FORMULA = ErrorInfo(kind="InvoiceRejected", reason="rejected", message="=HYPERLINK(evil)")


@pytest.fixture
def ledger(redis_client: aioredis.Redis) -> Ledger:
    return Ledger(redis_client, KEYS)


@pytest.fixture
def dlq(redis_client: aioredis.Redis) -> DeadLetters:
    return DeadLetters(redis_client, KEYS)


async def park(ledger: Ledger, number: str, error: ErrorInfo, *, in_doubt: bool = False) -> None:
    held = await claim(ledger, f"maast:{number}")
    await held.mark_sending()
    if in_doubt:
        await held.mark_in_doubt(error)
    await held.dead_letter(error, attempts=2)
    await held.release()


async def test_put_get_list_and_filter(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    first = await enqueue(redis_client, make_invoice("A"), make_invoice("B"))
    second = await enqueue(redis_client, make_invoice("C"))
    await park(ledger, "A", REJECTED)
    await park(ledger, "B", UNKNOWN, in_doubt=True)
    await park(ledger, "C", REJECTED)

    assert await dlq.count() == 3
    entry = await dlq.get("maast:A")
    assert entry is not None
    assert entry.provider is Provider.MAAST and entry.number == "A"
    assert entry.batch == first.batch_id and entry.reason == "rejected"
    assert entry.status == 422 and entry.code == "2" and entry.attempts == 2
    assert entry.field_errors == list(REJECTED.field_errors)
    assert entry.payload == make_invoice("A").model_dump_json()
    assert entry.last_at_ms >= entry.first_at_ms > 0
    assert await dlq.get("maast:NOPE") is None

    listed = await dlq.list()
    assert {e.invoice_key for e in listed} == {"maast:A", "maast:B", "maast:C"}
    assert [e.last_at_ms for e in listed] == sorted((e.last_at_ms for e in listed), reverse=True)
    assert [e.number for e in await dlq.list(batch=second.batch_id)] == ["C"]
    assert [e.number for e in await dlq.list(reason="in_doubt")] == ["B"]
    assert len(await dlq.list(offset=1, limit=1)) == 1
    assert len(await dlq.list(offset=3)) == 0


async def test_requeue_with_corrected_payload_supersedes(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    report = await enqueue(redis_client, make_invoice("A"))
    await park(ledger, "A", REJECTED)
    fixed = make_invoice("A", price="12.00")
    assert await dlq.requeue("maast:A", payload=fixed) is EnqueueOutcome.SUPERSEDED
    record = await ledger.get("maast:A")
    assert record is not None
    assert record.state is State.QUEUED and record.generation == 2
    assert record.batch == report.batch_id and record.payload == fixed.model_dump_json()
    assert not record.dead_lettered and await dlq.count() == 0
    assert await redis_client.exists(ARQ_JOB + record.job_id)
    held = await claim(ledger, "maast:A")
    assert not held.claim.create_maybe_landed
    await assert_counts_match(redis_client, ledger)


async def test_requeue_of_in_doubt_keeps_the_lookup(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    await enqueue(redis_client, make_invoice("A"))
    await park(ledger, "A", UNKNOWN, in_doubt=True)
    assert await dlq.requeue("maast:A") is EnqueueOutcome.SUPERSEDED
    record = await ledger.get("maast:A")
    assert record is not None and record.state is State.IN_DOUBT and record.generation == 2
    held = await claim(ledger, "maast:A")
    assert held.claim.create_maybe_landed  # looked up before any create: no duplicate
    await assert_counts_match(redis_client, ledger)


async def test_requeue_after_the_invoice_was_created_meanwhile(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    await enqueue(redis_client, make_invoice("A"))
    await park(ledger, "A", UNKNOWN, in_doubt=True)
    # Meanwhile an operator's requeue ran and the lookup found the invoice
    await dlq.requeue("maast:A")
    held = await claim(ledger, "maast:A")
    await held.mark_created(receipt("A"))
    await held.release()
    # and a stale dead letter for it reappears (e.g. a second park raced it)
    await hset(redis_client, KEYS.ledger("maast:A"), {"dlq": "1"})
    stale = {"invoice_key": "maast:A", "provider": "maast", "number": "A", "batch": "x"}
    stale["payload"] = make_invoice("A").model_dump_json()
    await hset(redis_client, KEYS.dead_letter("maast:A"), stale)
    await redis_client.zadd(KEYS.dead_letters(), {"maast:A": 1})
    jobs_before = await redis_client.zcard(KEYS.queue(Provider.MAAST))
    assert await dlq.requeue("maast:A") is EnqueueOutcome.ALREADY_CREATED
    assert await redis_client.zcard(KEYS.queue(Provider.MAAST)) == jobs_before
    assert await dlq.count() == 0
    record = await ledger.get("maast:A")
    assert record is not None and record.state is State.CREATED and record.generation == 2


async def test_requeue_of_failed_send_sends_again(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    await enqueue(redis_client, make_invoice("A", send=True))
    held = await claim(ledger, "maast:A")
    await held.mark_sending()
    await held.mark_created(receipt("A"))
    await held.dead_letter(REJECTED, attempts=1)
    await held.release()
    assert await dlq.requeue("maast:A") is EnqueueOutcome.SUPERSEDED
    again = await claim(ledger, "maast:A")
    assert again.claim.receipt == receipt("A")


async def test_requeue_rejects_unknown_keys_and_other_numbers(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    with pytest.raises(KeyError):
        await dlq.requeue("maast:NOPE")
    await enqueue(redis_client, make_invoice("A"))
    await park(ledger, "A", REJECTED)
    with pytest.raises(ValueError, match="number"):
        await dlq.requeue("maast:A", payload=make_invoice("B"))


async def test_requeue_many(redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters) -> None:
    first = await enqueue(redis_client, make_invoice("A"), make_invoice("B"))
    await enqueue(redis_client, make_invoice("C"))
    for number in "ABC":
        await park(ledger, number, REJECTED)
    with pytest.raises(ValueError):
        await dlq.requeue_many()
    assert await dlq.requeue_many(batch=first.batch_id) == {EnqueueOutcome.SUPERSEDED: 2}
    assert [e.number for e in await dlq.list()] == ["C"]
    assert await dlq.requeue_many(all=True) == {EnqueueOutcome.SUPERSEDED: 1}
    await assert_counts_match(redis_client, ledger)


async def test_discard(redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters) -> None:
    await enqueue(redis_client, make_invoice("A"), make_invoice("B"))
    await park(ledger, "A", REJECTED)
    await park(ledger, "B", UNKNOWN, in_doubt=True)
    assert await dlq.discard("maast:A") and await dlq.discard("maast:B")
    assert not await dlq.discard("maast:A")
    assert await dlq.count() == 0
    assert await redis_client.exists(KEYS.dead_letter("maast:A")) == 0
    for key in ("maast:A", "maast:B"):
        record = await ledger.get(key)
        assert record is not None and record.state is State.DISCARDED
    await assert_counts_match(redis_client, ledger)
    # Re-enqueueing a discarded in-doubt invoice looks it up before creating
    await enqueue(redis_client, make_invoice("B"))
    held = await claim(ledger, "maast:B")
    assert held.claim.create_maybe_landed


async def test_export_csv_neutralises_formulas(
    redis_client: aioredis.Redis, ledger: Ledger, dlq: DeadLetters
) -> None:
    await enqueue(redis_client, make_invoice("A"), make_invoice("B"))
    await park(ledger, "A", FORMULA)
    await park(ledger, "B", REJECTED)
    out = io.StringIO()
    assert await dlq.export_csv(out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    by_key = {row["invoice_key"]: row for row in rows}
    assert by_key["maast:A"]["message"] == "'=HYPERLINK(evil)"
    assert by_key["maast:B"]["field_errors"] == "customer.id: unknown"
    assert by_key["maast:B"]["status"] == "422"
    assert by_key["maast:B"]["last_at"].endswith("Z")
    out = io.StringIO()
    assert await dlq.export_csv(out, reason="nothing") == 0
