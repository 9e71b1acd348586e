"""The shared limiter against a real Redis: slots, and honouring a pause.

Timing is asserted on the slot times the Lua script reserves (Redis server
time), not on wall-clock sleeps, so these tests do not flake on a busy box.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from jobs.errors import (
    InvoiceRejected,
    RateLimited,
)
from jobs.models import Provider
from jobs.ports import Limiter
from tests.worker.support import LIMITER_KEYS, FakeClock, LimiterFactory, limiter_settings
from worker.keys import Keys
from worker.limits import (
    SAFETY,
    ProviderLimiter,
)
from worker.retry_policy import PAUSE_RECHECK_S

KEYS = LIMITER_KEYS


def max_in_window(times_s: Sequence[float], window_s: float = 1.0) -> int:
    """The most events in any closed window of `window_s` (sliding)."""
    ordered = sorted(times_s)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


# --- the shared rate limit ---------------------------------------------------


async def test_slots_are_spaced_one_interval_apart(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(rate_per_minute=600)
    slots, asked_at = [], []
    for _ in range(20):
        asked_at.append(time.monotonic())
        slots.append(await limiter._reserve())
    interval_s = 60 * (1 + SAFETY) / 600
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(slots)]
    assert all(gap == pytest.approx(interval_s, abs=1e-6) for gap in gaps)
    # No burst: the first slot is now, each later one waits its turn (less
    # the time the reservations themselves took: a Redis that fsyncs every
    # write, as the embedded one does, answers in a millisecond or two).
    assert slots[0].wait_s < 0.05
    spent_s = asked_at[-1] - asked_at[0]
    assert slots[-1].wait_s == pytest.approx(19 * interval_s - spent_s, abs=0.05)


async def test_limiter_instances_share_one_timeline(make_limiter: LimiterFactory) -> None:
    # Given three limiters for one account, as three worker processes hold
    limiters = [make_limiter(rate_per_minute=1200, max_wait_s=30) for _ in range(3)]
    # When they reserve concurrently
    slots = await asyncio.gather(*(limiters[i % 3]._reserve() for i in range(60)))
    # Then no two share a slot and no one-second window holds more than the limit
    times = sorted(s.at_s for s in slots)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(60 * (1 + SAFETY) / 1200, abs=1e-6)
    assert max_in_window(times) <= 20


async def test_a_slot_too_far_away_is_refused_and_not_reserved(
    make_limiter: LimiterFactory,
) -> None:
    limiter = make_limiter(rate_per_minute=60, max_wait_s=0.5)
    await limiter._reserve()
    for _ in range(3):
        with pytest.raises(RateLimited) as refused:
            await limiter._reserve()
        # Each refusal quotes the same next slot: refusals reserve nothing.
        assert refused.value.retry_after_s == pytest.approx(1.02, abs=0.1)
        assert refused.value.status is None
    budget = await limiter.budget()
    assert 0.5 < float(budget["next_slot_in_s"] or 0) <= 1.02


async def test_acquire_sleeps_until_its_slot(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(rate_per_minute=600)
    await limiter._reserve()
    await limiter._reserve()
    started = time.monotonic()
    await limiter.acquire()  # third slot: two intervals (0.2 s) away
    assert 0.1 < time.monotonic() - started < 2.0


async def test_acquire_raises_instead_of_waiting_past_max_wait(
    make_limiter: LimiterFactory,
) -> None:
    limiter = make_limiter(rate_per_minute=6, max_wait_s=1)
    await limiter.acquire()
    started = time.monotonic()
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire()
    assert time.monotonic() - started < 1.0
    assert refused.value.retry_after_s == pytest.approx(10.2, abs=0.5)


def test_provider_limiter_is_a_limiter_port(make_limiter: LimiterFactory) -> None:
    limiter: Limiter = make_limiter()  # mypy checks the Protocol here
    assert callable(limiter.acquire) and callable(limiter.record)


async def test_the_local_limiter_bounds_its_own_wait(make_limiter: LimiterFactory) -> None:
    # 1/min: the process's own bucket is empty after one grant, so the second
    # acquire is refused locally within max_wait_s, without asking Redis.
    limiter = make_limiter(rate_per_minute=1, max_wait_s=0.3)
    await limiter.acquire()
    started = time.monotonic()
    with pytest.raises(RateLimited, match="no local slot") as refused:
        await limiter.acquire()
    assert time.monotonic() - started < 2.0
    assert refused.value.retry_after_s == pytest.approx(0.3)


async def test_unlimited_account_only_checks_the_pause(
    make_limiter: LimiterFactory, redis_client: aioredis.Redis
) -> None:
    limiter = make_limiter(rate_per_minute=None)
    for _ in range(50):
        await limiter.acquire()
    assert await redis_client.exists(KEYS.rate_tat(Provider.STAX, "default")) == 0
    await limiter.pause("maintenance", ttl_s=None)
    with pytest.raises(RateLimited):
        await limiter.acquire()


def _child(url: str, prefix: str, rate: float, run_s: float, barrier: Any, out: Any) -> None:
    """One worker process: several tasks take slots for `run_s`, report slot times."""

    async def run() -> list[float]:
        client = aioredis.Redis.from_url(url)
        limiter = ProviderLimiter(client, Keys(prefix), limiter_settings(rate), max_wait_s=5)
        granted: list[float] = []
        stop_at = time.monotonic() + run_s

        async def task() -> None:
            while time.monotonic() < stop_at:
                slot = await limiter._reserve()
                await asyncio.sleep(slot.wait_s)
                granted.append(slot.at_s)

        await asyncio.gather(*(task() for _ in range(5)))
        await client.aclose()
        return granted

    barrier.wait(timeout=60)
    out.put(asyncio.run(run()))


async def test_two_processes_share_the_budget(redis_client: aioredis.Redis, redis_url: str) -> None:
    # Given two OS processes on one account limited to 1200/min (20/s)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(redis_url, "test:", 1200, 1.5, barrier, out))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    # When both take slots as fast as they can for 1.5 s
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    grants = sorted(t for result in results for t in result)
    # Then both got a share, no 1-second window exceeds 20, and the rate is near it
    assert all(len(result) >= 5 for result in results)
    assert max_in_window(grants) <= 20
    achieved_per_s = (len(grants) - 1) / (grants[-1] - grants[0])
    assert achieved_per_s >= 0.9 * 20


# --- honouring a pause (what sets one: test_pauses.py) --------------------


async def test_a_paused_account_reserves_nothing(
    make_limiter: LimiterFactory, redis_client: aioredis.Redis
) -> None:
    limiter = make_limiter()
    await limiter.pause("stop", ttl_s=10)
    # The reservation script itself checks the flag: a pause set between the
    # check in acquire() and the reservation still wins.
    with pytest.raises(RateLimited, match="stax paused: stop"):
        await limiter._reserve()
    assert await redis_client.exists(KEYS.rate_tat(Provider.STAX, "default")) == 0


async def test_paused_acquire_fails_fast_and_rechecks_after_a_second(
    make_limiter: LimiterFactory,
) -> None:
    clock = FakeClock()
    limiter, operator = make_limiter(clock=clock), make_limiter()
    await operator.pause("by hand", ttl_s=None)
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire()
        assert refused.value.retry_after_s == PAUSE_RECHECK_S
    assert time.monotonic() - started < 2.0
    # A resume elsewhere is seen once the local memory of the pause (1 s) ends.
    assert await operator.resume()
    with pytest.raises(RateLimited):
        await limiter.acquire()
    clock.now_s += 1.01
    await limiter.acquire()


async def test_budget_reports_the_numbers(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(rate_per_minute=100, failed_per_minute=8)
    await limiter.record(InvoiceRejected("x", status=422))
    await limiter.pause("429", ttl_s=20)
    budget = await limiter.budget()
    assert budget["rate_per_minute"] == 100
    assert budget["interval_s"] == pytest.approx(0.612)
    assert budget["failed_per_minute"] == 8
    assert budget["failures_last_minute"] == 1
    assert budget["paused"] == 1
    assert budget["pause_remaining_s"] == pytest.approx(20, abs=1)
