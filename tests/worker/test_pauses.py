"""Pauses against a real Redis: the flag, and what sets it (a 429, a refused
key, the failure budget), across limiters as across processes."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from jobs.errors import (
    ConfigurationError,
    InvoiceInvalid,
    InvoiceRejected,
    ProviderUnavailable,
    RateLimited,
)
from jobs.models import Provider
from tests.worker.support import LIMITER_KEYS, FakeClock, LimiterFactory
from worker.pauses import PauseState, pause_provider, pause_state, resume_provider
from worker.retry_policy import PAUSE_RECHECK_S

KEYS = LIMITER_KEYS


# --- pauses ------------------------------------------------------------------


async def test_429_pauses_everyone_for_retry_after(make_limiter: LimiterFactory) -> None:
    first, second = make_limiter(), make_limiter()
    await first.record(RateLimited("too many", retry_after_s=30, status=429))
    state = await second.pause_state()
    assert state is not None and "429" in state.reason
    assert state.remaining_s == pytest.approx(30, abs=1)
    started = time.monotonic()
    with pytest.raises(RateLimited) as refused:
        await second.acquire()
    assert time.monotonic() - started < 1.0
    assert 28 < refused.value.retry_after_s <= 30


async def test_our_own_rate_limited_does_not_pause(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter()
    await limiter.record(RateLimited("no slot", retry_after_s=30))
    await limiter.record(None)
    await limiter.record(ProviderUnavailable("503", status=503))
    assert await limiter.pause_state() is None
    assert (await limiter.budget())["failures_last_minute"] == 0


async def test_a_pause_is_never_shortened(redis_client: aioredis.Redis) -> None:
    args = (redis_client, KEYS, Provider.STAX, "default")
    assert await pause_provider(*args, "long", ttl_s=60) is True
    assert await pause_provider(*args, "short", ttl_s=1) is False
    state = await pause_state(*args)
    assert state is not None and state.reason == "long"
    assert state.remaining_s is not None and 55 < state.remaining_s <= 60
    assert await pause_provider(*args, "longer", ttl_s=120) is True
    # An indefinite pause outranks any timed one, and a timed one never ends it.
    assert await pause_provider(*args, "by hand", ttl_s=None) is True
    assert await pause_provider(*args, "by hand again", ttl_s=None) is False
    assert await pause_provider(*args, "later 429", ttl_s=3600) is False
    state = await pause_state(*args)
    assert state is not None and state.reason == "by hand" and state.until_ms is None


async def test_pause_expires_by_itself(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(clock=FakeClock())
    assert await limiter.pause("short", ttl_s=0.2)
    await asyncio.sleep(0.35)
    assert await limiter.pause_state() is None
    await limiter.acquire()


async def test_pause_and_resume_helpers(redis_client: aioredis.Redis) -> None:
    args = (redis_client, KEYS, Provider.STAX, "acct2")
    assert await pause_state(*args) is None
    assert await resume_provider(*args) is False
    assert await pause_provider(*args, "month-end freeze") is True
    state = await pause_state(*args)
    assert isinstance(state, PauseState)
    assert state.reason == "month-end freeze" and state.indefinite
    assert state.set_at_ms is not None and abs(state.set_at_ms / 1000 - time.time()) < 5
    # Other accounts are untouched.
    assert await pause_state(redis_client, KEYS, Provider.STAX, "default") is None
    assert await resume_provider(*args) is True
    assert await pause_state(*args) is None


async def test_a_flag_set_with_redis_cli_is_understood(redis_client: aioredis.Redis) -> None:
    await redis_client.set(KEYS.pause(Provider.MAAST, "default"), "ops: maintenance", px=5000)
    state = await pause_state(redis_client, KEYS, Provider.MAAST, "default")
    assert state is not None and state.reason == "ops: maintenance"
    assert state.until_ms is not None and state.remaining_s is not None
    assert 4 < state.remaining_s <= 5


# --- the failure (4xx) budget -----------------------------------------------


async def test_failure_budget_pauses_at_the_limit_not_before(
    make_limiter: LimiterFactory,
) -> None:
    limiter = make_limiter(failed_per_minute=4)
    for _ in range(3):
        await limiter.record(InvoiceRejected("bad field", status=422))
    assert await limiter.pause_state() is None
    assert (await limiter.budget())["failures_last_minute"] == 3
    await limiter.record(InvoiceRejected("bad field", status=400))
    state = await limiter.pause_state()
    assert state is not None and "failure budget" in state.reason
    assert state.remaining_s is not None and 58 < state.remaining_s <= 60


async def test_only_answered_4xx_count(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(failed_per_minute=2)
    await limiter.record(InvoiceInvalid("caught locally"))  # never sent
    await limiter.record(ProviderUnavailable("503", status=503))
    await limiter.record(None)
    assert await limiter.pause_state() is None
    assert (await limiter.budget())["failures_last_minute"] == 0


async def test_failure_pause_ends_when_the_oldest_failure_leaves(
    make_limiter: LimiterFactory, redis_client: aioredis.Redis
) -> None:
    # Given one failure 50 s ago (planted on Redis's clock)
    seconds, micros = await redis_client.time()
    now_ms = seconds * 1000 + micros // 1000
    failures_key = KEYS.failures(Provider.STAX, "default")
    await redis_client.zadd(failures_key, {"old": now_ms - 50_000})
    limiter = make_limiter(failed_per_minute=3)
    # When two more arrive now
    await limiter.record(InvoiceRejected("x", status=422))
    await limiter.record(InvoiceRejected("x", status=422))
    # Then the pause lasts until the old one is 60 s old: about 10 s
    state = await limiter.pause_state()
    assert state is not None and state.remaining_s is not None
    assert 8.5 < state.remaining_s <= 10.0


async def test_no_budget_configured_never_pauses(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(failed_per_minute=None)
    for _ in range(20):
        await limiter.record(InvoiceRejected("x", status=422))
    assert await limiter.pause_state() is None
    assert (await limiter.budget())["failures_last_minute"] == 20


# --- 401/403 -----------------------------------------------------------------


async def test_401_pauses_until_resumed_and_is_logged_once(
    make_limiter: LimiterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="invoicer.limits")
    # Given two processes that both get a 401
    first, second = make_limiter(), make_limiter()
    refused = ConfigurationError("API key refused", status=401)
    await asyncio.gather(first.record(refused), second.record(refused), first.record(refused))
    # Then the account is paused with no end, and reported exactly once
    state = await second.pause_state()
    reason = "401: API key refused (check STAX_API_KEY)"
    assert state is not None and state.indefinite and state.reason == reason
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "invoicer resume stax" in errors[0].getMessage()
    assert "fix STAX_API_KEY" in errors[0].getMessage()
    with pytest.raises(RateLimited) as deferred:
        await second.acquire()
    assert deferred.value.retry_after_s == PAUSE_RECHECK_S
    # And after a resume a new 401 is reported again
    assert await first.resume()
    await second.record(ConfigurationError("API key refused", status=403))
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
