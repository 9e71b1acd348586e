"""`worker.outage`: one line per outage, backoff, and jobs that retry instead of failing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from arq import Retry
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.outage import MAX_WAIT_S, MIN_RETRY_S, Outage, is_outage, retried_after_outage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage(clock)
    caplog.set_level(logging.INFO, "invoicer.redis")
    # Given a hundred failed calls (a hundred jobs, loops, polls),
    for _ in range(100):
        outage.failed(RedisConnectionError("Error 111 connecting to 127.0.0.1:6379."))
    clock.now += 2.5
    # and then a hundred good ones,
    for _ in range(100):
        outage.ok()
    # Then the log holds two lines: when it went away and how long it was away.
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("Redis unreachable (ConnectionError: Error 111")
    assert "(2.5 s)" in lines[1]
    assert outage.outages == 1 and not outage.down


def test_waits_grow_to_a_cap_and_start_small_again_at_the_next_outage() -> None:
    outage = Outage(Clock())
    waits = [outage.failed(BusyLoadingError("LOADING")) for _ in range(8)]
    assert waits == sorted(waits) and waits[0] < 0.5 and waits[-1] == MAX_WAIT_S
    outage.ok()
    assert outage.failed(RedisConnectionError()) == waits[0]
    assert outage.outages == 2


def test_only_redis_being_away_counts_as_an_outage() -> None:
    assert is_outage(RedisConnectionError("reset"))
    assert is_outage(BusyLoadingError("LOADING"))
    assert not is_outage(ResponseError("WRONGTYPE"))
    # `asyncio.wait_for` raises this for a slow webhook receiver: not Redis.
    assert not is_outage(TimeoutError())


async def test_retrying_gives_up_after_the_time_allowed() -> None:
    clock = Clock()
    outage = Outage(clock)
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        clock.now += 0.3
        raise RedisConnectionError("refused")

    with pytest.raises(RedisConnectionError):
        await outage.retrying(call, give_up_after_s=0.5)
    assert calls == 2


class _Runtime:
    def __init__(self) -> None:
        self.outage = Outage()


async def test_a_job_that_meets_an_outage_is_retried_by_arq_not_failed() -> None:
    async def job(ctx: dict[str, Any], invoice_key: str) -> str:
        if invoice_key == "down":
            raise RedisConnectionError("Connection closed by server.")
        if invoice_key == "bug":
            raise ValueError("a bug")
        return "done"

    wrapped = retried_after_outage(job)
    ctx: dict[str, Any] = {"runtime": _Runtime()}
    assert await wrapped(ctx, "ok") == "done"
    with pytest.raises(Retry) as retry:
        await wrapped(ctx, "down")
    assert retry.value.defer_score is not None and retry.value.defer_score >= MIN_RETRY_S * 1000
    assert ctx["runtime"].outage.down
    with pytest.raises(ValueError):  # a bug stays a bug (arq logs it, Sentry sees it)
        await wrapped(ctx, "bug")


async def test_a_refused_password_is_not_waited_for() -> None:
    from redis.exceptions import AuthenticationError

    outage = Outage(Clock())
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise AuthenticationError("invalid username-password pair")

    with pytest.raises(AuthenticationError):
        await outage.retrying(call, give_up_after_s=30)
    assert calls == 1 and not outage.down


async def test_a_job_that_overruns_is_cancelled_and_retried_before_arq_would_drop_it() -> None:
    cancelled = asyncio.Event()

    async def job(ctx: dict[str, Any], invoice_key: str) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()  # the runner gives its record back here
            raise
        return "never"

    wrapped = retried_after_outage(job, timeout_s=0.05)
    with pytest.raises(Retry):
        await wrapped({"runtime": _Runtime(), "job_id": "j1"}, "maast:X")
    assert cancelled.is_set()


async def test_a_timeout_raised_inside_a_job_is_not_taken_for_an_overrun() -> None:
    async def job(ctx: dict[str, Any], invoice_key: str) -> str:
        raise TimeoutError("a bug's own timeout")

    with pytest.raises(TimeoutError):
        await retried_after_outage(job, timeout_s=10)({"runtime": _Runtime()}, "maast:X")
