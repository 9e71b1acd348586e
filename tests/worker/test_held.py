"""Held entries: every transition a worker makes, lease checks, dead letters."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from tests.worker.test_ledger import (
    KEYS,
    REJECTED,
    UNAVAILABLE,
    UNKNOWN,
    assert_counts_match,
    claim,
    counters,
    enqueue,
    hgetall,
    make_invoice,
    receipt,
    state_of,
)
from worker.keys import ARQ_JOB
from worker.ledger import Ledger, State


@pytest.fixture
def ledger(redis_client: aioredis.Redis) -> Ledger:
    return Ledger(redis_client, KEYS)


async def test_happy_path_moves_state_counters_history_and_throughput(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    report = await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    assert held.claim.receipt is None and not held.claim.create_maybe_landed
    assert await redis_client.zscore(KEYS.leases(), "maast:INV-1") is not None

    await held.mark_sending()
    assert await state_of(ledger) is State.SENDING
    await held.mark_created(receipt())
    await held.release()

    record = await ledger.get("maast:INV-1")
    assert record is not None and record.state is State.CREATED
    assert record.receipt == receipt()
    assert await redis_client.zscore(KEYS.leases(), "maast:INV-1") is None
    assert [e["event"] for e in await ledger.history("maast:INV-1")] == [
        "enqueued",
        "sending",
        "created",
    ]
    assert await redis_client.zrange(KEYS.throughput(Provider.MAAST), 0, -1) == [
        b"maast:INV-1|created"
    ]
    batch = await counters(redis_client, KEYS.batch(report.batch_id))
    assert batch["created"] == 1 and batch["queued"] == 0 and batch["total"] == 1
    await assert_counts_match(redis_client, ledger)


async def test_created_with_sent_receipt_goes_straight_to_sent(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice(send=True))
    held = await claim(ledger)
    await held.mark_sending()
    await held.mark_created(receipt(sent=True))
    assert await state_of(ledger) is State.SENT
    await assert_counts_match(redis_client, ledger)


async def test_send_step_and_claim_of_created_invoice(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice(send=True))
    held = await claim(ledger)
    await held.mark_sending()
    await held.mark_created(receipt())
    await held.mark_send_started()
    await held.release()  # e.g. the worker was cancelled during the send

    again = await claim(ledger)
    assert again.claim.receipt == receipt()
    assert again.claim.send_maybe_landed and not again.claim.create_maybe_landed
    await again.mark_sent(receipt(sent=True))
    await again.release()
    record = await ledger.get("maast:INV-1")
    assert record is not None and record.state is State.SENT and record.send_started
    assert record.receipt is not None and record.receipt.sent
    await assert_counts_match(redis_client, ledger)


async def test_send_outcome_unknown_keeps_created(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice(send=True))
    held = await claim(ledger)
    await held.mark_sending()
    await held.mark_created(receipt())
    await held.mark_send_started()
    await held.mark_in_doubt(UNKNOWN)
    await held.release()
    record = await ledger.get("maast:INV-1")
    assert record is not None and record.state is State.CREATED and record.failures == 1
    again = await claim(ledger)
    assert again.claim.send_maybe_landed and again.claim.receipt == receipt()


async def test_release_rewrites_a_job_that_is_gone_while_work_remains(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.retry_later(UNAVAILABLE, count_failure=True)
    await redis_client.delete(ARQ_JOB + held.job_id)  # another run finished the job
    await held.release()
    assert await redis_client.exists(ARQ_JOB + held.job_id)


async def test_retry_later_and_in_doubt_transitions(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.mark_sending()
    await held.retry_later(UNAVAILABLE, count_failure=True)
    assert await state_of(ledger) is State.QUEUED
    await held.retry_later(None, count_failure=False)  # rate limited: no failure
    await held.mark_sending()
    await held.mark_in_doubt(UNKNOWN)
    await held.retry_later(UNKNOWN, count_failure=False)  # in doubt stays in doubt
    record = await ledger.get("maast:INV-1")
    assert record is not None
    assert record.state is State.IN_DOUBT
    assert record.failures == 2
    assert record.error == UNKNOWN
    assert held.failures == 0  # the claim-time count
    await held.mark_sending()  # in_doubt -> sending after a lookup found nothing
    assert await state_of(ledger) is State.SENDING
    await assert_counts_match(redis_client, ledger)


async def test_dead_letter_in_doubt_stays_in_doubt(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.mark_sending()
    await held.mark_in_doubt(UNKNOWN)
    await held.dead_letter(UNKNOWN, attempts=3)
    record = await ledger.get("maast:INV-1")
    assert record is not None and record.state is State.IN_DOUBT and record.dead_lettered
    entry = await hgetall(redis_client, KEYS.dead_letter("maast:INV-1"))
    assert entry[b"reason"] == b"in_doubt" and entry[b"attempts"] == b"3"
    await assert_counts_match(redis_client, ledger)


async def test_dead_letter_of_exhausted_budget(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.mark_sending()
    await held.retry_later(UNAVAILABLE, count_failure=True)
    await held.dead_letter(UNAVAILABLE, attempts=8)
    assert await state_of(ledger) is State.REJECTED
    entry = await hgetall(redis_client, KEYS.dead_letter("maast:INV-1"))
    assert entry[b"reason"] == b"exhausted" and entry[b"kind"] == b"ProviderUnavailable"


async def test_dead_letter_of_created_invoice_keeps_its_receipt(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice(send=True))
    held = await claim(ledger)
    await held.mark_sending()
    await held.mark_created(receipt())
    await held.dead_letter(REJECTED, attempts=1)  # the send was refused
    record = await ledger.get("maast:INV-1")
    assert record is not None and record.state is State.CREATED and record.receipt is not None
