"""Landing windows and lease margins on the real ledger (worker.held, worker/lua).

A lease says who holds a record, not whether its request is done: these
tests check that `landing_until_ms` is written before a request can leave,
moves on with every renewal while the record is `sending`, survives the
holder's death, and reaches the next claim with the server's time; and that
a holder never starts a request on a lease too close to its end.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from jobs.errors import NotYet
from tests.worker.test_ledger import KEYS, UNKNOWN, claim, enqueue, hset, make_invoice, receipt
from worker.held import LeaseLost
from worker.ledger import Ledger, State

LEASE_S = 5.0
WINDOW_S = 60.0


@pytest.fixture
def ledger(redis_client: aioredis.Redis) -> Ledger:
    return Ledger(redis_client, KEYS, lease_s=LEASE_S, landing_window_s=WINDOW_S)


async def server_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def landing_until(ledger: Ledger, key: str = "maast:INV-1") -> int:
    record = await ledger.get(key)
    assert record is not None
    return record.landing_until_ms


async def test_the_claims_sending_mark_writes_the_landing_window_before_any_request(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    record = await ledger.get("maast:INV-1")
    assert record is not None and record.landing_until_ms == 0
    before = await server_ms(redis_client)
    held = await ledger.claim("maast:INV-1", record.job_id, early_sending=True)
    assert held is not None and held.claim.now_ms >= before
    # lease + window from the claim's own time, in the same script as `sending`
    expected = held.claim.now_ms + int((LEASE_S + WINDOW_S) * 1000)
    assert await state_of(ledger) is State.SENDING
    assert await landing_until(ledger) == expected
    # a plain claim tells the procedure nothing is in doubt
    assert not held.claim.create_maybe_landed and not held.claim.outcome_was_unknown


async def state_of(ledger: Ledger) -> State:
    record = await ledger.get("maast:INV-1")
    assert record is not None
    return record.state


async def test_renewals_of_a_sending_record_move_its_landing_window_on(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    assert await landing_until(ledger) == 0  # queued: no request can leave yet
    await held.mark_sending()
    first = await landing_until(ledger)
    assert first >= await server_ms(redis_client) + (LEASE_S + WINDOW_S - 1) * 1000
    await hset(redis_client, KEYS.ledger("maast:INV-1"), {"landing_until_ms": str(first - 10_000)})
    await ledger.heartbeat([held])
    renewed = await landing_until(ledger)
    assert renewed >= first  # renewal = a request may leave until the new lease ends
    # once created, renewals no longer move it: no create can leave any more
    await held.mark_created(receipt())
    created = await landing_until(ledger)
    await held.mark_send_started()
    await ledger.heartbeat([held])
    assert await landing_until(ledger) == created


async def test_a_dead_holders_window_reaches_the_next_claim(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    # Given a holder that marked `sending` and died (its lease reaped)
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.mark_sending()
    window_end = await landing_until(ledger)
    await redis_client.zadd(KEYS.leases(), {"maast:INV-1": 1})
    assert await ledger.reap_expired() == ["maast:INV-1"]
    # When another worker claims it
    taker = await claim(ledger)
    # Then it may look up at once, and knows until when the request may land
    c = taker.claim
    assert c.create_maybe_landed and c.outcome_was_unknown
    assert c.landing_until_ms == window_end > c.now_ms
    assert await state_of(ledger) is State.IN_DOUBT


async def test_a_retry_after_a_second_create_keeps_the_lookup_of_the_first(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    # Given a record in doubt whose next create failed provably unsent (503)
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await held.mark_sending()
    await held.mark_in_doubt(UNKNOWN)
    await held.release()
    again = await claim(ledger)
    await again.mark_sending()
    await again.retry_later(None, count_failure=True)
    await again.release()
    # Then the record is queued, but the first create may still land: the
    # next claim looks up (and waits out the window) before creating
    record = await ledger.get("maast:INV-1")
    assert record is not None and record.state is State.QUEUED
    third = await ledger.claim("maast:INV-1", record.job_id, early_sending=True)
    assert third is not None and third.claim.create_maybe_landed
    assert third.claim.outcome_was_unknown
    assert await state_of(ledger) is State.QUEUED  # not premarked: a lookup comes first


async def test_wait_returns_a_create_that_never_left_to_the_queue_and_releases(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    record = await ledger.get("maast:INV-1")
    assert record is not None
    held = await ledger.claim("maast:INV-1", record.job_id, early_sending=True)
    assert held is not None
    await held.wait("cancelled before any request left")
    assert await state_of(ledger) is State.QUEUED
    assert await redis_client.zscore(KEYS.leases(), "maast:INV-1") is None
    assert await redis_client.zscore(KEYS.queue(held.provider), record.job_id) is not None
    events = [(e["event"], e["detail"]) for e in await ledger.history("maast:INV-1")]
    assert events[-1] == ("waiting", "cancelled before any request left")
    await held.release()  # a no-op now
    # and the next claim is a plain one: no lookup, no window to wait for
    again = await ledger.claim("maast:INV-1", record.job_id, early_sending=True)
    assert again is not None and not again.claim.create_maybe_landed


# -- the lease margin ------------------------------------------------------------


async def test_a_lease_far_from_its_end_costs_no_round_trip(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    lease_before = await redis_client.zscore(KEYS.leases(), "maast:INV-1")
    deadline = held.deadline
    await held.ensure_lease()
    assert held.deadline == deadline and held.request_started
    assert await redis_client.zscore(KEYS.leases(), "maast:INV-1") == lease_before


async def test_a_lease_near_its_end_is_renewed_before_the_request(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    lease_before = await redis_client.zscore(KEYS.leases(), "maast:INV-1")
    held.deadline -= LEASE_S - 0.5  # half a second left, margin 1 s
    await held.ensure_lease()
    lease_after = await redis_client.zscore(KEYS.leases(), "maast:INV-1")
    assert lease_before is not None and lease_after is not None and lease_after >= lease_before
    assert held.deadline > time.monotonic() + LEASE_S - 1


async def test_a_lease_another_worker_took_refuses_the_request(
    redis_client: aioredis.Redis, ledger: Ledger
) -> None:
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    await redis_client.zadd(KEYS.leases(), {"maast:INV-1": 1})
    await ledger.reap_expired()
    await claim(ledger)
    held.deadline = 0.0
    with pytest.raises(LeaseLost):
        await held.ensure_lease()
    assert not held.request_started


def stepping_clock(step_s: float) -> Iterator[float]:
    """A monotonic clock on which every reading is `step_s` later (a stalled loop)."""
    return (1000.0 + i * step_s for i in itertools.count())


async def test_a_renewal_too_slow_to_leave_a_margin_gives_the_job_up(
    redis_client: aioredis.Redis, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a holder whose process stalls for most of a lease on every step
    await enqueue(redis_client, make_invoice())
    held = await claim(ledger)
    clock = stepping_clock(LEASE_S * 0.9)
    monkeypatch.setattr("worker.held.monotonic", lambda: next(clock))
    monkeypatch.setattr("worker.transitions.monotonic", lambda: next(clock))
    held.deadline = 0.0
    # When it is about to start a request, it renews, and is still too close
    with pytest.raises(NotYet) as caught:
        await held.ensure_lease()
    # Then it gives up without starting it (the job runs again)
    assert caught.value.retry_after_s == 0.0 and "lease" in caught.value.why
    assert not held.request_started
