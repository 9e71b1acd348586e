"""SIGTERM with requests in flight: finish them (or cancel at once), lose nothing,
create nothing twice.

A real `invoicer worker` process against a sandbox that takes about a second
per create, so a signal always lands while requests are in flight. A second
worker then finishes the batch, and the sandbox says whether anything was
created twice.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from jobs.models import Provider
from sandbox.client import SandboxClient
from sandbox.config import Faults
from tests.worker.support import enqueue, invoice, start_worker, wait_all, worker_env
from worker.keys import Keys, invoice_key
from worker.ledger import Ledger, State

pytestmark = pytest.mark.slow
KEYS = Keys()
LATENCY_MS = 1000
MARGIN_S = 3.0
"""Start-up of the event loop's shutdown path and process exit, on a busy machine."""


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(sandbox_url) as client:
        await client.reset()
        await client.set_faults(Faults(latency_ms=LATENCY_MS))
        yield client


async def states(redis: aioredis.Redis, keys: list[str]) -> dict[str, State]:
    records = await Ledger(redis, KEYS).get_many(keys)
    assert all(r is not None for r in records)
    return {r.invoice_key: r.state for r in records if r is not None}


async def in_flight_once_going(
    redis: aioredis.Redis, keys: list[str], worker: subprocess.Popen[bytes]
) -> set[str]:
    """Wait until one wave of creates has finished and the next is at the sandbox."""
    deadline = time.monotonic() + 20
    while True:
        assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
        now = await states(redis, keys)
        sending = {k for k, s in now.items() if s is State.SENDING}
        if sending and State.CREATED in now.values():
            break
        assert time.monotonic() < deadline, f"the worker never got going: {now}"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let the claimed jobs' requests reach the sandbox
    now = await states(redis, keys)
    return {k for k, s in now.items() if s is State.SENDING}


async def stop(worker: subprocess.Popen[bytes], limit_s: float) -> float:
    """SIGTERM `worker`; how long it took to exit (it must exit 0 within `limit_s`)."""
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    await asyncio.to_thread(wait_all, [worker], limit_s)
    return time.monotonic() - started


async def run_scenario(
    redis_url: str,
    redis: aioredis.Redis,
    sandbox: SandboxClient,
    sandbox_url: str,
    *,
    shutdown_wait_s: int,
    prefix: str,
) -> tuple[set[str], dict[str, State], float]:
    """Enqueue 40, SIGTERM the first worker mid-flight, let a second one finish.

    Returns the keys in flight at the signal, the states right after the first
    worker exited, and how long that exit took.
    """
    env = worker_env(
        redis_url,
        sandbox_url,
        INVOICER_SHUTDOWN_WAIT_S=str(shutdown_wait_s),
        INVOICER_READ_TIMEOUT_S="5",
    )
    items = [invoice(f"{prefix}-{i:03d}") for i in range(40)]
    await enqueue(env, list(items), Provider.MAAST)
    keys = [invoice_key(Provider.MAAST, "default", i.number) for i in items]
    first = start_worker(env, "--providers", "maast", "--concurrency", "8")

    in_flight = await in_flight_once_going(redis, keys, first)
    exit_s = await stop(first, shutdown_wait_s + MARGIN_S + 10)
    after_first = await states(redis, keys)

    second = start_worker(env, "--providers", "maast", "--burst", "--concurrency", "20")
    await asyncio.to_thread(wait_all, [second], 60)

    # Whatever happened, the batch ends complete and without a duplicate.
    assert await sandbox.created_counts("maast") == {i.number: 1 for i in items}
    assert set((await states(redis, keys)).values()) == {State.CREATED}
    return in_flight, after_first, exit_s


async def test_sigterm_finishes_in_flight_calls_then_a_second_worker_finishes_the_rest(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    wait_s = 5
    in_flight, after_first, exit_s = await run_scenario(
        redis_url, redis_client, sandbox, sandbox_url, shutdown_wait_s=wait_s, prefix="TERM"
    )

    assert in_flight, "the signal should have caught requests in flight"
    assert exit_s < wait_s + MARGIN_S, exit_s
    # The calls in flight were allowed to finish: created, not in doubt or cut off,
    assert {after_first[k] for k in in_flight} == {State.CREATED}
    # nothing was left half-done, and the rest was left queued for the next worker.
    assert set(after_first.values()) <= {State.CREATED, State.QUEUED}
    assert State.QUEUED in after_first.values()


async def test_sigterm_with_no_grace_cancels_at_once_and_loses_nothing(
    redis_url: str, redis_client: aioredis.Redis, sandbox: SandboxClient, sandbox_url: str
) -> None:
    in_flight, after_first, exit_s = await run_scenario(
        redis_url, redis_client, sandbox, sandbox_url, shutdown_wait_s=0, prefix="CANCEL"
    )

    assert in_flight
    # Cancelled without waiting for the ~1 s calls to answer.
    assert exit_s < LATENCY_MS / 1000 + MARGIN_S, exit_s
    # The cancelled calls were left for the next claim to look up (asserted
    # in run_scenario: each invoice exists exactly once in the end).
    assert any(after_first[k] is not State.CREATED for k in in_flight), after_first
