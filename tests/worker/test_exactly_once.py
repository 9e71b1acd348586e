"""Issue 6's exactly-once tests, short enough for `make test`: real worker
processes, the test's Redis, the sandbox over HTTP (scenarios:
tests/worker/exactly_once.py; the long runs: `make chaos`).

- Late commits with `--send`, inside the landing window (found, never
  created twice) and beyond it (twins created, then voided): every number
  ends with exactly one live invoice, sent exactly once, and the batch
  report counts the twins voided.
- A provider slower than the lease, a worker SIGKILLed with requests in
  flight: no duplicate.
(`send` twice then `enqueue`: tests/worker/test_cli_send.py.)
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from sandbox.client import SandboxClient
from tests.worker.exactly_once import late_commits, slow_provider_kill

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("provider", [Provider.MAAST, Provider.STAX])
async def test_late_commits_inside_the_window_are_found_and_never_created_twice(
    redis_url: str,
    redis_client: aioredis.Redis,
    sandbox: SandboxClient,
    sandbox_url: str,
    provider: Provider,
) -> None:
    f = await late_commits(
        redis_url,
        redis_client,
        sandbox,
        sandbox_url,
        provider=provider,
        invoices=30,
        probability=0.15,
        beyond_window=False,
    )
    assert f.faults > 0, "the scenario should have committed some creates late"
    # every number: one invoice, never two, sent exactly once
    assert f.created == f.live == f.sent == f.invoices and f.duplicates_created == 0, f
    assert f.numbers_live_not_one == [] and f.numbers_sent_not_one == []
    assert f.states == {"sent": f.invoices} and f.report_voided == 0


@pytest.mark.parametrize("provider", [Provider.MAAST, Provider.STAX])
async def test_late_commits_beyond_the_window_are_voided_and_sent_once(
    redis_url: str,
    redis_client: aioredis.Redis,
    sandbox: SandboxClient,
    sandbox_url: str,
    provider: Provider,
) -> None:
    f = await late_commits(
        redis_url,
        redis_client,
        sandbox,
        sandbox_url,
        provider=provider,
        invoices=30,
        probability=0.15,
        beyond_window=True,
    )
    assert f.faults > 0, "the scenario should have committed some creates late"
    # every number: one live invoice, the customer sent exactly one
    assert f.numbers_live_not_one == [] and f.numbers_sent_not_one == [], f
    assert f.live == f.sent == f.invoices
    # the late twins existed, and were voided, as the batch report says
    assert f.duplicates_created > 0 and f.voided == f.duplicates_created, f
    assert f.report_voided == f.voided and f.report_open == 0
    assert f.states == {"sent": f.invoices}


async def test_a_worker_killed_with_creates_in_flight_at_a_slow_provider_duplicates_nothing(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    # creates slower than the lease, lookups answered at once: the takeover's
    # first lookup finds nothing, and must not believe it before the window
    f = await slow_provider_kill(
        redis_url,
        redis_client,
        sandbox,
        sandbox_url,
        invoices=30,
        in_flight=20,
        latency_s=6.0,
        lease_s=2.0,
        slow_lookups=False,
    )
    assert f.created == f.live == f.invoices and f.duplicates_created == 0, f
    # the takeover did find nothing at first, and waited out the window
    assert f.waited > 0, f
    assert f.numbers_live_not_one == [] and f.states == {"created": f.invoices}
