"""Goal `pickup`: how soon one invoice enqueued on an idle system reaches the provider.

One `invoicer worker` process waits on an empty queue; one invoice at a
time is enqueued through the Python API, and the latency is the sandbox's
creation time (`db_timestamp`, ms) minus the time just before the enqueue
call (both `time.time()` on this machine). Tries are spaced by a random
pause so they fall at every phase of the worker's poll. Ours runs with the
default poll delay; the baseline with arq's default 0.5 s, fewer tries.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis

from bench import pipeline
from bench.common import Bench, Goal, percentile, sample_csv, spawn, stop
from jobs.models import Invoice, Provider
from jobs.sources import Record, read_invoices
from sandbox.config import SandboxConfig
from sandbox.server import running_sandbox
from worker import api
from worker.keys import Keys, invoice_key
from worker.settings import Settings

TRIES = 200
BASELINE_TRIES = 20
BASELINE_POLL_S = 0.5
TARGET_P50_MS = 50.0
TARGET_P99_MS = 200.0
WAIT_S = 10.0
_rng = random.Random(2026)


def invoices(path: Path) -> Iterator[Invoice]:
    """The valid invoices of `path`."""
    for item in read_invoices(path):
        if isinstance(item, Record):
            yield item.invoice


async def one_try(redis: aioredis.Redis, settings: Settings, invoice: Invoice) -> float:
    """Enqueue `invoice`, wait until the ledger says created; the enqueue time."""
    ledger_key = Keys(settings.redis_prefix).ledger(
        invoice_key(Provider.MAAST, settings.maast.account, invoice.number)
    )
    t_enqueue = time.time()
    await api.enqueue_invoices([invoice], provider=Provider.MAAST, settings=settings, redis=redis)
    deadline = time.monotonic() + WAIT_S
    while await _state(redis, ledger_key) != b"created":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{invoice.number} was not created within {WAIT_S} s")
        await asyncio.sleep(0.005)
    return t_enqueue


async def _state(redis: aioredis.Redis, ledger_key: str) -> bytes | None:
    # redis-py types hget as "maybe synchronous"; on the asyncio client it is not.
    return await cast("Awaitable[bytes | None]", redis.hget(ledger_key, "state"))


async def latencies_ms(bench: Bench, poll_s: float | None, tries: int) -> list[float]:
    """Pickup latencies of `tries` invoices, one at a time, with a fresh worker."""
    bench.flush()
    pool = invoices(sample_csv(bench, TRIES + BASELINE_TRIES + 1))
    with running_sandbox(SandboxConfig()) as sandbox_url:
        env = pipeline.maast_env(sandbox_url)
        if poll_s is not None:
            env["INVOICER_POLL_DELAY_S"] = str(poll_s)
        settings = pipeline.settings_for(bench, env)
        worker = spawn(bench, [*pipeline.WORKER_ARGS], env)
        redis = aioredis.Redis.from_url(bench.redis_url)
        try:
            await one_try(redis, settings, next(pool))  # warm-up: the worker is ready
            sent: dict[str, float] = {}
            for _ in range(tries):
                await asyncio.sleep(_rng.uniform(0.02, 0.02 + (poll_s or 0.02)))
                invoice = next(pool)
                sent[invoice.number] = await one_try(redis, settings, invoice)
            created = await pipeline.created_at(sandbox_url)
        finally:
            await redis.aclose()
            stop(worker)
    return [(created[n] - t) * 1000 for n, t in sent.items()]


async def run(bench: Bench) -> Goal:
    """Ours at the default poll delay, then the baseline at arq's 0.5 s."""
    ours = await latencies_ms(bench, None, TRIES)
    base = await latencies_ms(bench, BASELINE_POLL_S, BASELINE_TRIES)
    p50, p99 = percentile(ours, 50), percentile(ours, 99)
    return Goal(
        name="pickup",
        value=f"p50 {p50:.0f} ms, p99 {p99:.0f} ms over {TRIES} tries",
        target=f"p50 <= {TARGET_P50_MS:.0f} ms, p99 <= {TARGET_P99_MS:.0f} ms",
        passed=p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS,
        baseline=(
            f"poll delay {BASELINE_POLL_S} s (arq's default): p50 {percentile(base, 50):.0f} ms, "
            f"p99 {percentile(base, 99):.0f} ms over {BASELINE_TRIES} tries"
        ),
        notes=(f"ours: min {min(ours):.0f} ms, max {max(ours):.0f} ms",),
    )
