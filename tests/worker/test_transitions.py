"""Transitions: a holder that lost its lease, or asks for a change its record's state does
not allow, is refused."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tests.worker.test_ledger import (
    KEYS,
    REJECTED,
    UNKNOWN,
    claim,
    enqueue,
    make_invoice,
    receipt,
    state_of,
)
from worker.ledger import Ledger, State
from worker.transitions import InvalidTransition, LeaseLost


@pytest.fixture
def ledger(redis_client: aioredis.Redis) -> Ledger:
    return Ledger(redis_client, KEYS)


async def test_lease_lost_after_reap_and_reclaim(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    first = await claim(ledger)
    await first.mark_sending()
    far_future_ms = 2**50
    assert await ledger.reap_expired(now_ms=far_future_ms) == ["maast:INV-1"]
    second = await claim(ledger)
    assert second.claim.create_maybe_landed
    for call in (
        first.mark_sending(),
        first.mark_created(receipt()),
        first.retry_later(None, count_failure=False),
        first.dead_letter(REJECTED, attempts=1),
        first.release(),
    ):
        with pytest.raises(LeaseLost):
            await call
    await second.mark_created(receipt())
    assert await state_of(ledger) is State.CREATED


async def test_invalid_transitions_raise(redis_client: aioredis.Redis, ledger: Ledger) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    with pytest.raises(InvalidTransition):
        await held.mark_sent(receipt(sent=True))
    with pytest.raises(InvalidTransition):
        await held.mark_in_doubt(UNKNOWN)
    with pytest.raises(InvalidTransition):
        await held.mark_send_started()
