"""Reachability against a real Redis: a streak of failed connections pauses
the account (once, across limiters as across processes), a blip does not, an
answer ends the streak, and the probe ends the pause at the first answer."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from jobs.errors import ConfigurationError, ProviderUnreachable, RateLimited
from jobs.models import Provider
from tests.fakes import FakeProvider
from tests.worker.support import LIMITER_KEYS, LimiterFactory
from worker import reachability
from worker.pauses import pause_provider, pause_state
from worker.retry_policy import PAUSE_RECHECK_S

KEYS = LIMITER_KEYS
REFUSED = ProviderUnreachable("no connection (ClientConnectorError: Connect call failed)")
SPAN_S = 0.3


@pytest.fixture(autouse=True)
def short_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """A streak must span 0.3 s (2 s in production), and probes come every 0.2 s."""
    monkeypatch.setattr(reachability, "UNREACHABLE_SPAN_S", SPAN_S)
    monkeypatch.setattr(reachability, "PROBE_MIN_S", 0.2)


async def fail(limiter_count: int, make_limiter: LimiterFactory, *, times: int) -> None:
    limiters = [make_limiter() for _ in range(limiter_count)]
    for i in range(times):
        await limiters[i % limiter_count].record(REFUSED)


async def test_a_streak_across_processes_pauses_once_naming_the_setting(
    make_limiter: LimiterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_limiter(), make_limiter()
    for limiter in (first, second, first):
        await limiter.record(REFUSED)
    await asyncio.sleep(SPAN_S)
    for limiter in (second, first, second):
        await limiter.record(REFUSED)
    state = await first.pause_state()
    assert state is not None and state.kind == "unreachable" and state.indefinite
    assert "STAX_BASE_URL" in state.reason and "http://127.0.0.1:1" in state.reason
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "STAX_BASE_URL" in errors[0] and "probe" in errors[0]
    # one "cannot connect" warning per process and streak, not one per failure
    warnings = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(warnings) == 2
    # and the jobs are deferred, without a request, as for any pause without end
    with pytest.raises(RateLimited) as deferred:
        await second.acquire()
    assert deferred.value.retry_after_s == PAUSE_RECHECK_S


async def test_a_blip_does_not_pause(make_limiter: LimiterFactory) -> None:
    # A hundred jobs hitting a provider restart fail in the same moment: one blip.
    limiters = [make_limiter() for _ in range(4)]
    await asyncio.gather(*(limiters[i % 4].record(REFUSED) for i in range(100)))
    assert await limiters[0].pause_state() is None


async def test_an_answer_ends_the_streak(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter()
    for _ in range(4):
        await limiter.record(REFUSED)
    await asyncio.sleep(SPAN_S)
    await limiter.record(None)  # one request got through
    for _ in range(4):
        await limiter.record(REFUSED)
    assert await limiter.pause_state() is None
    await limiter.record(REFUSED)  # the fifth in a row since the answer
    await asyncio.sleep(SPAN_S)
    await limiter.record(REFUSED)
    assert await limiter.pause_state() is not None


async def test_failed_connections_spend_no_failure_budget(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter()
    await fail(1, make_limiter, times=20)
    assert (await limiter.budget())["failures_last_minute"] == 0


async def test_it_never_replaces_another_pause(
    make_limiter: LimiterFactory, redis_client: aioredis.Redis
) -> None:
    await pause_provider(redis_client, KEYS, Provider.STAX, "default", "month-end freeze")
    await fail(1, make_limiter, times=5)
    await asyncio.sleep(SPAN_S)
    await fail(1, make_limiter, times=1)
    state = await pause_state(redis_client, KEYS, Provider.STAX, "default")
    assert state is not None and state.reason == "month-end freeze" and state.kind is None


async def paused_unreachable(make_limiter: LimiterFactory) -> None:
    await fail(1, make_limiter, times=5)
    await asyncio.sleep(SPAN_S)
    await fail(1, make_limiter, times=1)
    state = await make_limiter().pause_state()
    assert state is not None and state.kind == "unreachable"


async def test_the_probe_resumes_at_the_first_answer_and_says_so_once(
    make_limiter: LimiterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await paused_unreachable(make_limiter)
    limiter, provider = make_limiter(), FakeProvider(Provider.STAX)
    provider.script("find", REFUSED)
    # While it still cannot be reached, the pause holds (and this process knows it tried),
    await limiter.reachability.probe(provider, learn=limiter.record)
    assert await limiter.pause_state() is not None
    assert limiter.reachability.probing_since is not None
    # then the first answer ends it.
    await asyncio.sleep(0.25)  # the next probe is due
    await limiter.reachability.probe(provider, learn=limiter.record)
    assert await limiter.pause_state() is None
    assert [kind for kind, _ in provider.calls] == ["find", "find"]
    assert provider.calls[0][1] == reachability.PROBE_INVOICE.number
    resumed = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(resumed) == 1 and "resumed after" in resumed[0].getMessage()
    # Nothing to probe any more: no request.
    await limiter.reachability.probe(provider, learn=limiter.record)
    assert len(provider.calls) == 2


async def test_one_process_probes_at_a_time(make_limiter: LimiterFactory) -> None:
    await paused_unreachable(make_limiter)
    providers = [FakeProvider(Provider.STAX).script("find", REFUSED) for _ in range(5)]
    limiters = [make_limiter() for _ in providers]
    await asyncio.gather(
        *(
            lim.reachability.probe(p, learn=lim.record)
            for lim, p in zip(limiters, providers, strict=True)
        )
    )
    assert sum(len(p.calls) for p in providers) == 1


async def test_a_probe_answered_401_ends_this_pause_and_pauses_for_the_key(
    make_limiter: LimiterFactory,
) -> None:
    await paused_unreachable(make_limiter)
    limiter = make_limiter()
    provider = FakeProvider(Provider.STAX).script("find", ConfigurationError("no", status=401))
    await limiter.reachability.probe(provider, learn=limiter.record)
    state = await limiter.pause_state()
    assert state is not None and state.kind is None and state.reason.startswith("401")


async def test_the_probe_never_ends_another_pause(
    make_limiter: LimiterFactory, redis_client: aioredis.Redis
) -> None:
    await pause_provider(redis_client, KEYS, Provider.STAX, "default", "operator")
    limiter, provider = make_limiter(), FakeProvider(Provider.STAX)
    await limiter.reachability.probe(provider, learn=limiter.record)
    assert provider.calls == []
    assert await limiter.pause_state() is not None


def test_shown_url_never_shows_a_password() -> None:
    assert reachability.shown_url("https://user:pw@api.example:8443/v1") == (
        "https://api.example:8443"
    )
