"""Per provider account counters: kept by the same scripts as the batch and global ones."""

from __future__ import annotations

import redis.asyncio as aioredis

from jobs.models import Provider
from tests.worker.test_dlq import park
from tests.worker.test_ledger import KEYS, REJECTED, claim, enqueue, make_invoice, receipt
from worker.enqueue import Enqueuer
from worker.ledger import Ledger, State
from worker.status import read_account_counts


async def test_counts_per_account_follow_every_move(redis_client: aioredis.Redis) -> None:
    ledger = Ledger(redis_client, KEYS)
    await enqueue(redis_client, *(make_invoice(n) for n in "ABC"))
    eu = Enqueuer(redis_client, KEYS)
    await eu.one(
        make_invoice("A"), provider=Provider.MAAST, account="eu", batch="b", mode="enqueue"
    )
    await eu.one(
        make_invoice("S"), provider=Provider.STAX, account="default", batch="s", mode="enqueue"
    )
    held = await claim(ledger, "maast:A")
    await held.mark_sending()
    await held.mark_created(receipt("A"))
    await held.release()
    sending = await claim(ledger, "maast:B")
    await sending.mark_sending()
    await park(ledger, "C", REJECTED)

    counts = await read_account_counts(
        redis_client, KEYS, {Provider.MAAST: "default", Provider.STAX: "default"}
    )
    maast = {s: n for s, n in counts[Provider.MAAST].items() if n}
    assert maast == {State.CREATED: 1, State.SENDING: 1, State.REJECTED: 1}
    assert {s: n for s, n in counts[Provider.STAX].items() if n} == {State.QUEUED: 1}
    other = await read_account_counts(redis_client, KEYS, {Provider.MAAST: "eu"})
    assert {s: n for s, n in other[Provider.MAAST].items() if n} == {State.QUEUED: 1}

    # A requeue moves the invoice between batches; its account's counts stay whole.
    await Enqueuer(redis_client, KEYS).one(
        make_invoice("C"), provider=Provider.MAAST, account="default", batch="c2", mode="enqueue"
    )
    again = await read_account_counts(redis_client, KEYS, {Provider.MAAST: "default"})
    assert {s: n for s, n in again[Provider.MAAST].items() if n} == {
        State.CREATED: 1,
        State.SENDING: 1,
        State.QUEUED: 1,
    }
