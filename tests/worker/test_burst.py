"""When a `--burst` worker may stop with jobs left: only behind a pause that a
person (or, for an unreachable provider, a long failing probe) must end."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from tests.worker.support import LIMITER_KEYS, FakeClock, LimiterFactory
from worker import reachability
from worker.burst import Stalled, stalled_by
from worker.pauses import pause_provider


async def test_a_pause_without_end_stalls_a_burst(
    make_limiter: LimiterFactory, redis_client: aioredis.Redis
) -> None:
    limiter = make_limiter()
    assert await stalled_by(limiter) is None
    await pause_provider(redis_client, LIMITER_KEYS, Provider.STAX, "default", "429", ttl_s=30)
    assert await stalled_by(limiter) is None  # it ends by itself: wait it out
    await limiter.resume()
    await pause_provider(redis_client, LIMITER_KEYS, Provider.STAX, "default", "401: refused")
    assert await stalled_by(limiter) == "401: refused"


async def test_an_unreachable_pause_stalls_it_only_after_its_probes_kept_failing(
    make_limiter: LimiterFactory, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    limiter = make_limiter()
    monkeypatch.setattr(limiter.reachability, "_clock", clock)
    pause = '{"reason": "cannot connect", "set_at_ms": 1, "until_ms": null, "kind": "unreachable"}'
    await redis_client.set(LIMITER_KEYS.pause(Provider.STAX, "default"), pause)
    assert await stalled_by(limiter) is None  # not probed yet: a blip may end at the first probe
    limiter.reachability.probing_since = clock.now_s
    clock.now_s += reachability.BURST_PATIENCE_S - 1
    assert await stalled_by(limiter) is None
    clock.now_s += 1
    assert await stalled_by(limiter) == "cannot connect"


def test_what_a_stalled_queue_says() -> None:
    refused = Stalled(Provider.STAX, "eu", "401: refused (check STAX_API_KEY)", 12_500, False)
    assert refused.describe() == (
        "stax@eu: 12,500 invoice(s) wait on its pause (401: refused (check STAX_API_KEY)); "
        "they stay queued (invoicer status); once fixed, run `invoicer resume stax`"
    )
    far = Stalled(Provider.MAAST, "default", "cannot connect", 3, True)
    assert "resumes it by itself once it answers" in far.describe()
