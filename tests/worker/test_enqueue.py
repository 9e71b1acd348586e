"""Bulk enqueue: outcomes per invoice, chunked pipelines, arq-readable jobs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from arq.jobs import deserialize_job

from jobs.models import Provider
from jobs.sources import Record, RecordError
from tests.worker.support import enqueue_records
from tests.worker.test_ledger import (
    KEYS,
    REJECTED,
    assert_counts_match,
    claim,
    hgetall,
    make_invoice,
    receipt,
)
from worker.arq_job import JOB_FUNCTION
from worker.enqueue import EnqueueOutcome, Enqueuer, new_batch_id
from worker.keys import ARQ_JOB
from worker.ledger import Ledger, State


async def test_new_invoices_are_accepted_with_ledger_batch_and_arq_job(
    redis_client: aioredis.Redis,
) -> None:
    records = [Record(line=2, invoice=make_invoice("A")), Record(line=3, invoice=make_invoice("B"))]
    report = await enqueue_records(
        redis_client, KEYS, records, provider=Provider.MAAST, batch="March run", send=True
    )
    assert report.accepted == 2 and report.ok
    assert report.batch_id.startswith("march-run-")
    batch = await hgetall(redis_client, KEYS.batch(report.batch_id))
    assert batch[b"name"] == b"March run" and batch[b"provider"] == b"maast"
    assert batch[b"queued"] == b"2" and batch[b"total"] == b"2"
    assert await redis_client.zscore(KEYS.batches(), report.batch_id) is not None
    ledger = Ledger(redis_client, KEYS)
    record = await ledger.get("maast:A")
    assert record is not None and record.state is State.QUEUED and record.generation == 1
    assert record.fingerprint == make_invoice("A", send=True).fingerprint()
    assert '"send":true' in record.payload
    raw = await redis_client.get(ARQ_JOB + record.job_id)
    assert raw is not None
    assert json.loads(raw) == {
        "t": 1,
        "f": JOB_FUNCTION,
        "a": ["maast:A"],
        "k": {},
        "et": json.loads(raw)["et"],
    }
    assert await redis_client.pttl(ARQ_JOB + record.job_id) == -1  # no TTL: never dropped
    assert await redis_client.zscore(KEYS.queue(Provider.MAAST), record.job_id) is not None


async def test_duplicate_conflict_and_already_created(redis_client: aioredis.Redis) -> None:
    await enqueue_records(
        redis_client, KEYS, [Record(1, make_invoice("A"))], provider=Provider.MAAST
    )
    again = [
        Record(line=2, invoice=make_invoice("A")),  # same content: duplicate
        Record(line=3, invoice=make_invoice("A", price="99.00")),  # other content: conflict
    ]
    report = await enqueue_records(redis_client, KEYS, again, provider=Provider.MAAST)
    assert report.duplicates == 1 and report.accepted == 0 and not report.ok
    assert report.conflicts == [(3, "A", "invoice A is already queued with different content")]

    ledger = Ledger(redis_client, KEYS)
    held = await claim(ledger, "maast:A")
    await held.mark_sending()
    await held.mark_created(receipt("A"))
    report = await enqueue_records(
        redis_client, KEYS, [Record(1, make_invoice("A"))], provider=Provider.MAAST
    )
    assert report.already_created == 1
    assert (await redis_client.zcard(KEYS.queue(Provider.MAAST))) == 1  # no second job
    await assert_counts_match(redis_client, ledger)


async def test_rejected_invoice_is_superseded_into_the_new_batch(
    redis_client: aioredis.Redis,
) -> None:
    first = await enqueue_records(
        redis_client, KEYS, [Record(1, make_invoice("A"))], provider=Provider.MAAST
    )
    ledger = Ledger(redis_client, KEYS)
    held = await claim(ledger, "maast:A")
    await held.mark_sending()
    await held.dead_letter(REJECTED, attempts=1)
    await held.release()

    fixed = make_invoice("A", price="12.00")
    second = await enqueue_records(redis_client, KEYS, [Record(1, fixed)], provider=Provider.MAAST)
    assert second.accepted == 1 and second.superseded == 1
    record = await ledger.get("maast:A")
    assert record is not None
    assert record.state is State.QUEUED and record.generation == 2
    assert record.job_id == KEYS.job_id("maast:A", 2) and record.batch == second.batch_id
    assert record.fingerprint == fixed.fingerprint() and not record.dead_lettered
    assert await redis_client.exists(ARQ_JOB + record.job_id)
    assert not await redis_client.exists(KEYS.dead_letter("maast:A"))
    assert await redis_client.zcard(KEYS.dead_letters()) == 0
    # The first batch keeps it as history (item 11): a member, counted superseded.
    assert await redis_client.zcard(KEYS.batch_members(first.batch_id)) == 1
    was = await hgetall(redis_client, KEYS.batch(first.batch_id))
    assert (was[b"superseded"], was[b"rejected"], was[b"total"]) == (b"1", b"0", b"1")
    assert record.supersedes == first.batch_id
    assert await ledger.claim("maast:A", held.job_id) is None  # the old job is stale
    await assert_counts_match(redis_client, ledger)


async def test_chunked_enqueue_writes_jobs_arq_can_read(redis_client: aioredis.Redis) -> None:
    progress: list[int] = []
    records = (Record(line=i, invoice=make_invoice(f"INV-{i}")) for i in range(2000))
    report = await enqueue_records(
        redis_client,
        KEYS,
        records,
        provider=Provider.STAX,
        chunk_size=300,
        on_progress=progress.append,
    )
    assert report.accepted == 2000
    assert progress[0] == 300 and progress[-1] == 2000
    queue = KEYS.queue(Provider.STAX)
    job_ids = [j.decode() for j in await redis_client.zrange(queue, 0, -1)]
    assert len(job_ids) == 2000
    raws = await redis_client.mget([ARQ_JOB + j for j in job_ids])
    keys = set()
    for raw in raws:
        job = deserialize_job(raw, deserializer=json.loads)
        assert job.function == JOB_FUNCTION and job.job_try == 1 and not job.kwargs
        keys.add(job.args[0])
    assert keys == {f"stax:INV-{i}" for i in range(2000)}
    await assert_counts_match(redis_client, Ledger(redis_client, KEYS))


async def test_invalid_records_and_other_providers_are_reported(
    redis_client: aioredis.Redis,
) -> None:
    async def records() -> AsyncIterator[Record | RecordError]:
        yield RecordError(line=2, message="lines: required", field="lines", invoice_number="X")
        yield Record(line=3, invoice=make_invoice("B"), provider=Provider.STAX)
        yield Record(line=4, invoice=make_invoice("C"), provider=Provider.MAAST)

    report = await enqueue_records(redis_client, KEYS, records(), provider=Provider.MAAST)
    assert report.accepted == 1 and not report.ok
    assert [e.line for e in report.invalid] == [2, 3]
    data = report.as_dict()
    assert data["accepted"] == 1 and data["ok"] is False
    assert data["invalid"] == [
        {"line": 2, "invoice_number": "X", "field": "lines", "message": "lines: required"},
        {
            "line": 3,
            "invoice_number": "B",
            "field": "provider",
            "message": "record is for stax, this batch is for maast",
        },
    ]
    assert json.dumps(data)


async def test_accounts_keep_invoice_numbers_apart(redis_client: aioredis.Redis) -> None:
    enqueuer = Enqueuer(redis_client, KEYS)
    for account in ("default", "eu"):
        outcome, _ = await enqueuer.one(
            make_invoice("A"), provider=Provider.MAAST, account=account, batch="b", mode="enqueue"
        )
        assert outcome is EnqueueOutcome.ACCEPTED
    assert await Ledger(redis_client, KEYS).get("maast@eu:A") is not None


def test_batch_ids_are_readable_and_unique() -> None:
    assert new_batch_id("Month end / March!").startswith("month-end-march-")
    assert new_batch_id().startswith("b-")
    # Requests naming their batch alike (every POST of a month-end run) never share an id.
    assert len({new_batch_id("month-end") for _ in range(5000)}) == 5000


async def test_a_failing_source_stops_after_the_chunks_already_sent(
    redis_client: aioredis.Redis,
) -> None:
    def records() -> Iterator[Record]:
        for i in range(250):
            yield Record(line=i, invoice=make_invoice(f"INV-{i}"))
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await enqueue_records(
            redis_client, KEYS, records(), provider=Provider.MAAST, chunk_size=100
        )
    # The two full chunks landed, consistently; the partial third never left.
    assert await redis_client.zcard(KEYS.queue(Provider.MAAST)) == 200
    await assert_counts_match(redis_client, Ledger(redis_client, KEYS))
