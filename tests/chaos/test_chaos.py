"""`make chaos`: issue 6's long runs, out of `make test` (marker `chaos`).

The same scenarios as tests/worker/test_exactly_once.py at full size, with
the default lease (10 s): late commits at 5 % with `--send`, 300 invoices,
2 workers, on each provider, landing inside the landing window and beyond
it; and a provider slower than the lease (15 s per create, or per call)
with a worker SIGKILLed while 100 of its requests are in flight. Each
prints its figures (invoices, faults, kills, duplicates created, voided,
live, sent) on one line: run with `-s` (the Makefile target does).
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from sandbox.client import SandboxClient
from tests.worker.exactly_once import Figures, late_commits, slow_provider_kill

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]


def show(name: str, f: Figures) -> None:
    print(f"\nCHAOS {name}: {f.line()}", flush=True)


@pytest.mark.parametrize("beyond_window", [False, True], ids=["inside_window", "beyond_window"])
@pytest.mark.parametrize("provider", [Provider.MAAST, Provider.STAX])
async def test_late_commits_at_5_percent_300_invoices_2_workers(
    redis_url: str,
    redis_client: aioredis.Redis,
    sandbox: SandboxClient,
    sandbox_url: str,
    provider: Provider,
    beyond_window: bool,
) -> None:
    f = await late_commits(
        redis_url,
        redis_client,
        sandbox,
        sandbox_url,
        provider=provider,
        invoices=300,
        probability=0.05,
        beyond_window=beyond_window,
        workers=2,
        seed=2026,
    )
    where = "beyond" if beyond_window else "inside"
    show(f"late commits 5% --send {provider.value}, landing {where} the window", f)
    assert f.faults > 0
    assert f.numbers_live_not_one == [] and f.numbers_sent_not_one == [], f
    assert f.live == f.sent == 300
    assert f.voided == f.duplicates_created == f.report_voided and f.report_open == 0
    if not beyond_window:
        assert f.duplicates_created == 0


@pytest.mark.parametrize("slow_lookups", [False, True], ids=["slow_creates", "slow_calls"])
async def test_a_15_s_provider_and_a_worker_killed_with_100_requests_in_flight(
    redis_url: str,
    redis_client: aioredis.Redis,
    sandbox: SandboxClient,
    sandbox_url: str,
    slow_lookups: bool,
) -> None:
    f = await slow_provider_kill(
        redis_url,
        redis_client,
        sandbox,
        sandbox_url,
        # every invoice in flight at the kill: the survivor's own creates
        # would otherwise hold its connections and make its lookups wait
        invoices=100,
        in_flight=100,
        latency_s=15.0,
        lease_s=10.0,
        slow_lookups=slow_lookups,
    )
    what = "every call" if slow_lookups else "creates"
    show(f"latency 15 s on {what}, SIGKILL with 100 in flight", f)
    assert f.duplicates_created == 0 and f.numbers_live_not_one == [], f
    assert f.created == f.live == 100
    if not slow_lookups:  # the takeover's lookups came before the creates landed
        assert f.waited > 0, f
