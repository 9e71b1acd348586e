"""Ledger records that no longer parse: parked in the dead-letter queue with
the reason, or refused when even the ledger's scripts cannot move them; never
a crash, never an invoice stranded in `sending` (real Redis, the runner as
arq calls it, a fake provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from tests.worker.test_runner import KEY, Rig, build_rig, make_invoice
from worker.ledger import State
from worker.refused import refused_jobs


@pytest.fixture
async def rig(redis_client: aioredis.Redis) -> AsyncIterator[Rig]:
    rig = build_rig(redis_client, Provider.MAAST)
    yield rig
    assert not rig.runtime.holding


async def damage(rig: Rig, **fields: str) -> None:
    await rig.runtime.redis.hset(rig.runtime.keys.ledger(KEY), mapping=fields)  # type: ignore[misc]


async def test_a_payload_that_no_longer_parses_is_dead_lettered_not_stranded(rig: Rig) -> None:
    # Given a queued invoice whose stored payload an older version wrote
    await rig.enqueue(make_invoice())
    await damage(rig, payload='{"number": "INV-1", "lines": "three widgets"}')
    # When its job runs
    assert (await rig.run())["outcome"] == "dead_lettered"
    # Then it is parked with the reason, not left `sending` for good
    record = await rig.record()
    assert record.state is State.REJECTED and record.dead_lettered
    entry = await rig.dead_letter()
    assert (entry.reason, entry.kind) == ("unreadable", "UnreadableRecord")
    assert "payload" in entry.message and "lines" in entry.message
    assert rig.provider.calls == []
    assert (await rig.run())["outcome"] == "nothing_to_do"


async def test_an_unreadable_payload_of_an_invoice_in_doubt_stays_in_doubt(rig: Rig) -> None:
    # A create may have landed before: a person must look before anything else.
    await rig.enqueue(make_invoice())
    await damage(rig, state="in_doubt", payload="not json")
    assert (await rig.run())["outcome"] == "dead_lettered"
    assert (await rig.record()).state is State.IN_DOUBT
    entry = await rig.dead_letter()
    assert entry.reason == "in_doubt" and "payload" in entry.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("receipt", "{not json"),
        ("failures", "many"),
        ("first_at_ms", "yesterday"),
        ("state", "lost"),
        ("provider", "paypal"),
        ("lease_token", "abc"),  # with a lease time that is not a number
    ],
)
async def test_a_field_that_does_not_parse_never_crashes_and_is_shown(
    rig: Rig, field: str, value: str
) -> None:
    await rig.enqueue(make_invoice(send=True))
    job_id = (await rig.record()).job_id
    extra = {"lease_until_ms": "soon"} if field == "lease_token" else {}
    await damage(rig, **{field: value}, **extra)
    # The job ends: no exception reaches arq (it would drop the job silently)
    await rig.run(job_id=job_id)
    # and the invoice is where a person sees it: dead-lettered, or (when
    # the ledger's scripts cannot move the record) its job refused.
    record_dead = await rig.runtime.redis.hget(rig.runtime.keys.ledger(KEY), "dlq")  # type: ignore[misc]
    refused = await refused_jobs(rig.runtime.redis, rig.runtime.keys)
    assert record_dead == b"1" or [r.invoice_key for r in refused] == [KEY]
    if refused:
        assert rig.runtime.keys.ledger(KEY) in refused[0].reason
        assert await rig.runtime.redis.zcard(rig.runtime.keys.queue(Provider.MAAST)) == 0
    else:
        assert (await rig.dead_letter()).reason in ("unreadable", "in_doubt")
    assert rig.provider.calls == []
